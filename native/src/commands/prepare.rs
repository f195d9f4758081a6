//! `xtal prepare`: a CSV of materials (id, description, properties, CIF text or a CIF directory)
//! → a dataset directory: dataset.jsonl, FTCP tensors and crystal graphs as .npy, the FTCP
//! normaliser fitted on the training split, failures.csv and summary.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;
use xtal_core::featurize::{
    CrystalGraph, FeaturizeConfig, FtcpConfig, GraphConfig, RowMinMax, StructureFactor,
    featurize_cif,
};
use xtal_core::structure::{CifWarning, Structure, StructureSummary};

use crate::exit::BadInput;
use crate::output::{StagedDir, write_npy};
use crate::panic_guard::{QuietPanics, guarded};

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
    /// Column with the natural-language description.
    #[arg(long, default_value = "description")]
    text_column: String,
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
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SfArg {
    Original,
    Physical,
}

struct Row {
    id: String,
    /// The CSV's `source` column: properties mean different things per source.
    source: Option<String>,
    text: Option<String>,
    properties: BTreeMap<String, Option<f64>>,
    tensor: Option<[f64; 9]>,
    /// The CIF's bytes as the file or the CSV cell holds them; the reader decodes them (and
    /// says so when a file is not UTF-8).
    cif: Result<Vec<u8>, String>,
}

