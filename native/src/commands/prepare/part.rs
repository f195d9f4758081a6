//! One part of a preparation (the whole dataset, or one shard): rows are featurised in
//! parallel a chunk at a time and written in input order as each chunk completes, so memory
//! holds one chunk, never the dataset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use xtal_core::featurize::{CrystalGraph, ElementTable, FeaturizeConfig, RowMinMax, featurize_cif};
use xtal_core::structure::{CifWarning, Structure, StructureSummary};

use super::rows::{Row, RowStream};
use crate::output::NpyAppender;
use crate::panic_guard::{QuietPanics, guarded};

/// Rows featurised together per worker thread: large enough to keep every core busy, small
/// enough that a chunk's tensors (about 100 KB each) stay a few tens of MB.
const ROWS_PER_THREAD: usize = 32;

/// What one part holds, written as `part.json` in a shard and summed into `summary.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartCounts {
    pub rows: usize,
    pub structures: usize,
    pub failed: usize,
    pub rows_with_cif_warnings: usize,
    pub train: usize,
    pub val: usize,
    pub ftcp_tensors: usize,
    pub graphs: usize,
    pub without_text: usize,
    pub normalizer_fitted_on: usize,
    pub featurize_seconds: f64,
    /// Min–max statistics of this part's training tensors (none when it has none), kept
    /// bit for bit: a JSON decimal read back can be one ulp off, and shards joined must equal
    /// one preparation exactly.
    #[serde(with = "exact_stats")]
    pub normalizer: Option<RowMinMax>,
}

mod exact_stats {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use xtal_core::featurize::RowMinMax;

    /// `RowMinMax` with each f64 as its bits.
    #[derive(Serialize, Deserialize)]
    struct Bits {
        rows: usize,
        cols: usize,
        min_bits: Vec<u64>,
        max_bits: Vec<u64>,
    }

