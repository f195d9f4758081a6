//! `xtal prepare`: a CSV of materials (id, description, properties, CIF text or a CIF directory)
//! → a dataset directory: dataset.jsonl, FTCP tensors and crystal graphs as .npy, the FTCP
//! normaliser fitted on the training split, failures.csv and summary.json.
//!
//! The CSV is read twice and streamed (`rows`); each part — the whole dataset, or one shard of
//! it — is featurised a chunk at a time and written as it goes (`part`); shards are kept as
//! they finish and joined into one dataset by whichever finishes last (`shards`).

mod part;
mod rows;
mod shards;

use std::path::PathBuf;

use serde_json::json;
use xtal_core::featurize::{FeaturizeConfig, FtcpConfig, GraphConfig, StructureFactor};

use crate::exit::BadInput;
use crate::output::StagedDir;
use part::PartCounts;

#[derive(clap::Args)]
pub struct Args {
    /// CSV with an id column, a text column and either a `cif` column or --cif-dir.
    csv: PathBuf,
    /// Output dataset directory.
    #[arg(short, long)]
    out: PathBuf,
    /// Directory of CIF files named ID.cif (instead of a `cif` column).
    #[arg(long)]
    cif_dir: Option<PathBuf>,
    #[arg(long, default_value = "id")]
    id_column: String,
    /// Column with a natural-language text of the structure. Repeat it to keep several texts
    /// per structure (e.g. `--text-column description --text-column caption`): CLIP training
    /// draws one per structure per step, validation ranks them all.
    #[arg(long = "text-column", default_value = "description")]
    text_columns: Vec<String>,
    /// Column of 3×3 property tensors (9 numbers as JSON, flat or nested), written to each
    /// record's `tensor` for `xtal train tensor`; used when the CSV has it.
    #[arg(long, default_value = "tensor")]
    tensor_column: String,
    /// Property columns to keep (repeatable). Default: every column whose values are all numbers.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Only the first N rows (for a quick look).
    #[arg(long)]
    limit: Option<usize>,
    /// Fraction of rows held out for validation (the normaliser never sees them).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// CGCNN's atom_init.json for the 92 elemental-property rows (default: xtal's own table).
    #[arg(long)]
    atom_init: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    max_elements: usize,
    #[arg(long, default_value_t = 100)]
    max_sites: usize,
    /// FTCP's reciprocal property rows: `original` (the FTCP code's real sum Σ prop·π·h·x)
    /// or `physical` (|Σ prop·exp(2πi h·x)|).
    #[arg(long, value_enum, default_value_t = SfArg::Original)]
    structure_factor: SfArg,
    /// Neighbour cutoff of the crystal graphs (Å).
    #[arg(long, default_value_t = 8.0)]
    cutoff: f64,
    /// Nearest neighbours kept per atom (0: all within the cutoff).
    #[arg(long, default_value_t = 12)]
    max_neighbors: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Prepare only shard K of N (1-based; e.g. `--shard 2/8`): N processes or machines each
    /// take a contiguous part of the rows into OUT/shard-K-of-N/; the dataset is ready when
    /// all N are, and training reads the shards in place.
    #[arg(long, value_parser = parse_shard, conflicts_with = "shards")]
    shard: Option<(usize, usize)>,
    /// Prepare in N shards in this process, each kept as soon as it is finished: run the same
    /// command again after an interruption and the finished shards are kept.
    #[arg(long)]
    shards: Option<usize>,
    /// Replace an existing output directory (with --shard/--shards: the shards this run
    /// prepares).
    #[arg(long)]
    force: bool,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not K/N (for example 2/8)"))?;
    let (k, n): (usize, usize) = (
        k.trim()
            .parse()
            .map_err(|_| format!("'{k}' is not a shard number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("'{n}' is not a shard count"))?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(format!("shard {k}/{n}: K must be between 1 and N"));
    }
    Ok((k, n))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SfArg {
    Original,
    Physical,
}

/// Everything every part of one preparation shares.
struct Plan<'a> {
    args: &'a Args,
    scan: rows::Scan,
    config: FeaturizeConfig,
    table: xtal_core::featurize::ElementTable,
    /// Per CSV row: held out for validation. Chosen among the CSV's rows before anything is
    /// featurised, so that shards agree without talking to each other; a row that then
    /// fails is left out of its split.
    is_val: Vec<bool>,
    pool: rayon::ThreadPool,
}

impl Plan<'_> {
    /// Featurises the rows `range` into `dir`.
    fn prepare_part(
        &self,
        range: std::ops::Range<usize>,
        dir: &std::path::Path,
    ) -> anyhow::Result<PartCounts> {
        let mut stream = rows::RowStream::new(self.args, &self.scan.columns, range.clone())?;
        part::prepare(
            &mut stream,
            range.len(),
            &self.is_val,
            &self.config,
            &self.table,
            &self.pool,
            dir,
        )
    }

    /// The dataset's top-level files (summary, normaliser, element table) for `counts`.
    fn write_top_level(
        &self,
        counts: &PartCounts,
        shards: Option<usize>,
        write: &mut dyn FnMut(&str, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let args = self.args;
        if let Some(n) = &counts.normalizer {
            write("ftcp_normalizer.json", serde_json::to_string(n)?.as_bytes())?;
        }
        // A table from --atom-init travels with the dataset (summary.json names it relative
        // to the dataset), so that the dataset can move.
        let element_table = match args.atom_init {
            Some(_) => {
                write("atom_init.json", self.table.to_atom_init_json().as_bytes())?;
                "atom_init.json".to_string()
            }
            None => self.table.source.clone(),
        };
        let (rows_n, cols_n) = (self.config.ftcp.rows(), self.config.ftcp.cols());
        let mut summary = json!({
            "source": args.csv.display().to_string(),
            "rows": counts.rows,
            "structures": counts.structures,
            "failed": counts.failed,
            "rows_with_cif_warnings": counts.rows_with_cif_warnings,
            "train": counts.train,
            "val": counts.val,
            "ftcp_tensors": counts.ftcp_tensors,
            "without_ftcp": counts.structures - counts.ftcp_tensors,
            "ftcp_shape": [rows_n, cols_n],
            "graphs": counts.graphs,
            "without_text": counts.without_text,
            "text_columns": self.scan.columns.text_names(),
            "element_table": element_table,
            "config": self.config,
            "val_fraction": args.val_fraction,
            "seed": args.seed,
            "featurize_seconds": counts.featurize_seconds,
            "structures_per_second": counts.rows as f64 / counts.featurize_seconds.max(1e-9),
            "normalizer_fitted_on": counts.normalizer_fitted_on,
        });
        if let Some(n) = shards {
            summary["shards"] = n.into();
        }
        write(
            "summary.json",
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )
    }

    /// What settings and data a shard was prepared from: shards of different preparations
    /// are never joined.
    fn fingerprint(&self) -> anyhow::Result<String> {
        use sha2::{Digest, Sha256};
        let a = self.args;
        let settings = json!({
            "csv_sha256": self.scan.csv_sha256,
            "rows": self.scan.rows,
            "cif_dir": a.cif_dir,
            "columns": [&a.id_column, &a.text_columns, &a.tensor_column],
            "properties": self.scan.columns.properties.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            "val_fraction": a.val_fraction,
            "seed": a.seed,
            "config": self.config,
            "element_table": self.table.to_atom_init_json(),
        });
        Ok(format!(
            "{:x}",
            Sha256::digest(serde_json::to_vec(&settings)?)
        ))
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        return Err(BadInput(format!(
            "--val-fraction must be in [0, 1), got {}",
            args.val_fraction
        ))
        .into());
    }
    if !super::positive(args.cutoff) || args.max_sites == 0 || args.max_elements == 0 {
        return Err(
            BadInput("--cutoff, --max-sites and --max-elements must be positive".into()).into(),
        );
    }
    if args.shards == Some(0) {
        return Err(BadInput("--shards must be at least 1".into()).into());
    }
    let table = super::element_table(args.atom_init.as_deref())?;
    let config = FeaturizeConfig {
        ftcp: FtcpConfig {
            max_elements: args.max_elements,
            max_sites: args.max_sites,
            structure_factor: match args.structure_factor {
                SfArg::Original => StructureFactor::Original,
                SfArg::Physical => StructureFactor::Physical,
            },
            ..FtcpConfig::default()
        },
        graph: GraphConfig {
            cutoff: args.cutoff,
            max_neighbors: (args.max_neighbors > 0).then_some(args.max_neighbors),
            ..GraphConfig::default()
        },
        ..FeaturizeConfig::default()
    };
    let scan = rows::scan(&args)?;
    if scan.rows == 0 {
        return Err(BadInput(format!("{}: no data rows", args.csv.display())).into());
    }
    let plan = Plan {
        is_val: xtal_core::data::validation_mask(scan.rows, args.val_fraction, args.seed),
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads.unwrap_or(0))
            .build()?,
        args: &args,
        scan,
        config,
        table,
    };
    match (args.shard, args.shards) {
        (Some((k, n)), _) => shards::prepare(&plan, n, &[k]),
        (None, Some(n)) => shards::prepare(&plan, n, &(1..=n).collect::<Vec<_>>()),
        (None, None) => prepare_whole(&plan),
    }
}

/// The unsharded layout: every file in the output directory, which appears whole or not at all.
fn prepare_whole(plan: &Plan) -> anyhow::Result<()> {
    let args = plan.args;
    let staged = StagedDir::new(&args.out, args.force)?;
    let counts = plan.prepare_part(0..plan.scan.rows, &staged.path)?;
    plan.write_top_level(&counts, None, &mut |name, bytes| staged.write(name, bytes))?;
    let out = staged.commit()?;
    report(&counts, &out);
    Ok(())
}

fn report(c: &PartCounts, out: &std::path::Path) {
    eprintln!(
        "prepared {} of {} rows in {:.1}s ({:.0}/s): {} FTCP tensors, {} graphs, {} failed (see failures.csv), {} read with CIF warnings (see cif_warnings.csv), {} without text → {}",
        c.structures,
        c.rows,
        c.featurize_seconds,
        c.rows as f64 / c.featurize_seconds.max(1e-9),
        c.ftcp_tensors,
        c.graphs,
        c.failed,
        c.rows_with_cif_warnings,
        c.without_text,
        out.display()
    );
}
