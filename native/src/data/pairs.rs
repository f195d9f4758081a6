//! Loading structure–text pairs from disk: a `dataset.jsonl` in the original CLIP layout
//! (embeddings as `.npy` files) or one written by `xtal prepare` (FTCP tensors, or crystal
//! graphs built from its `structures.jsonl` for graph encoders).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

use xtal_core::data::{
    GraphRows, Layout, OwnedGraphs, PairRecord, PairSet, Records, StructureStore, TensorRows,
    VectorStore, decode_npy, parse_jsonl,
};
use xtal_core::featurize::{CrystalGraph, ElementTable, GraphConfig, GraphError, RowMinMax};
use xtal_core::structure::Structure;

use super::graphs::{self, MappedGraphs};
use super::mapped::{NpyTensors, SelectedRows};
use super::shards::{self, MANIFEST, Part};
use crate::exit::BadInput;
use crate::output::write_atomic;

/// A record's structure, or where it was looked for.
type Found<T> = Result<T, Vec<String>>;

/// Each record's graph in a store (or why it has none), and the store.
type GraphRowsFound = (Vec<Found<usize>>, Arc<dyn GraphRows>);

/// Whether `a` and `b` name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Where a run's pairs come from; recorded in the run so that `eval` can find them again.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DataSource {
    /// The dataset.jsonl, or the shards.json of a dataset prepared in shards.
    pub jsonl: PathBuf,
    /// Directory of `.npy` embeddings (original layout).
    pub embedding_dir: PathBuf,
    /// FTCP row scaling of another dataset: a model trained on one prepared dataset must see
    /// every other through its own training normaliser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftcp_normalizer: Option<PathBuf>,
    /// An element table (CGCNN's atom_init.json format) in place of the dataset's own: a graph
    /// model reads every dataset through the table it was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_table: Option<PathBuf>,
    /// A copy of the prepared dataset's `summary.json` (its FTCP layout), kept by the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<PathBuf>,
}