    pub fn serialize<S: Serializer>(n: &Option<RowMinMax>, s: S) -> Result<S::Ok, S::Error> {
        n.as_ref()
            .map(|n| Bits {
                rows: n.rows,
                cols: n.cols,
                min_bits: n.min.iter().map(|v| v.to_bits()).collect(),
                max_bits: n.max.iter().map(|v| v.to_bits()).collect(),
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RowMinMax>, D::Error> {
        let bits = Option::<Bits>::deserialize(d)?;
        bits.map(|b| {
            if b.min_bits.len() != b.rows || b.max_bits.len() != b.rows {
                return Err(serde::de::Error::custom("min/max lengths differ from rows"));
            }
            Ok(RowMinMax {
                rows: b.rows,
                cols: b.cols,
                min: b.min_bits.into_iter().map(f64::from_bits).collect(),
                max: b.max_bits.into_iter().map(f64::from_bits).collect(),
            })
        })
        .transpose()
    }
}

impl PartCounts {
    /// The counts of both parts; normaliser statistics joined exactly.
    pub fn add(&mut self, other: &PartCounts) {
        self.rows += other.rows;
        self.structures += other.structures;
        self.failed += other.failed;
        self.rows_with_cif_warnings += other.rows_with_cif_warnings;
        self.train += other.train;
        self.val += other.val;
        self.ftcp_tensors += other.ftcp_tensors;
        self.graphs += other.graphs;
        self.without_text += other.without_text;
        self.normalizer_fitted_on += other.normalizer_fitted_on;
        self.featurize_seconds += other.featurize_seconds;
        match (&mut self.normalizer, &other.normalizer) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.normalizer = Some(theirs.clone()),
            _ => {}
        }
    }
}

struct Prepared {
    summary: StructureSummary,
    ftcp: Result<Vec<f32>, String>,
    graph: Result<CrystalGraph, String>,
    structure: Structure,
    warnings: Vec<CifWarning>,
}

/// Featurises `rows` and writes the part's files into `dir`.
pub fn prepare(
    rows: &mut RowStream<'_>,
    count: usize,
    is_val: &[bool],
    config: &FeaturizeConfig,
    table: &ElementTable,
    pool: &rayon::ThreadPool,
    dir: &Path,
) -> anyhow::Result<PartCounts> {
    let mut writer = PartWriter::create(dir, config)?;
    let bar = ProgressBar::new(count as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} featurizing {pos}/{len} [{bar:30}] {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let chunk = ROWS_PER_THREAD * pool.current_num_threads();
    let quiet = QuietPanics::install();
    loop {
        let batch = rows.take(chunk)?;
        if batch.is_empty() {
            break;
        }
        let results: Vec<Result<Prepared, String>> = pool.install(|| {
            batch
                .par_iter()
                .map(|row| {
                    let out = featurize(row, config, table);
                    bar.inc(1);
                    out
                })
                .collect()
        });
        for (row, result) in batch.iter().zip(results) {
            writer.write(row, result, is_val[row.index])?;
        }
    }
    drop(quiet);
    bar.finish_and_clear();
    writer.counts.featurize_seconds = start.elapsed().as_secs_f64();
    writer.finish()
}

fn featurize(
    row: &Row,
    config: &FeaturizeConfig,
    table: &ElementTable,
) -> Result<Prepared, String> {
    row.cif.as_ref().map_err(Clone::clone).and_then(|cif| {
        // A failure anywhere in one row, a dependency's panic included, is that row's
        // entry in failures.csv; the other rows are written.
        guarded(|| {
            let f = featurize_cif(cif, config, table)?;
            Ok(Prepared {
                summary: f.summary,
                ftcp: f.ftcp.map(|t| t.data.iter().map(|v| *v as f32).collect()),
                graph: f.graph,
                structure: f.structure,
                warnings: f.warnings,
            })
        })
    })
}

/// The open files of a part.
struct PartWriter {
    dir: std::path::PathBuf,
    ftcp: NpyAppender<f32>,
    ftcp_shape: (usize, usize),
    graphs: GraphWriter,
    /// Line k: the structure of graph k, for encoders that build graphs of their own.
    structures: BufWriter<File>,
    records: BufWriter<File>,
    failures: csv::Writer<File>,
    /// What the CIF reader assumed, row by row: the report of a preparation keeps it.
    cif_warnings: csv::Writer<File>,
    counts: PartCounts,
}

fn create(dir: &Path, name: &str) -> anyhow::Result<File> {
    let p = dir.join(name);
    File::create(&p).with_context(|| format!("cannot create {}", p.display()))
}

impl PartWriter {
    fn create(dir: &Path, config: &FeaturizeConfig) -> anyhow::Result<Self> {
        let (r, c) = (config.ftcp.rows(), config.ftcp.cols());
        let mut failures = csv::Writer::from_writer(create(dir, "failures.csv")?);
        failures.write_record(["id", "reason"])?;
        let mut cif_warnings = csv::Writer::from_writer(create(dir, "cif_warnings.csv")?);
        cif_warnings.write_record(["id", "line", "warning"])?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ftcp: NpyAppender::create(&dir.join("ftcp.npy"), &[r as u64, c as u64])?,
            ftcp_shape: (r, c),
            graphs: GraphWriter::create(dir)?,
            structures: BufWriter::new(create(dir, "structures.jsonl")?),
            records: BufWriter::new(create(dir, "dataset.jsonl")?),
            failures,
            cif_warnings,
            counts: PartCounts::default(),
        })
    }

    fn write(
        &mut self,
        row: &Row,
        result: Result<Prepared, String>,
        is_val: bool,
    ) -> anyhow::Result<()> {
        self.counts.rows += 1;
        let p = match result {
            Ok(p) => p,
            Err(reason) => {
                self.counts.failed += 1;
                self.failures.write_record([&row.id, &reason])?;
                return Ok(());
            }
        };
        self.counts.structures += 1;
        if is_val {
            self.counts.val += 1;
        } else {
            self.counts.train += 1;
        }
        if !p.warnings.is_empty() {
            self.counts.rows_with_cif_warnings += 1;
        }
        for w in &p.warnings {
            self.cif_warnings
                .write_record([row.id.as_str(), &w.line.to_string(), &w.message])?;
        }
        let ftcp_index = match &p.ftcp {
            Ok(t) => {
                self.ftcp.extend(t)?;
                if !is_val {
                    let (r, c) = self.ftcp_shape;
                    match &mut self.counts.normalizer {
                        Some(n) => n.update(t),
                        None => self.counts.normalizer = RowMinMax::fit(r, c, [&t[..]]),
                    }
                    self.counts.normalizer_fitted_on += 1;
                }
                self.counts.ftcp_tensors += 1;
                Some(self.counts.ftcp_tensors - 1)
            }
            Err(reason) => {
                self.failures.write_record([&row.id, reason])?;
                None
            }
        };
        let graph_index = match &p.graph {
            Ok(g) => {
                serde_json::to_writer(&mut self.structures, &p.structure)?;
                self.structures.write_all(b"\n")?;
                self.graphs.push(g)?;
                self.counts.graphs += 1;
                Some(self.counts.graphs - 1)
            }
            Err(reason) => {
                self.failures.write_record([&row.id, reason])?;
                None
            }
        };
        if row.texts.is_empty() {
            self.counts.without_text += 1;
        }
        let mut record = json!({
            "id": row.id,
            "source": row.source,
            "text": row.texts.first(),
            "formula": p.summary.reduced_formula,
            "split": if is_val { "val" } else { "train" },
            "group": p.summary.crystal_system,
            "spacegroup_number": p.summary.spacegroup_number,
            "nsites": p.summary.nsites,
            "properties": row.properties,
            "tensor": row.tensor,
            "ftcp_index": ftcp_index,
            "graph_index": graph_index,
            "structure": p.summary,
        });
        // Every text when there are several (`text` stays the first, for readers of one).
        if row.texts.len() > 1 {
            record["texts"] = json!(row.texts);
        }
        serde_json::to_writer(&mut self.records, &record)?;
        self.records.write_all(b"\n")?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<PartCounts> {
        let dir = self.dir.clone();
        let at = |name: &str| format!("cannot write {}", dir.join(name).display());
        self.failures.flush().with_context(|| at("failures.csv"))?;
        self.cif_warnings
            .flush()
            .with_context(|| at("cif_warnings.csv"))?;
        self.ftcp.finish()?;
        self.graphs.finish()?;
        self.structures
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| at("structures.jsonl"))?;
        self.records
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| at("dataset.jsonl"))?;
        Ok(self.counts)
    }
}

