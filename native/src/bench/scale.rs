//! `xtal bench --scale CSV`: the original system's data sizes on this machine. The CSV's
//! materials are replicated with distinct ids and a small seeded lattice strain (each cell
//! length × (1 ± 0.5 %)) to each size asked for; each step then runs as its own `xtal`
//! process, measured from outside: wall time, peak resident memory (VmHWM: the mapped
//! dataset's pages included, which the kernel can drop) and peak anonymous memory (RssAnon,
//! sampled every 20 ms: what the process itself holds). The baseline each size is compared
//! with is the smallest size of the same run: time per row should not grow with rows.
//!
//! The original CLIP data had a description for every material; the shared data has few, so
//! a row without one gets a templated sentence from its own columns (formula, crystal system,
//! space group, atoms, density), and CLIP trains on every row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use xtal_core::data::SeededRng;

use crate::exit::BadInput;

/// The CLIP model of the scale steps: the sample configuration's structure side with a
/// smaller text encoder, so that an epoch of 129k pairs fits a CPU benchmark; one epoch, 10 %
/// of the pairs for validation after it.
const CLIP_SETTINGS: &[&str] = &[
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--set",
    "model.text_width=64",
    "--set",
    "model.text_layers=2",
    "--set",
    "model.text_heads=4",
    "--set",
    "model.max_seq_length=64",
    "--set",
    "model.clip_dim=64",
    "--set",
    "model.graph_hidden_dims=[256]",
    "--set",
    "training.val_split=0.1",
];

pub struct ScaleBench<'a> {
    pub csv: &'a Path,
    pub sizes: &'a [usize],
    /// Where the synthetic CSVs and datasets go (they are large: about 100 KB a row).
    pub work: &'a Path,
    pub json: bool,
    /// Also a CGCNN CLIP epoch (graphs are built from the structures as the run starts).
    pub graphs: bool,
}

#[derive(Serialize)]
struct Step {
    rows: usize,
    step: String,
    seconds: f64,
    rows_per_second: f64,
    peak_rss_mb: f64,
    peak_anon_mb: f64,
}

/// Peak figures of one child process.
struct Measured {
    seconds: f64,
    peak_rss_kb: u64,
    peak_anon_kb: u64,
}

fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs this `xtal` with `args`, sampling its memory until it exits; its messages go to `log`
/// (a file, not a pipe: a pipe nobody reads until the end would stall a talkative child).
fn measure(args: &[&str], log: &Path) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("cannot find the xtal executable")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .context("cannot start xtal")?;
    let status_path = format!("/proc/{}/status", child.id());
    let (mut rss, mut anon) = (0u64, 0u64);
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            rss = rss.max(status_kb(&text, "VmHWM:").unwrap_or(0));
            anon = anon.max(status_kb(&text, "RssAnon:").unwrap_or(0));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        let err = std::fs::read_to_string(log).unwrap_or_default();
        anyhow::bail!("xtal {} failed: {err}", args.join(" "));
    }
    Ok(Measured {
        seconds,
        peak_rss_kb: rss,
        peak_anon_kb: anon,
    })
}

/// Writes `rows` rows: the source's rows again and again, copies after the first with ids
/// `ID~K` and strained cells.
fn synthetic_csv(source: &Path, rows: usize, out: &Path) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(source)
        .map_err(|e| BadInput(format!("{}: cannot read ({e})", source.display())))?;
    let headers = reader.headers()?.clone();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(id), Some(cif)) = (col("id"), col("cif")) else {
        return Err(BadInput(format!(
            "{}: needs 'id' and 'cif' columns",
            source.display()
        ))
        .into());
    };
    let mut records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    if let Some(d) = col("description") {
        let field = |rec: &csv::StringRecord, name: &str| {
            col(name).and_then(|k| rec.get(k)).unwrap_or("").to_string()
        };
        for rec in &mut records {
            if !rec.get(d).unwrap_or("").trim().is_empty() {
                continue;
            }
            let density = field(rec, "density").parse::<f64>().unwrap_or(f64::NAN);
            let text = format!(
                "{} crystallizes in the {} {} space group, with {} atoms in its cell and a density of {density:.2} g/cm3.",
                field(rec, "formula"),
                field(rec, "crystal_system"),
                field(rec, "spacegroup_symbol"),
                field(rec, "n_atoms"),
            );
            let mut fields: Vec<&str> = rec.iter().collect();
            fields[d] = &text;
            *rec = csv::StringRecord::from(fields);
        }
    }
    if records.is_empty() {
        return Err(BadInput(format!("{}: no rows", source.display())).into());
    }
    let mut w = csv::Writer::from_path(out)?;
    w.write_record(&headers)?;
    let mut rng = SeededRng::new(129_473);
    for n in 0..rows {
        let (copy, rec) = (n / records.len(), &records[n % records.len()]);
        if copy == 0 {
            w.write_record(rec)?;
            continue;
        }
        let mut fields: Vec<String> = rec.iter().map(String::from).collect();
        fields[id] = format!("{}~{copy}", fields[id]);
        fields[cif] = strained(&fields[cif], &mut rng);
        w.write_record(&fields)?;
    }
    w.flush()?;
    Ok(())
}