impl DataSource {
    /// `path` is a dataset directory or a `.jsonl` file; embeddings default to `graph_emb/`
    /// beside it.
    pub fn new(path: &Path, embedding_dir: Option<&Path>) -> anyhow::Result<Self> {
        let jsonl = if path.is_dir() {
            if path.join(MANIFEST).is_file() {
                path.join(MANIFEST)
            } else {
                // A directory of unfinished shards says which are missing.
                shards::parts(path)?;
                path.join("dataset.jsonl")
            }
        } else {
            path.to_path_buf()
        };
        if !jsonl.is_file() {
            return Err(BadInput(format!("{}: no such dataset file", jsonl.display())).into());
        }
        let dir = jsonl.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Self {
            embedding_dir: embedding_dir.map_or_else(|| dir.join("graph_emb"), Path::to_path_buf),
            jsonl,
            ftcp_normalizer: None,
            element_table: None,
            summary: None,
        })
    }

    /// The paths this source records, for a run to store relative to itself.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.jsonl, &mut self.embedding_dir];
        paths.extend(self.ftcp_normalizer.as_mut());
        paths.extend(self.element_table.as_mut());
        paths.extend(self.summary.as_mut());
        paths
    }

    /// The prepared dataset's `summary.json` (or the run's copy of it).
    pub fn summary_path(&self) -> PathBuf {
        self.summary
            .clone()
            .unwrap_or_else(|| self.dir().join("summary.json"))
    }

    /// This source with what a model trained on it depends on — the FTCP normaliser, the
    /// dataset's summary (its FTCP layout) and a custom element table — copied into the run
    /// directory `run`: the run keeps working when its data moves, and reads other data the
    /// way it read this.
    pub fn adopted_by(mut self, run: &Path) -> anyhow::Result<Self> {
        let copy = |from: PathBuf, name: &str| -> anyhow::Result<Option<PathBuf>> {
            if !from.is_file() {
                return Ok(None);
            }
            let to = run.join(name);
            if !same_file(&from, &to) {
                let bytes = std::fs::read(&from)
                    .with_context(|| format!("{}: cannot read", from.display()))?;
                write_atomic(&to, &bytes)?;
            }
            Ok(Some(to))
        };
        let table = self.element_table()?;
        if let Some(to) = copy(self.normalizer_path(), "ftcp_normalizer.json")? {
            self.ftcp_normalizer = Some(to);
        }
        if let Some(to) = copy(self.summary_path(), "dataset_summary.json")? {
            self.summary = Some(to);
        }
        // xtal's default table is built in; another travels with the run.
        if table.source != "default" {
            let to = run.join("element_table.json");
            if !self
                .element_table
                .as_deref()
                .is_some_and(|p| same_file(p, &to))
            {
                write_atomic(&to, table.to_atom_init_json().as_bytes())?;
            }
            self.element_table = Some(to);
        }
        Ok(self)
    }

    /// The FTCP normaliser this source's prepared data is scaled with.
    pub fn normalizer_path(&self) -> PathBuf {
        self.ftcp_normalizer
            .clone()
            .unwrap_or_else(|| self.dir().join("ftcp_normalizer.json"))
    }

    /// Other data, scaled (and, for graphs, featurised) as `model_data` was when the model
    /// was trained.
    pub fn scaled_like(mut self, model_data: &DataSource) -> Self {
        self.ftcp_normalizer = Some(model_data.normalizer_path());
        if model_data.element_table.is_some() {
            self.element_table.clone_from(&model_data.element_table);
        }
        self
    }

    pub fn dir(&self) -> &Path {
        self.jsonl.parent().unwrap_or(Path::new("."))
    }

    /// Each part's records file and offsets: the dataset itself, or its shards in order.
    fn parts(&self) -> anyhow::Result<Vec<(PathBuf, Part)>> {
        if self.jsonl.file_name().is_some_and(|n| n == MANIFEST) {
            return Ok(shards::parts(self.dir())?
                .into_iter()
                .map(|p| (p.dir.join("dataset.jsonl"), p))
                .collect());
        }
        Ok(vec![(
            self.jsonl.clone(),
            Part {
                dir: self.dir().to_path_buf(),
                ftcp_offset: 0,
                graph_offset: 0,
            },
        )])
    }

    /// Every part's records, one list, indices offset to the whole dataset.
    fn records(&self) -> anyhow::Result<Records> {
        let mut all: Option<Records> = None;
        for (jsonl, part) in self.parts()? {
            let name = jsonl.display().to_string();
            let text =
                std::fs::read_to_string(&jsonl).with_context(|| format!("{name}: cannot read"))?;
            let mut records = parse_jsonl(&text, &name).map_err(|e| BadInput(e.to_string()))?;
            for r in &mut records.records {
                r.ftcp_index = r.ftcp_index.map(|k| k + part.ftcp_offset);
                r.graph_index = r.graph_index.map(|k| k + part.graph_offset);
            }
            match &mut all {
                None => all = Some(records),
                Some(all) => {
                    if records.layout == Layout::Prepared {
                        all.layout = Layout::Prepared;
                    }
                    all.records.append(&mut records.records);
                    all.skipped.append(&mut records.skipped);
                }
            }
        }
        all.ok_or_else(|| BadInput(format!("{}: no parts", self.jsonl.display())).into())
    }

    /// Reads the pairs; the original layout is split by (`val_fraction`, `seed`). With
    /// `graph`, the structure side is each record's crystal graph built with those settings.
    pub fn load(
        &self,
        val_fraction: f64,
        seed: u64,
        graph: Option<&GraphConfig>,
    ) -> anyhow::Result<PairSet> {
        let name = self.jsonl.display().to_string();
        let records = self.records()?;
        if let Some(config) = graph {
            if records.layout != Layout::Prepared {
                return Err(BadInput(format!(
                    "{name}: a graph encoder reads structures, which only `xtal prepare` datasets carry"
                ))
                .into());
            }
            let table = self.element_table()?;
            let indices: Vec<Option<usize>> =
                records.records.iter().map(|r| r.graph_index).collect();
            let (rows, store) = self.graph_rows(&indices, config, &table)?;
            let source_name = self.dir().join("structures.jsonl").display().to_string();
            let mut set = PairSet::assemble_stored(
                &name,
                records,
                rows,
                StructureStore::Graphs(store),
                &source_name,
                val_fraction,
                seed,
            )
            .map_err(|e| BadInput(e.to_string()))?;
            set.element_table = Some(table);
            return Ok(set);
        }
        match records.layout {
            Layout::Original => {
                let features = records
                    .records
                    .iter()
                    .map(|r| self.embedding(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let source_name = self.embedding_dir.display().to_string();
                PairSet::assemble(&name, records, features, &source_name, val_fraction, seed)
            }
            Layout::Prepared => {
                let (rows, store) = self.ftcp_rows(&records.records)?;
                let source_name = self.dir().join("ftcp.npy").display().to_string();
                PairSet::assemble_stored(
                    &name,
                    records,
                    rows,
                    StructureStore::Vectors(store),
                    &source_name,
                    val_fraction,
                    seed,
                )
            }
        }
        .map_err(|e| BadInput(e.to_string()).into())
    }

    /// The element table of [`Self::element_table`] if set, else the one the dataset was
    /// prepared with (its summary.json names it, relative to the dataset).
    pub fn element_table(&self) -> anyhow::Result<ElementTable> {
        if let Some(p) = &self.element_table {
            return crate::commands::element_table(Some(p));
        }
        let p = self.summary_path();
        let named = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["element_table"].as_str().map(String::from));
        match named.as_deref() {
            None | Some("default") => Ok(ElementTable::default_table()),
            Some(path) => {
                // Datasets prepared before the table was copied into them name it as given.
                let in_dataset = self.dir().join(path);
                let p = if in_dataset.is_file() {
                    in_dataset
                } else {
                    PathBuf::from(path)
                };
                crate::commands::element_table(Some(&p))
            }
        }
    }

    /// Every record of the dataset as JSON, with its 1-based line in its part's file (for
    /// commands that read fields the pair reader does not keep: properties, source); indices
    /// count in the whole dataset. Invalid JSON names the file and line.
    pub fn json_records(&self) -> anyhow::Result<Vec<(usize, serde_json::Value)>> {
        let mut out = Vec::new();
        for (path, part) in self.parts()? {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| BadInput(format!("{}: cannot read ({e})", path.display())))?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let mut v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
                shards::offset_indices(&mut v, &part);
                out.push((i + 1, v));
            }
        }
        Ok(out)
    }

    /// The structures of the dataset (`structures.jsonl`, line k = graph k; the shards' in
    /// order).
    pub fn structures(&self) -> anyhow::Result<Vec<Structure>> {
        let mut out = Vec::new();
        self.for_each_structure(|_, s| {
            out.push(s);
            Ok(())
        })?;
        Ok(out)
    }

    /// The structures of the records named `ids`, read in one pass over `structures.jsonl`
    /// and keyed by id; an id the dataset lacks, or one without a structure, is absent.
    pub fn structures_of(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, Structure>> {
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        let mut line_ids: HashMap<usize, String> = HashMap::new();
        for (_, record) in self.json_records()? {
            let id = record["id"].as_str().unwrap_or_default();
            if let (true, Some(k)) = (wanted.contains(id), record["graph_index"].as_u64()) {
                line_ids.insert(k as usize, id.to_string());
            }
        }
        let mut out = HashMap::new();
        if line_ids.is_empty() {
            return Ok(out);
        }
        self.for_each_structure(|k, s| {
            if let Some(id) = line_ids.remove(&k) {
                out.insert(id, s);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::structures`] one at a time with its index, read line by line (at 129k
    /// materials the file is gigabytes of JSON).
    fn for_each_structure(
        &self,
        mut f: impl FnMut(usize, Structure) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut k = 0;
        for (_, part) in self.parts()? {
            let p = part.dir.join("structures.jsonl");
            let file = std::fs::File::open(&p).map_err(|e| {
                BadInput(format!(
                    "{}: cannot read ({e}); datasets prepared before graph encoders lack it — run `xtal prepare` again",
                    p.display()
                ))
            })?;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let at = |e: String| BadInput(format!("{}:{}: {e}", p.display(), i + 1));
                let line = line.map_err(|e| at(e.to_string()))?;
                f(
                    k,
                    serde_json::from_str(&line).map_err(|e| at(e.to_string()))?,
                )?;
                k += 1;
            }
        }
        Ok(())
    }

    /// Each record's crystal graph (`graph_index` per record) and the store holding them: the
    /// rows of the dataset's mapped graph arrays when `xtal prepare` built them with the
    /// model's settings (`config`), else graphs built from `structures.jsonl`. A graph that
    /// cannot be built, or holds an element `table` lacks, is left out with the reason.
    pub fn graph_rows(
        &self,
        indices: &[Option<usize>],
        config: &GraphConfig,
        table: &ElementTable,
    ) -> anyhow::Result<GraphRowsFound> {
        match self.prepared_graphs(config)? {
            Ok(mapped) => {
                eprintln!(
                    "graphs: read in place from the dataset's graph_*.npy ({} graphs)",
                    mapped.len()
                );
                let count = mapped.len();
                let rows = indices
                    .iter()
                    .map(|k| match *k {
                        Some(k) if k < count => mapped
                            .atoms(k)
                            .iter()
                            .try_for_each(|&z| table.features(z).map(drop))
                            .map(|()| k)
                            .map_err(|e| vec![format!("graph: {}", GraphError::from(e))]),
                        Some(k) => Err(vec![past_structures(k, count)]),
                        None => Err(vec![NO_STRUCTURE.to_string()]),
                    })
                    .collect();
                Ok((rows, Arc::new(mapped)))
            }
            Err(why) => {
                eprintln!("graphs: building them from structures.jsonl ({why})");
                let (rows, graphs) = self.build_graphs(indices, config, table)?;
                Ok((rows, Arc::new(OwnedGraphs(graphs))))
            }
        }
    }

    /// The graph arrays `xtal prepare` wrote, mapped, if they were built with `config`'s
    /// neighbour settings (else why not). Damaged arrays are an error.
    fn prepared_graphs(
        &self,
        config: &GraphConfig,
    ) -> anyhow::Result<Result<MappedGraphs, String>> {
        let summary_path = self.dir().join("summary.json");
        let prepared: Option<GraphConfig> = std::fs::read_to_string(&summary_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| serde_json::from_value(v["config"]["graph"].clone()).ok());
        let Some(prepared) = prepared else {
            return Ok(Err(format!(
                "{} does not record how its graphs were built",
                summary_path.display()
            )));
        };
        if (prepared.cutoff, prepared.max_neighbors) != (config.cutoff, config.max_neighbors) {
            return Ok(Err(format!(
                "the dataset's graphs: cutoff {} Å, {} neighbours; the model's: cutoff {} Å, {}",
                prepared.cutoff,
                neighbours(prepared.max_neighbors),
                config.cutoff,
                neighbours(config.max_neighbors)
            )));
        }
        let parts = self.parts()?;
        if let Some(p) = parts
            .iter()
            .find(|(_, p)| !graphs::graph_file(&p.dir, "node_offsets").is_file())
        {
            return Ok(Err(format!("{} has no graph arrays", p.1.dir.display())));
        }
        let dirs: Vec<(&Path, usize)> = parts
            .iter()
            .map(|(_, p)| (p.dir.as_path(), p.graph_offset))
            .collect();
        Ok(Ok(MappedGraphs::open(&dirs)?))
    }

    /// [`Self::graph_rows`] built from `structures.jsonl`: structures are read as a stream
    /// and built on every core a chunk at a time, so only the graphs stay in memory; each
    /// structure a record names is built once.
    fn build_graphs(
        &self,
        indices: &[Option<usize>],
        config: &GraphConfig,
        table: &ElementTable,
    ) -> anyhow::Result<(Vec<Found<usize>>, Vec<CrystalGraph>)> {
        const CHUNK: usize = 256;
        let wanted: std::collections::HashSet<usize> = indices.iter().flatten().copied().collect();
        // Structure k's graph: its place in `graphs`, or why there is none.
        let mut built: HashMap<usize, Result<usize, String>> = HashMap::new();
        let mut graphs = Vec::new();
        let mut build = |chunk: &mut Vec<(usize, Structure)>| {
            let results: Vec<(usize, Result<CrystalGraph, String>)> = chunk
                .par_iter()
                .map(|(k, s)| (*k, checked_graph(s, config, table)))
                .collect();
            chunk.clear();
            for (k, graph) in results {
                let at = graph.map(|g| {
                    graphs.push(g);
                    graphs.len() - 1
                });
                built.insert(k, at);
            }
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut count = 0;
        self.for_each_structure(|k, s| {
            count = k + 1;
            if wanted.contains(&k) {
                chunk.push((k, s));
                if chunk.len() == CHUNK {
                    build(&mut chunk);
                }
            }
            Ok(())
        })?;
        build(&mut chunk);
        let rows = indices
            .iter()
            .map(|k| match k.map(|k| (k, built.get(&k))) {
                Some((_, Some(at))) => at.clone().map_err(|e| vec![e]),
                Some((k, None)) => Err(vec![past_structures(k, count)]),
                None => Err(vec![NO_STRUCTURE.to_string()]),
            })
            .collect();
        Ok((rows, graphs))
    }

    /// The first of the three places that holds a file; a file that exists but is not a
    /// float `.npy` is an error naming it.
    fn embedding(
        &self,
        r: &xtal_core::data::PairRecord,
    ) -> anyhow::Result<Result<Vec<f32>, Vec<String>>> {
        let candidates = r.embedding_candidates(self.dir(), &self.embedding_dir);
        for path in &candidates {
            if path.is_file() {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let array =
                    decode_npy(&bytes).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
                return Ok(Ok(array.data));
            }
        }
        Ok(Err(candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect()))
    }

    /// Each record's row of the dataset's FTCP tensors (every shard's `ftcp.npy`, mapped in
    /// place), read flattened and scaled by the training-split normaliser.
    fn ftcp_rows(
        &self,
        records: &[PairRecord],
    ) -> anyhow::Result<(Vec<Found<usize>>, VectorStore)> {
        let norm_path = self.normalizer_path();
        let norm_text = std::fs::read_to_string(&norm_path)
            .map_err(|e| BadInput(format!("{}: cannot read ({e})", norm_path.display())))?;
        let norm: RowMinMax = serde_json::from_str(&norm_text)
            .map_err(|e| BadInput(format!("{}: {e}", norm_path.display())))?;
        let per = norm.rows * norm.cols;
        let mut tensors = SelectedRows::new(per);
        for (_, part) in self.parts()? {
            let npy_path = part.dir.join("ftcp.npy");
            let ftcp = NpyTensors::open_tensors(&npy_path, norm.rows, norm.cols)?;
            if part.ftcp_offset != tensors.len() {
                return Err(BadInput(format!(
                    "{}: the shards before it hold {} FTCP tensors, {} says {}",
                    npy_path.display(),
                    tensors.len(),
                    self.jsonl.display(),
                    part.ftcp_offset
                ))
                .into());
            }
            tensors.add_all(ftcp);
        }
        let count = tensors.len();
        let rows = records
            .iter()
            .map(|r| match r.ftcp_index {
                Some(k) if k < count => Ok(k),
                Some(k) => Err(vec![format!(
                    "ftcp_index {k} is past the {count} tensors of ftcp.npy"
                )]),
                None => Err(vec![
                    "no FTCP tensor (see failures.csv of the dataset)".into(),
                ]),
            })
            .collect();
        let store = VectorStore {
            rows: tensors.into_shared(),
            minmax: Some(norm),
        };
        Ok((rows, store))
    }
}

/// Why a record whose structure failed in `xtal prepare` has no graph.
const NO_STRUCTURE: &str = "no structure (see failures.csv of the dataset)";

fn past_structures(k: usize, count: usize) -> String {
    format!("graph_index {k} is past the {count} structures of the dataset")
}

fn neighbours(max: Option<usize>) -> String {
    max.map_or("all".to_string(), |n| format!("at most {n}"))
}

/// A structure's graph, with every element in `table` (batches look them up later).
pub fn checked_graph(
    structure: &Structure,
    config: &GraphConfig,
    table: &ElementTable,
) -> Result<CrystalGraph, String> {
    CrystalGraph::build_with_table(structure, config, table).map_err(|e| format!("graph: {e}"))
}

/// What was read and what was left out, written as `data_report.json` and summarised on screen.
#[derive(Debug, Serialize)]
pub struct DataReport<'a> {
    pub jsonl: String,
    pub layout: Layout,
    pub pairs: usize,
    pub train: usize,
    pub validation: usize,
    pub structure_dim: usize,
    pub skipped_lines: usize,
    pub missing_structure: usize,
    pub skipped: &'a [xtal_core::data::SkippedLine],
    pub missing: &'a [xtal_core::data::MissingStructure],
}

impl<'a> DataReport<'a> {
    pub fn new(source: &DataSource, set: &'a PairSet) -> Self {
        let validation = set.is_val.iter().filter(|v| **v).count();
        Self {
            jsonl: source.jsonl.display().to_string(),
            layout: set.layout,
            pairs: set.len(),
            train: set.len() - validation,
            validation,
            structure_dim: set.feature_dim,
            skipped_lines: set.skipped.len(),
            missing_structure: set.missing.len(),
            skipped: &set.skipped,
            missing: &set.missing,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} pairs ({} train, {} validation, {} structures, {} layout); {} lines without text skipped, {} records without a structure representation left out (listed in data_report.json)",
            self.pairs,
            self.train,
            self.validation,
            if self.structure_dim == 0 {
                "graph".to_string()
            } else {
                format!("{}-D", self.structure_dim)
            },
            match self.layout {
                Layout::Original => "original",
                Layout::Prepared => "xtal prepare",
            },
            self.skipped_lines,
            self.missing_structure
        )
    }
}