struct Prepared {
    summary: StructureSummary,
    ftcp: Result<Vec<f32>, String>,
    graph: Result<CrystalGraph, String>,
    structure: Structure,
    warnings: Vec<CifWarning>,
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
    let rows = read_rows(&args)?;
    if rows.is_empty() {
        return Err(BadInput(format!("{}: no data rows", args.csv.display())).into());
    }
    let staged = StagedDir::new(&args.out, args.force)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    let bar = ProgressBar::new(rows.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} featurizing {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let quiet = QuietPanics::install();
    let results: Vec<Result<Prepared, String>> = pool.install(|| {
        rows.par_iter()
            .map(|row| {
                let out = row.cif.as_ref().map_err(Clone::clone).and_then(|cif| {
                    // A failure anywhere in one row, a dependency's panic included, is that
                    // row's entry in failures.csv; the other rows are written.
                    guarded(|| {
                        let f = featurize_cif(cif, &config, &table)?;
                        Ok(Prepared {
                            summary: f.summary,
                            ftcp: f.ftcp.map(|t| t.data.iter().map(|v| *v as f32).collect()),
                            graph: f.graph,
                            structure: f.structure,
                            warnings: f.warnings,
                        })
                    })
                });
                bar.inc(1);
                out
            })
            .collect()
    });
    drop(quiet);
    bar.finish_and_clear();
    let featurize_seconds = start.elapsed().as_secs_f64();

    // Split over the rows that were read, deterministically from the seed.
    let ok: Vec<usize> = (0..rows.len()).filter(|i| results[*i].is_ok()).collect();
    let mut order = ok.clone();
    xtal_core::data::seeded_shuffle(&mut order, args.seed);
    let n_val = ((ok.len() as f64) * args.val_fraction).round() as usize;
    let val: std::collections::HashSet<usize> = order[..n_val].iter().copied().collect();

    let (rows_n, cols_n) = (config.ftcp.rows(), config.ftcp.cols());
    let mut ftcp_data: Vec<f32> = Vec::new();
    let mut ftcp_count = 0usize;
    let mut train_ftcp: Vec<usize> = Vec::new();
    let mut graphs = GraphArrays::default();
    // Line k: the structure of graph k, for encoders that build graphs of their own.
    let mut structures = String::new();
    let mut records = String::new();
    let mut failures = csv::Writer::from_writer(Vec::new());
    failures.write_record(["id", "reason"])?;
    // What the CIF reader assumed, row by row: the report of a preparation keeps it.
    let mut cif_warnings = csv::Writer::from_writer(Vec::new());
    cif_warnings.write_record(["id", "line", "warning"])?;
    let mut rows_with_warnings = 0usize;
    let mut no_text = 0usize;
    for (i, (row, result)) in rows.iter().zip(&results).enumerate() {
        let p = match result {
            Ok(p) => p,
            Err(reason) => {
                failures.write_record([&row.id, reason])?;
                continue;
            }
        };
        if !p.warnings.is_empty() {
            rows_with_warnings += 1;
        }
        for w in &p.warnings {
            cif_warnings.write_record([row.id.as_str(), &w.line.to_string(), &w.message])?;
        }
        let split = if val.contains(&i) { "val" } else { "train" };
        let ftcp_index = match &p.ftcp {
            Ok(t) => {
                ftcp_data.extend_from_slice(t);
                if split == "train" {
                    train_ftcp.push(ftcp_count);
                }
                ftcp_count += 1;
                Some(ftcp_count - 1)
            }
            Err(reason) => {
                failures.write_record([&row.id, reason])?;
                None
            }
        };
        let graph_index = match &p.graph {
            Ok(g) => {
                structures.push_str(&serde_json::to_string(&p.structure)?);
                structures.push('\n');
                Some(graphs.push(g))
            }
            Err(reason) => {
                failures.write_record([&row.id, reason])?;
                None
            }
        };
        if row.text.is_none() {
            no_text += 1;
        }
        let record = json!({
            "id": row.id,
            "source": row.source,
            "text": row.text,
            "formula": p.summary.reduced_formula,
            "split": split,
            "group": p.summary.crystal_system,
            "spacegroup_number": p.summary.spacegroup_number,
            "nsites": p.summary.nsites,
            "properties": row.properties,
            "tensor": row.tensor,
            "ftcp_index": ftcp_index,
            "graph_index": graph_index,
            "structure": p.summary,
        });
        records.push_str(&record.to_string());
        records.push('\n');
    }

    let normalizer = RowMinMax::fit(
        rows_n,
        cols_n,
        train_ftcp
            .iter()
            .map(|&k| &ftcp_data[k * rows_n * cols_n..(k + 1) * rows_n * cols_n]),
    );
    write_npy(
        &staged.file("ftcp.npy"),
        &[ftcp_count as u64, rows_n as u64, cols_n as u64],
        &ftcp_data,
    )?;
    graphs.write(&staged)?;
    staged.write("structures.jsonl", structures.as_bytes())?;
    staged.write("dataset.jsonl", records.as_bytes())?;
    staged.write("failures.csv", &failures.into_inner()?)?;
    staged.write("cif_warnings.csv", &cif_warnings.into_inner()?)?;
    if let Some(n) = &normalizer {
        staged.write("ftcp_normalizer.json", serde_json::to_string(n)?.as_bytes())?;
    }
    // A table from --atom-init travels with the dataset (summary.json names it relative to
    // the dataset), so that the dataset can move.
    let element_table = match args.atom_init {
        Some(_) => {
            staged.write("atom_init.json", table.to_atom_init_json().as_bytes())?;
            "atom_init.json".to_string()
        }
        None => table.source.clone(),
    };
    let failed = rows.len() - ok.len();
    let summary = json!({
        "source": args.csv.display().to_string(),
        "rows": rows.len(),
        "structures": ok.len(),
        "failed": failed,
        "rows_with_cif_warnings": rows_with_warnings,
        "train": ok.len() - n_val,
        "val": n_val,
        "ftcp_tensors": ftcp_count,
        "without_ftcp": ok.len() - ftcp_count,
        "ftcp_shape": [rows_n, cols_n],
        "graphs": graphs.count(),
        "without_text": no_text,
        "element_table": element_table,
        "config": config,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "featurize_seconds": featurize_seconds,
        "structures_per_second": rows.len() as f64 / featurize_seconds,
        "normalizer_fitted_on": train_ftcp.len(),
    });
    staged.write(
        "summary.json",
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let out = staged.commit()?;
    eprintln!(
        "prepared {} of {} rows in {:.1}s ({:.0}/s): {} FTCP tensors, {} graphs, {} failed (see failures.csv), {} read with CIF warnings (see cif_warnings.csv), {} without text → {}",
        ok.len(),
        rows.len(),
        featurize_seconds,
        rows.len() as f64 / featurize_seconds,
        ftcp_count,
        graphs.count(),
        failed,
        rows_with_warnings,
        no_text,
        out.display()
    );
    Ok(())
}

fn read_rows(args: &Args) -> anyhow::Result<Vec<Row>> {
    let path = &args.csv;
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| BadInput(format!("{}: {e}", path.display())))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let id = col(&args.id_column).ok_or_else(|| {
        BadInput(format!(
            "{}: no '{}' column (columns: {})",
            path.display(),
            args.id_column,
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let text = col(&args.text_column);
    if text.is_none() {
        tracing::warn!(
            "{}: no '{}' column; records get no text",
            path.display(),
            args.text_column
        );
    }
    let tensor = col(&args.tensor_column);
    let cif = col("cif");
    if cif.is_none() && args.cif_dir.is_none() {
        return Err(BadInput(format!(
            "{}: no 'cif' column; give --cif-dir with ID.cif files",
            path.display()
        ))
        .into());
    }
    let mut records = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        records.push(rec);
        if args.limit.is_some_and(|l| n + 1 >= l) {
            break;
        }
    }
    let properties: Vec<usize> = if args.properties.is_empty() {
        let skip = [Some(id), text, cif, tensor];
        (0..headers.len())
            .filter(|c| !skip.contains(&Some(*c)))
            .filter(|&c| {
                let vals: Vec<&str> = records
                    .iter()
                    .filter_map(|r| r.get(c))
                    .filter(|v| !v.is_empty())
                    .collect();
                !vals.is_empty() && vals.iter().all(|v| v.parse::<f64>().is_ok())
            })
            .collect()
    } else {
        args.properties
            .iter()
            .map(|p| {
                col(p).ok_or_else(|| {
                    BadInput(format!("{}: no property column '{p}'", path.display()))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let source_column = col("source");
    let mut rows = Vec::with_capacity(records.len());
    for (n, rec) in records.iter().enumerate() {
        let line = n + 2;
        let id_value = rec.get(id).unwrap_or("").trim().to_string();
        if id_value.is_empty() {
            return Err(BadInput(format!("{}:{line}: empty id", path.display())).into());
        }
        let mut props = BTreeMap::new();
        for &c in &properties {
            let v = rec.get(c).unwrap_or("");
            let parsed = if v.is_empty() {
                None
            } else {
                Some(v.parse::<f64>().map_err(|_| {
                    BadInput(format!(
                        "{}:{line}: {} = '{v}' is not a number",
                        path.display(),
                        &headers[c]
                    ))
                })?)
            };
            props.insert(headers[c].to_string(), parsed.filter(|x| x.is_finite()));
        }
        let cif_bytes = match (&args.cif_dir, cif) {
            (Some(dir), _) => read_cif_file(dir, &id_value),
            (None, Some(c)) => Ok(rec.get(c).unwrap_or("").to_string()).and_then(|t| {
                if t.trim().is_empty() {
                    Err("empty cif column".to_string())
                } else {
                    Ok(t.into_bytes())
                }
            }),
            (None, None) => unreachable!("checked above"),
        };
        let tensor = match tensor.and_then(|c| rec.get(c)).map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(
                serde_json::from_str(v)
                    .map_err(|e| e.to_string())
                    .and_then(|v| xtal_core::data::parse_tensor(&v))
                    .map_err(|m| {
                        BadInput(format!(
                            "{}:{line}: {} = '{v}': {m}",
                            path.display(),
                            args.tensor_column
                        ))
                    })?,
            ),
        };
        rows.push(Row {
            id: id_value,
            source: source_column
                .and_then(|c| rec.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
            tensor,
            text: text
                .and_then(|t| rec.get(t))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
            properties: props,
            cif: cif_bytes,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        if !seen.insert(&r.id) {
            return Err(BadInput(format!(
                "{}: id '{}' appears more than once",
                path.display(),
                r.id
            ))
            .into());
        }
    }
    Ok(rows)
}

fn read_cif_file(dir: &Path, id: &str) -> Result<Vec<u8>, String> {
    if id.contains('/') || id.contains('\\') || id == ".." {
        return Err(format!("id '{id}' cannot name a file"));
    }
    let p = dir.join(format!("{id}.cif"));
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Concatenated graphs: node and edge arrays plus per-graph offsets.
#[derive(Default)]
struct GraphArrays {
    atomic_numbers: Vec<u8>,
    node_offsets: Vec<i64>,
    edges: Vec<u32>,
    images: Vec<i32>,
    distances: Vec<f32>,
    vectors: Vec<f32>,
    edge_offsets: Vec<i64>,
}

impl GraphArrays {
    fn push(&mut self, g: &CrystalGraph) -> usize {
        if self.node_offsets.is_empty() {
            self.node_offsets.push(0);
            self.edge_offsets.push(0);
        }
        self.atomic_numbers.extend_from_slice(&g.atomic_numbers);
        for e in 0..g.num_edges() {
            self.edges.extend([g.sources[e], g.targets[e]]);
            self.images.extend(g.images[e]);
        }
        self.distances.extend_from_slice(&g.distances);
        self.vectors.extend(g.vectors.iter().flatten());
        self.node_offsets.push(self.atomic_numbers.len() as i64);
        self.edge_offsets.push(self.distances.len() as i64);
        self.count() - 1
    }

    fn count(&self) -> usize {
        self.node_offsets.len().saturating_sub(1)
    }

    fn write(&self, dir: &StagedDir) -> anyhow::Result<()> {
        let e = self.distances.len() as u64;
        let offsets = if self.node_offsets.is_empty() {
            vec![0]
        } else {
            self.node_offsets.clone()
        };
        let edge_offsets = if self.edge_offsets.is_empty() {
            vec![0]
        } else {
            self.edge_offsets.clone()
        };
        write_npy(
            &dir.file("graph_atomic_numbers.npy"),
            &[self.atomic_numbers.len() as u64],
            &self.atomic_numbers,
        )?;
        write_npy(
            &dir.file("graph_node_offsets.npy"),
            &[offsets.len() as u64],
            &offsets,
        )?;
        write_npy(&dir.file("graph_edges.npy"), &[e, 2], &self.edges)?;
        write_npy(&dir.file("graph_images.npy"), &[e, 3], &self.images)?;
        write_npy(&dir.file("graph_distances.npy"), &[e], &self.distances)?;
        write_npy(&dir.file("graph_vectors.npy"), &[e, 3], &self.vectors)?;
        write_npy(
            &dir.file("graph_edge_offsets.npy"),
            &[edge_offsets.len() as u64],
            &edge_offsets,
        )?;
        Ok(())
    }
}
