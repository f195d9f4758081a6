//! Sharded preparation: shard K of N takes the CSV's rows [(K−1)·n/N, K·n/N) into
//! OUT/shard-K-of-N/, which appears whole (with its `part.json`) or not at all. A shard already
//! finished from the same data and settings is kept, so a stopped run resumes; the run that
//! finds every shard finished joins them: summary, the normaliser merged from the shards'
//! statistics (min/max join exactly: the same as fitting all training rows at once), and
//! `shards.json`, written last, which makes the directory a dataset.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Plan;
use super::part::PartCounts;
use crate::data::shards::{MANIFEST, Manifest, ManifestPart, parse_shard_dir_name, shard_dir_name};
use crate::exit::BadInput;
use crate::output::{StagedDir, write_atomic};

/// `part.json`: what a finished shard holds and what it was prepared from.
#[derive(Serialize, Deserialize)]
struct PartFile {
    fingerprint: String,
    shard: usize,
    of: usize,
    /// CSV data rows [first_row, end_row).
    first_row: usize,
    end_row: usize,
    counts: PartCounts,
}

/// Top-level files of a shard set besides the shards themselves.
const TOP_LEVEL: [&str; 4] = [
    MANIFEST,
    "summary.json",
    "ftcp_normalizer.json",
    "atom_init.json",
];

pub fn prepare(plan: &Plan, n: usize, shards: &[usize]) -> anyhow::Result<()> {
    let args = plan.args;
    let out = &args.out;
    check_output(out, n, args.force)?;
    std::fs::create_dir_all(out)
        .map_err(|e| BadInput(format!("{}: cannot create ({e})", out.display())))?;
    let fingerprint = plan.fingerprint()?;
    let rows = plan.scan.rows;
    for &k in shards {
        let dir = out.join(shard_dir_name(k, n));
        if let Some(done) = read_part(&dir)? {
            if done.fingerprint == fingerprint && !args.force {
                eprintln!("shard {k}/{n}: already prepared from this data, kept");
                continue;
            }
            if done.fingerprint != fingerprint && !args.force {
                return Err(BadInput(format!(
                    "{}: prepared from other data or settings; pass --force to prepare it again",
                    dir.display()
                ))
                .into());
            }
        }
        // The joined dataset is about to change: it stops being one until it is joined again.
        remove_if_present(&out.join(MANIFEST))?;
        let (first_row, end_row) = ((k - 1) * rows / n, k * rows / n);
        let staged = StagedDir::new(&dir, true)?;
        let counts = plan.prepare_part(first_row..end_row, &staged.path)?;
        let part = PartFile {
            fingerprint: fingerprint.clone(),
            shard: k,
            of: n,
            first_row,
            end_row,
            counts,
        };
        staged.write("part.json", serde_json::to_string_pretty(&part)?.as_bytes())?;
        let dir = staged.commit()?;
        super::report(&part.counts, &dir);
    }
    join(plan, n, &fingerprint)
}

/// Refuses an output that is not a set of `n` shards of a preparation, unless `force`
/// (then an unsharded dataset or shards of another count are removed).
fn check_output(out: &Path, n: usize, force: bool) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name.starts_with('.') || TOP_LEVEL.contains(&name.as_str());
        match parse_shard_dir_name(&name) {
            Some((_, m)) if m == n => {}
            Some((_, m)) if force => {
                std::fs::remove_dir_all(e.path()).map_err(|err| {
                    BadInput(format!("{}: cannot remove ({err})", e.path().display()))
                })?;
                eprintln!("removed {} (a split into {m} shards)", e.path().display());
            }
            Some((_, m)) => {
                return Err(BadInput(format!(
                    "{} holds shards of a split into {m}, not {n}; pass --force to start again",
                    out.display()
                ))
                .into());
            }
            None if ours => {}
            None if force => {
                let p = e.path();
                let removed = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                removed
                    .map_err(|err| BadInput(format!("{}: cannot remove ({err})", p.display())))?;
            }
            None => {
                return Err(BadInput(format!(
                    "{} exists and holds {name}, which is not part of a sharded dataset; pass --force to replace it",
                    out.display()
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BadInput(format!("{}: cannot remove ({e})", path.display())).into())
        }
        _ => Ok(()),
    }
}

/// A finished shard's `part.json`; None when the shard is not finished.
fn read_part(dir: &Path) -> anyhow::Result<Option<PartFile>> {
    let p = dir.join("part.json");
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| BadInput(format!("{}: {e}", p.display())).into())
}

/// Joins the shards into one dataset when all `n` are finished; otherwise says what is left.
fn join(plan: &Plan, n: usize, fingerprint: &str) -> anyhow::Result<()> {
    let out = &plan.args.out;
    let mut total = PartCounts::default();
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    for k in 1..=n {
        let name = shard_dir_name(k, n);
        match read_part(&out.join(&name))? {
            Some(p) if p.fingerprint == fingerprint => {
                total.add(&p.counts);
                parts.push(ManifestPart {
                    dir: name,
                    ftcp_tensors: p.counts.ftcp_tensors,
                    graphs: p.counts.graphs,
                });
            }
            _ => missing.push(format!("{k}/{n}")),
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "{}: the dataset is ready when shards {} are prepared too (same command with --shard K/{n})",
            out.display(),
            missing.join(", ")
        );
        return Ok(());
    }
    plan.write_top_level(&total, Some(n), &mut |name, bytes| {
        write_atomic(&out.join(name), bytes)
    })?;
    // Last: readers take the directory for a dataset once this is there.
    write_atomic(
        &out.join(MANIFEST),
        serde_json::to_string_pretty(&Manifest { parts })?.as_bytes(),
    )?;
    super::report(&total, out);
    Ok(())
}