/// Concatenated graphs: node and edge arrays plus per-graph offsets, appended graph by graph.
struct GraphWriter {
    atomic_numbers: NpyAppender<u8>,
    node_offsets: NpyAppender<i64>,
    edges: NpyAppender<u32>,
    images: NpyAppender<i32>,
    distances: NpyAppender<f32>,
    vectors: NpyAppender<f32>,
    edge_offsets: NpyAppender<i64>,
    nodes: i64,
    edge_count: i64,
}

impl GraphWriter {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let file = |name: &str| dir.join(format!("graph_{name}.npy"));
        let mut node_offsets = NpyAppender::create(&file("node_offsets"), &[])?;
        let mut edge_offsets = NpyAppender::create(&file("edge_offsets"), &[])?;
        node_offsets.extend(&[0])?;
        edge_offsets.extend(&[0])?;
        Ok(Self {
            atomic_numbers: NpyAppender::create(&file("atomic_numbers"), &[])?,
            node_offsets,
            edges: NpyAppender::create(&file("edges"), &[2])?,
            images: NpyAppender::create(&file("images"), &[3])?,
            distances: NpyAppender::create(&file("distances"), &[])?,
            vectors: NpyAppender::create(&file("vectors"), &[3])?,
            edge_offsets,
            nodes: 0,
            edge_count: 0,
        })
    }

    fn push(&mut self, g: &CrystalGraph) -> anyhow::Result<()> {
        self.atomic_numbers.extend(&g.atomic_numbers)?;
        let pairs: Vec<u32> = (0..g.num_edges())
            .flat_map(|e| [g.sources[e], g.targets[e]])
            .collect();
        self.edges.extend(&pairs)?;
        self.images.extend(g.images.as_flattened())?;
        self.distances.extend(&g.distances)?;
        self.vectors.extend(g.vectors.as_flattened())?;
        self.nodes += g.atomic_numbers.len() as i64;
        self.edge_count += g.distances.len() as i64;
        self.node_offsets.extend(&[self.nodes])?;
        self.edge_offsets.extend(&[self.edge_count])?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        self.atomic_numbers.finish()?;
        self.node_offsets.finish()?;
        self.edges.finish()?;
        self.images.finish()?;
        self.distances.finish()?;
        self.vectors.finish()?;
        self.edge_offsets.finish()?;
        Ok(())
    }
}
