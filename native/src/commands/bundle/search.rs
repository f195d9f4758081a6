//! `xtal search`: a bundle's index searched with a text or a CIF.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use xtal_core::bundle::{Hit, RetrievalIndex, Side};
use xtal_core::device::run_on;
use xtal_core::structure::{CifOptions, Structure, read_cif};

use super::common::{LimitArgs, open_kind, preview};
use super::embed::{EmbedQueries, Query, read_cifs};
use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::plots::save;
use crate::structure_picture::StructurePicture;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The bundle with a retrieval index.
    #[arg(long)]
    bundle: PathBuf,
    /// The query text (compared with the index's structure embeddings).
    #[arg(required_unless_present = "cif")]
    query: Option<String>,
    /// Query with a structure instead (compared with the index's text embeddings).
    #[arg(long, conflicts_with = "query")]
    cif: Option<PathBuf>,
    /// Results to show.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Compare with the index's structure or text embeddings (default: the other modality).
    #[arg(long, value_parser = ["structure", "text"])]
    against: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Write a picture of each hit's structure (PNG and SVG) into this directory.
    #[arg(long)]
    pictures: Option<PathBuf>,
    /// The dataset the hits' structures are read from (default: the bundle's index, else the
    /// dataset the index was packed from when it is still there).
    #[arg(long, requires = "pictures")]
    dataset: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    let bundle = open_kind(&args.bundle, &args.limits.limits(), &["clip"])?;
    let index = bundle.index.as_ref().ok_or_else(|| {
        BadInput(format!(
            "{}: this bundle has no retrieval index (pack it with --index DATASET)",
            args.bundle.display()
        ))
    })?;
    let device = crate::commands::one_device(&args.device)?;
    let texts;
    let (query, default_side, label) = match (&args.query, &args.cif) {
        (_, Some(cif)) => (
            Query::Cifs(read_cifs(std::slice::from_ref(cif))?),
            Side::Text,
            cif.display().to_string(),
        ),
        (Some(q), None) => {
            texts = [q.clone()];
            (Query::Texts(&texts), Side::Structure, q.clone())
        }
        (None, None) => unreachable!("clap requires a query or --cif"),
    };
    let side = match args.against.as_deref() {
        Some("text") => Side::Text,
        Some(_) => Side::Structure,
        None => default_side,
    };
    let started = Instant::now();
    let vector = run_on(&device, EmbedQueries(&bundle, query))??;
    let hits = index.search(&vector, args.k, side)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(dir) = &args.pictures {
        let packed_from = bundle
            .manifest
            .index
            .as_ref()
            .and_then(|i| i.dataset.as_deref());
        let written = write_pictures(index, &hits, args.dataset.as_deref(), packed_from, dir)?;
        eprintln!(
            "pictures: {written} of {} hits → {}",
            hits.len(),
            dir.display()
        );
    }
    if args.json {
        let rows: Vec<_> = hits.iter().map(|h| index.hit_json(h)).collect();
        println!(
            "{}",
            json!({"query": label, "against": side, "results": rows})
        );
        return Ok(());
    }
    println!(
        "{:>4}  {:<28} {:<14} {:>6}  description",
        "rank", "id", "formula", "score"
    );
    for h in &hits {
        let r = &index.records;
        println!(
            "{:>4}  {:<28} {:<14} {:>6.3}  {}",
            h.rank,
            preview(&r.ids[h.row], 28),
            preview(r.formulas[h.row].as_deref().unwrap_or("-"), 14),
            h.score,
            preview(&r.descriptions[h.row], 70)
        );
    }
    eprintln!(
        "{} of {} entries ({side:?} embeddings) in {:.0} ms",
        hits.len(),
        index.len(),
        seconds * 1e3
    );
    Ok(())
}

/// A picture of each hit's structure as `DIR/RANK-ID.{png,svg}`. Structures come from
/// `dataset` when given, else from the bundle's index, else from the dataset the index was
/// packed from (`packed_from`, when it is still there); a hit without one is named on stderr.
/// Returns how many were drawn.
fn write_pictures(
    index: &RetrievalIndex,
    hits: &[Hit],
    dataset: Option<&Path>,
    packed_from: Option<&str>,
    dir: &Path,
) -> anyhow::Result<usize> {
    let ids: Vec<&str> = hits
        .iter()
        .map(|h| index.records.ids[h.row].as_str())
        .collect();
    let mut structures: HashMap<String, Structure> = HashMap::new();
    if dataset.is_none() {
        for h in hits {
            let cif = index
                .records
                .structures
                .as_ref()
                .and_then(|s| s[h.row].as_deref());
            let read = cif.and_then(|c| read_cif(c, &CifOptions::default()).ok());
            if let Some(s) = read.and_then(|mut blocks| blocks.pop()) {
                structures.insert(index.records.ids[h.row].clone(), s.structure);
            }
        }
    }
    let missing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !structures.contains_key(*id))
        .collect();
    let fallback = packed_from.map(Path::new).filter(|p| p.exists());
    match dataset.or(fallback) {
        Some(d) if !missing.is_empty() => {
            structures.extend(DataSource::new(d, None)?.structures_of(&missing)?);
        }
        None if structures.is_empty() => {
            return Err(BadInput(
                "--pictures: the bundle's index has no structures and the dataset it was packed from is not here; pass --dataset DIR".into(),
            )
            .into());
        }
        _ => {}
    }
    let mut written = 0;
    for (h, id) in hits.iter().zip(&ids) {
        let Some(structure) = structures.get(*id) else {
            eprintln!("warning: no structure for {id}; no picture");
            continue;
        };
        let formula = index.records.formulas[h.row].as_deref().unwrap_or("");
        let picture = StructurePicture {
            title: format!("{}. {formula} ({id})", h.rank),
            structure,
        };
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        save(&picture, dir, &format!("{:02}-{name}", h.rank))?;
        written += 1;
    }
    Ok(written)
}