/// The CIF with each `_cell_length_*` scaled by a factor in [0.995, 1.005].
fn strained(cif: &str, rng: &mut SeededRng) -> String {
    let mut out = String::with_capacity(cif.len());
    for line in cif.lines() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next().map(str::parse::<f64>)) {
            (Some(key), Some(Ok(v))) if key.starts_with("_cell_length_") => {
                let factor =
                    1.0 + 0.01 * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5);
                out.push_str(&format!("{key} {:.6}", v * factor));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

pub fn run(b: ScaleBench) -> anyhow::Result<()> {
    std::fs::create_dir_all(b.work)
        .with_context(|| format!("cannot create {}", b.work.display()))?;
    let mut steps: Vec<Step> = Vec::new();
    let mut sizes = b.sizes.to_vec();
    sizes.sort_unstable();
    for &rows in &sizes {
        let csv = b.work.join(format!("materials-{rows}.csv"));
        let data = b.work.join(format!("dataset-{rows}"));
        eprintln!("{rows} rows: writing {}", csv.display());
        synthetic_csv(b.csv, rows, &csv)?;
        let (c, d) = (path_str(&csv)?, path_str(&data)?);
        let (ssl_dir, clip_dir, graph_dir) = (
            b.work.join(format!("ssl-{rows}")),
            b.work.join(format!("clip-{rows}")),
            b.work.join(format!("clip-cgcnn-{rows}")),
        );
        let (s, r, g) = (
            path_str(&ssl_dir)?,
            path_str(&clip_dir)?,
            path_str(&graph_dir)?,
        );
        let mut plan: Vec<(&str, Vec<&str>)> = vec![
            ("prepare", vec!["prepare", c, "-o", d, "--force"]),
            (
                "ssl block 2, one epoch",
                vec![
                    "ssl", "train", "--data", d, "--out", s, "--block", "2", "--epochs", "1",
                ],
            ),
            ("clip ftcp, one epoch", clip_args(d, r)),
            (
                "clip eval, every pair",
                vec!["eval", "clip", "--run", r, "--split", "all", "--json"],
            ),
        ];
        if b.graphs {
            let mut a = clip_args(d, g);
            a.extend(["--set", "model.graph_backbone=cgcnn"]);
            plan.push(("clip cgcnn, one epoch", a));
        }
        for (name, args) in plan {
            for dir in [&ssl_dir, &graph_dir] {
                let _ = std::fs::remove_dir_all(dir);
            }
            if args[0] != "eval" {
                let _ = std::fs::remove_dir_all(&clip_dir);
            }
            eprintln!("{rows} rows: {name}");
            let log = name.split([',', ' ']).take(2).collect::<Vec<_>>().join("-");
            let m = measure(&args, &b.work.join(format!("{rows}-{log}.log")))?;
            steps.push(Step {
                rows,
                step: name.to_string(),
                seconds: m.seconds,
                rows_per_second: rows as f64 / m.seconds,
                peak_rss_mb: m.peak_rss_kb as f64 / 1024.0,
                peak_anon_mb: m.peak_anon_kb as f64 / 1024.0,
            });
        }
        let _ = std::fs::remove_file(&csv);
    }
    if b.json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>8}  {:<24} {:>9} {:>10} {:>11} {:>11} {:>13}",
        "rows", "step", "seconds", "rows/s", "peak RSS", "peak anon", "s/row vs min"
    )?;
    for s in &steps {
        let base = steps
            .iter()
            .find(|t| t.step == s.step)
            .map_or(1.0, |t| t.seconds / t.rows as f64);
        writeln!(
            out,
            "{:>8}  {:<24} {:>9.1} {:>10.0} {:>8.0} MB {:>8.0} MB {:>12.2}×",
            s.rows,
            s.step,
            s.seconds,
            s.rows_per_second,
            s.peak_rss_mb,
            s.peak_anon_mb,
            (s.seconds / s.rows as f64) / base
        )?;
    }
    Ok(())
}

fn clip_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["train", "clip", "--data", data, "--out", out, "--no-plots"];
    args.extend(CLIP_SETTINGS);
    args
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| BadInput(format!("{}: not UTF-8", PathBuf::from(p).display())).into())
}
