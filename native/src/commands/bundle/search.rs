//! `xtal search`: a bundle's index searched with a text or a CIF.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use xtal_core::bundle::Side;
use xtal_core::device::run_on;

use super::common::{LimitArgs, open_kind, preview};
use super::embed::{EmbedQueries, Query, read_cifs};
use crate::exit::BadInput;

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
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    let bundle = open_kind(&args.bundle, &args.limits.limits(), "clip")?;
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
