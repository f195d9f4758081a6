//! A prepared dataset is one directory, or — prepared with `xtal prepare --shard K/N` — a
//! directory of N shards, each a dataset directory of its own (`shard-K-of-N/`), and a
//! `shards.json` written once every shard is finished. Readers go through the parts in
//! order; a part's FTCP and graph indices are offset by the tensors and graphs of the parts
//! before it, so a sharded dataset reads exactly as the unsharded one would.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::BadInput;

/// The file that makes a directory of shards a dataset.
pub const MANIFEST: &str = "shards.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Shard directories, in row order, relative to the dataset.
    pub parts: Vec<ManifestPart>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestPart {
    pub dir: String,
    pub ftcp_tensors: usize,
    pub graphs: usize,
}

/// The directory name of shard `k` (1-based) of `n`.
pub fn shard_dir_name(k: usize, n: usize) -> String {
    format!("shard-{k}-of-{n}")
}

/// `(k, n)` of a shard directory name.
pub fn parse_shard_dir_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("shard-")?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}

/// One part of a dataset and where its indices start in the whole.
#[derive(Debug, Clone)]
pub struct Part {
    pub dir: PathBuf,
    pub ftcp_offset: usize,
    pub graph_offset: usize,
}

/// The parts of the prepared dataset `dir`: itself when it is not sharded.
pub fn parts(dir: &Path) -> anyhow::Result<Vec<Part>> {
    let manifest_path = dir.join(MANIFEST);
    if !manifest_path.is_file() {
        if !dir.join("dataset.jsonl").is_file() {
            unfinished_shards(dir)?;
        }
        return Ok(vec![Part {
            dir: dir.to_path_buf(),
            ftcp_offset: 0,
            graph_offset: 0,
        }]);
    }
    let bad = |m: String| BadInput(format!("{}: {m}", manifest_path.display()));
    let text =
        std::fs::read_to_string(&manifest_path).map_err(|e| bad(format!("cannot read ({e})")))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let (mut ftcp, mut graphs) = (0usize, 0usize);
    let mut out = Vec::new();
    for p in &manifest.parts {
        // A manifest names directories inside the dataset, nothing else.
        if !xtal_core::data::is_plain_name(&p.dir) || p.dir.is_empty() {
            return Err(bad(format!("part '{}' is not a directory name", p.dir)).into());
        }
        let part_dir = dir.join(&p.dir);
        if !part_dir.join("dataset.jsonl").is_file() {
            return Err(bad(format!("part {} has no dataset.jsonl", part_dir.display())).into());
        }
        out.push(Part {
            dir: part_dir,
            ftcp_offset: ftcp,
            graph_offset: graphs,
        });
        ftcp = ftcp
            .checked_add(p.ftcp_tensors)
            .ok_or_else(|| bad("counts overflow".into()))?;
        graphs = graphs
            .checked_add(p.graphs)
            .ok_or_else(|| bad("counts overflow".into()))?;
    }
    if out.is_empty() {
        return Err(bad("no parts".into()).into());
    }
    Ok(out)
}

/// A directory with shards but no manifest is a preparation still under way (or stopped):
/// says which shards are missing.
fn unfinished_shards(dir: &Path) -> anyhow::Result<()> {
    let mut found: Vec<(usize, usize)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("part.json").is_file())
        .filter_map(|e| parse_shard_dir_name(&e.file_name().to_string_lossy()))
        .collect();
    found.sort_unstable();
    let Some(&(_, n)) = found.first() else {
        return Ok(());
    };
    let missing: Vec<String> = (1..=n)
        .filter(|k| !found.contains(&(*k, n)))
        .map(|k| format!("{k}/{n}"))
        .collect();
    Err(BadInput(format!(
        "{}: a dataset being prepared in {n} shards; not finished yet: {} (run `xtal prepare … --shard K/{n}` for each)",
        dir.display(),
        missing.join(", ")
    ))
    .into())
}

/// Adds a part's offsets to the `ftcp_index` and `graph_index` of one of its records.
pub fn offset_indices(record: &mut serde_json::Value, part: &Part) {
    for (key, offset) in [
        ("ftcp_index", part.ftcp_offset),
        ("graph_index", part.graph_offset),
    ] {
        if let Some(k) = record.get(key).and_then(serde_json::Value::as_u64) {
            record[key] = (k as usize + offset).into();
        }
    }
}
