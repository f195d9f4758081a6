//! Structure–text pairs from `dataset.jsonl`.
//!
//! Two layouts are read as they are:
//! - **Original** (the first CLIP system): `id, text, formula, graph_emb, tensor, group`
//!   (or `robo_crystal_system`), structure embeddings as `.npy` files found by three rules —
//!   the record's `graph_emb` path (absolute or relative to the JSONL), `{dir}/{id}.npy`,
//!   `{dir}/{formula}_{id}.npy`.
//! - **Prepared** (`xtal prepare`): records carry `split`, `ftcp_index` and `graph_index`; the
//!   structure side is the record's FTCP tensor, scaled by the normaliser fitted on the
//!   training split, or — for a graph encoder — its crystal graph.
//!
//! Unlike the original, nothing is dropped silently: lines without text, records without a
//! structure representation are listed with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use std::borrow::Cow;

use super::rows::{GraphRows, OwnedGraphs, OwnedRows, TensorRows};
use super::shuffle::{SeededRng, validation_mask};
use crate::featurize::{CrystalGraph, ElementTable, GraphBatch, GraphError, RowMinMax};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Original,
    Prepared,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairRecord {
    /// 1-based line in the JSONL.
    pub line: usize,
    pub id: String,
    /// The record's texts, at least one: `texts` when the record has several (the first is
    /// `text`), else `text`.
    pub texts: Vec<String>,
    pub formula: Option<String>,
    pub graph_emb: Option<String>,
    /// Row-major 3×3 property tensor.
    pub tensor: Option<[f64; 9]>,
    /// Crystal system (the original's `group` / `robo_crystal_system`).
    pub group: String,
    /// Prepared layout: the split `xtal prepare` assigned (true = validation).
    pub is_val: Option<bool>,
    /// Prepared layout: row of `ftcp.npy`, absent when the structure had no FTCP tensor.
    pub ftcp_index: Option<usize>,
    /// Prepared layout: index into the dataset's structure and graph arrays.
    pub graph_index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedLine {
    pub line: usize,
    pub id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    pub layout: Layout,
    pub records: Vec<PairRecord>,
    pub skipped: Vec<SkippedLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingStructure {
    pub id: String,
    pub line: usize,
    /// Where the embedding was looked for, or why there is none.
    pub tried: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: no usable records ({skipped} lines skipped, {missing} without a structure)")]
    Empty {
        file: String,
        skipped: usize,
        missing: usize,
    },
    #[error(
        "{source_name}: record `{id}` has a {found}-D structure vector, the others {expected}-D"
    )]
    Dimension {
        id: String,
        source_name: String,
        expected: usize,
        found: usize,
    },
    #[error("{source_name}: record `{id}` has a NaN or infinite structure value")]
    NotFinite { id: String, source_name: String },
}

/// Reads every line of a `dataset.jsonl`. Malformed JSON is an error naming the line; a
/// record without `id` or `text` is skipped and listed.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Records, DataError> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut prepared = false;
    let err = |line: usize, message: String| DataError::Line {
        file: file.to_string(),
        line,
        message,
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(raw).map_err(|e| err(line, format!("invalid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(err(line, "expected a JSON object".into()));
        };
        prepared |= obj.contains_key("ftcp_index");
        let string = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let id = string("id").filter(|s| !s.is_empty());
        let texts: Vec<String> = match obj.get("texts") {
            None | Some(Value::Null) => string("text").into_iter().collect(),
            Some(Value::Array(all)) => all
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(String::from)
                        .ok_or_else(|| err(line, "`texts` must be a list of strings".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(line, "`texts` must be a list of strings".into())),
        };
        let texts: Vec<String> = texts.into_iter().filter(|s| !s.trim().is_empty()).collect();
        let (Some(id), false) = (id.clone(), texts.is_empty()) else {
            skipped.push(SkippedLine {
                line,
                id,
                reason: "no `id` or no `text`".into(),
            });
            continue;
        };
        let tensor = match obj.get("tensor") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_tensor(v).map_err(|m| err(line, format!("`tensor`: {m}")))?),
        };
        let is_val = match obj.get("split") {
            Some(Value::String(s)) if s == "val" => Some(true),
            Some(Value::String(s)) if s == "train" => Some(false),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(err(
                    line,
                    format!("`split` must be \"train\" or \"val\", not {other}"),
                ));
            }
        };
        let index = |key: &str| match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|k| Some(k as usize))
                .ok_or_else(|| err(line, format!("`{key}` must be a non-negative integer"))),
        };
        let ftcp_index = index("ftcp_index")?;
        let graph_index = index("graph_index")?;
        records.push(PairRecord {
            line,
            id,
            texts,
            formula: string("formula"),
            graph_emb: string("graph_emb"),
            tensor,
            group: string("robo_crystal_system")
                .or_else(|| string("group"))
                .unwrap_or_else(|| "triclinic".into()),
            is_val,
            ftcp_index,
            graph_index,
        });
    }
    Ok(Records {
        layout: if prepared {
            Layout::Prepared
        } else {
            Layout::Original
        },
        records,
        skipped,
    })
}

/// Nine numbers, as a JSON list (flat or 3×3) or a string holding one (both occur in the
/// original data).
pub fn parse_tensor(v: &Value) -> Result<[f64; 9], String> {
    let list = match v {
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|e| e.to_string())?,
        other => other.clone(),
    };
    let flat: Vec<f64> = match &list {
        Value::Array(rows) => {
            let mut out = Vec::new();
            for x in rows {
                match x {
                    Value::Array(inner) => out.extend(inner.iter().filter_map(Value::as_f64)),
                    other => out.push(other.as_f64().ok_or("not a number")?),
                }
            }
            out
        }
        _ => return Err("expected 9 numbers".into()),
    };
    if flat.len() != 9 || flat.iter().any(|x| !x.is_finite()) {
        return Err(format!("expected 9 finite numbers, found {}", flat.len()));
    }
    let mut t = [0.0; 9];
    t.copy_from_slice(&flat);
    Ok(t)
}

/// Whether `s` can name a file inside a directory without leaving it.
pub fn is_plain_name(s: &str) -> bool {
    !s.contains(['/', '\\']) && s != ".." && s != "."
}

impl PairRecord {
    /// The original system's three places for this record's embedding, in order. Ids and
    /// formulas that would leave the embedding directory are not turned into paths.
    pub fn embedding_candidates(&self, jsonl_dir: &Path, embedding_dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(p) = &self.graph_emb {
            let p = Path::new(p);
            out.push(if p.is_absolute() {
                p.to_path_buf()
            } else {
                jsonl_dir.join(p)
            });
        }
        if is_plain_name(&self.id) {
            out.push(embedding_dir.join(format!("{}.npy", self.id)));
            if let Some(f) = self.formula.as_deref().filter(|f| is_plain_name(f)) {
                out.push(embedding_dir.join(format!("{f}_{}.npy", self.id)));
            }
        }
        out
    }
}

/// What a model reads for one structure: a vector (precomputed embedding or FTCP) or a graph.
#[derive(Debug, Clone, PartialEq)]
pub enum StructureItem {
    Vector(Vec<f32>),
    Graph(CrystalGraph),
}

impl From<Vec<f32>> for StructureItem {
    fn from(v: Vec<f32>) -> Self {
        StructureItem::Vector(v)
    }
}

impl From<CrystalGraph> for StructureItem {
    fn from(g: CrystalGraph) -> Self {
        StructureItem::Graph(g)
    }
}

/// Structure vectors stored elsewhere (a memory-mapped `.npy` natively), with the scaling a
/// prepared dataset's FTCP rows take as they are read.
#[derive(Debug, Clone)]
pub struct VectorStore {
    pub rows: Arc<dyn TensorRows>,
    /// The prepared dataset's FTCP row min–max (fitted on its training split).
    pub minmax: Option<RowMinMax>,
}

/// The structure vectors of a pair set, read a row at a time as batches are built: a
/// dataset's vectors are never all copied (129k FTCP tensors are 13 GB). Row scaling and the
/// model's standardisation are applied on the way.
#[derive(Debug, Clone)]
pub struct StructureVectors {
    store: VectorStore,
    /// Item `i` is stored row `index[i]`.
    index: Vec<usize>,
    dim: usize,
    scaler: Option<FeatureScaler>,
}

impl StructureVectors {
    /// Item `i`'s vector, as the model reads it, appended to `out`.
    pub fn read_into(&self, i: usize, out: &mut Vec<f32>) {
        let raw = self.store.rows.row(self.index[i]);
        let start = out.len();
        match &self.store.minmax {
            Some(minmax) => {
                let mut row: Vec<f64> = raw.iter().map(|&x| x as f64).collect();
                minmax.transform(&mut row);
                out.extend(row.into_iter().map(|x| x as f32));
            }
            None => out.extend_from_slice(raw),
        }
        if let Some(scaler) = &self.scaler {
            for ((x, m), s) in out[start..].iter_mut().zip(&scaler.mean).zip(&scaler.std) {
                *x = (*x - m) / s;
            }
        }
    }
}

/// The crystal graphs of a set's items, read from their store as batches are built (a
/// prepared dataset's mapped graph arrays natively: 129k graphs are gigabytes).
#[derive(Debug, Clone)]
pub struct StructureGraphs {
    store: Arc<dyn GraphRows>,
    /// Item `i` is stored graph `index[i]`.
    index: Vec<usize>,
}

impl StructureGraphs {
    /// Item `i` is graph `index[i]` of `store` (indices checked by the caller).
    pub fn new(store: Arc<dyn GraphRows>, index: Vec<usize>) -> Self {
        Self { store, index }
    }

    /// Graphs held in memory, item `i` = `graphs[i]`.
    pub fn owned(graphs: Vec<CrystalGraph>) -> Self {
        let index = (0..graphs.len()).collect();
        Self::new(Arc::new(OwnedGraphs(graphs)), index)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Item `i`'s graph.
    pub fn get(&self, i: usize) -> Cow<'_, CrystalGraph> {
        self.store.graph(self.index[i])
    }

    /// The graphs of the items `idx` as one batch, node features from `table`.
    pub fn batch(&self, idx: &[usize], table: &ElementTable) -> Result<GraphBatch, GraphError> {
        let graphs: Vec<Cow<'_, CrystalGraph>> = idx.iter().map(|&i| self.get(i)).collect();
        let refs: Vec<&CrystalGraph> = graphs.iter().map(AsRef::as_ref).collect();
        GraphBatch::new(&refs, table)
    }

    /// Every item's graph in turn.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, CrystalGraph>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Where the structures of a set are stored when they are not held per item.
#[derive(Debug, Clone)]
pub enum StructureStore {
    Vectors(VectorStore),
    Graphs(Arc<dyn GraphRows>),
}

/// The texts of a set's items, one or more per item, stored one after another in item order:
/// text index `k` (into [`Self::all`], and into anything tokenized or embedded from it)
/// belongs to the item whose [`Self::range`] holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemTexts {
    texts: Vec<String>,
    /// Item i's texts are `texts[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
}

impl ItemTexts {
    /// One text per item.
    pub fn single(texts: Vec<String>) -> Self {
        Self {
            offsets: (0..=texts.len()).collect(),
            texts,
        }
    }

    /// Adds the next item's texts (at least one).
    pub fn push(&mut self, texts: Vec<String>) {
        debug_assert!(!texts.is_empty(), "every item has a text");
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.texts.extend(texts);
        self.offsets.push(self.texts.len());
    }

    /// Every text, item by item.
    pub fn all(&self) -> &[String] {
        &self.texts
    }

    /// The text indices of item `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }

    /// The index of item `i`'s first text (its text when it has one).
    pub fn first_index(&self, i: usize) -> usize {
        self.offsets[i]
    }

    pub fn first(&self, i: usize) -> &str {
        &self.texts[self.offsets[i]]
    }

    /// The first text of every item, in item order.
    pub fn firsts(&self) -> Vec<String> {
        (0..self.items())
            .map(|i| self.first(i).to_string())
            .collect()
    }

    /// Number of items.
    pub fn items(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether some item has more than one text.
    pub fn has_several(&self) -> bool {
        self.texts.len() > self.items()
    }

    /// How many texts the items `idx` have together.
    pub fn count(&self, idx: &[usize]) -> usize {
        idx.iter().map(|&i| self.range(i).len()).sum()
    }

    /// For the items `idx`: every text index of each, and its position in `idx`.
    pub fn of_items(&self, idx: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let (mut texts, mut owners) = (Vec::new(), Vec::new());
        for (k, &i) in idx.iter().enumerate() {
            for t in self.range(i) {
                texts.push(t);
                owners.push(k);
            }
        }
        (texts, owners)
    }

    /// One text index per item of `idx`, drawn uniformly among the item's texts by a hash of
    /// (`seed`, `epoch`, item): the same on every run, resume and rank.
    pub fn draw(&self, idx: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
        idx.iter()
            .map(|&i| {
                let r = self.range(i);
                if r.len() <= 1 {
                    return r.start;
                }
                let mut rng = SeededRng::new(
                    seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
                        ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                r.start + rng.below(r.len())
            })
            .collect()
    }
}

/// Pairs ready for training: one structure (vector or graph) and one or more texts per item, a
/// split, and the report of what was left out.
#[derive(Debug, Clone)]
pub struct PairSet {
    pub ids: Vec<String>,
    pub texts: ItemTexts,
    pub formulas: Vec<Option<String>>,
    pub groups: Vec<String>,
    pub tensors: Vec<Option<[f64; 9]>>,
    /// The items' structure vectors (none for graphs).
    pub vectors: Option<StructureVectors>,
    /// Width of the structure vectors (0 for graphs).
    pub feature_dim: usize,
    /// The items' crystal graphs, for graph encoders (none for vectors).
    pub graphs: Option<StructureGraphs>,
    /// The element vectors of the graphs' atoms.
    pub element_table: Option<ElementTable>,
    pub is_val: Vec<bool>,
    pub layout: Layout,
    pub skipped: Vec<SkippedLine>,
    pub missing: Vec<MissingStructure>,
}

/// One kept item's structure while a set is assembled.
enum Kept {
    Item(StructureItem),
    Stored(usize),
}

impl PairSet {
    /// Joins records with their structure vectors or graphs (`None` = not found, with where
    /// it was looked for). Original layout: a seeded split of the kept records; prepared: its
    /// own.
    pub fn assemble<S: Into<StructureItem>>(
        file: &str,
        records: Records,
        features: Vec<Result<S, Vec<String>>>,
        source_name: &str,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        let items = features
            .into_iter()
            .map(|f| f.map(|s| Kept::Item(s.into())))
            .collect();
        Self::assemble_kept(file, records, items, None, source_name, val_fraction, seed)
    }

    /// As [`Self::assemble`], each record's structure being a row of `store` (read in place).
    pub fn assemble_stored(
        file: &str,
        records: Records,
        rows: Vec<Result<usize, Vec<String>>>,
        store: StructureStore,
        source_name: &str,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        let items = rows.into_iter().map(|r| r.map(Kept::Stored)).collect();
        Self::assemble_kept(
            file,
            records,
            items,
            Some(store),
            source_name,
            val_fraction,
            seed,
        )
    }

    fn assemble_kept(
        file: &str,
        records: Records,
        items: Vec<Result<Kept, Vec<String>>>,
        store: Option<StructureStore>,
        source_name: &str,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        assert_eq!(records.records.len(), items.len());
        let mut set = PairSet {
            ids: Vec::new(),
            texts: ItemTexts::default(),
            formulas: Vec::new(),
            groups: Vec::new(),
            tensors: Vec::new(),
            vectors: None,
            feature_dim: 0,
            graphs: None,
            element_table: None,
            is_val: Vec::new(),
            layout: records.layout,
            skipped: records.skipped,
            missing: Vec::new(),
        };
        let mut owned: Vec<f32> = Vec::new();
        let mut owned_graphs: Vec<CrystalGraph> = Vec::new();
        let mut stored: Vec<usize> = Vec::new();
        let mut own_split = Vec::new();
        for (r, item) in records.records.into_iter().zip(items) {
            let item = match item {
                Ok(item) => item,
                Err(tried) => {
                    set.missing.push(MissingStructure {
                        id: r.id,
                        line: r.line,
                        tried,
                    });
                    continue;
                }
            };
            match item {
                Kept::Item(StructureItem::Graph(g)) => owned_graphs.push(g),
                Kept::Item(StructureItem::Vector(f)) => {
                    if owned.is_empty() {
                        set.feature_dim = f.len();
                    } else if f.len() != set.feature_dim {
                        return Err(DataError::Dimension {
                            id: r.id,
                            source_name: source_name.into(),
                            expected: set.feature_dim,
                            found: f.len(),
                        });
                    }
                    owned.extend_from_slice(&f);
                }
                Kept::Stored(k) => stored.push(k),
            }
            own_split.push(r.is_val);
            set.ids.push(r.id);
            set.texts.push(r.texts);
            set.formulas.push(r.formula);
            set.groups.push(r.group);
            set.tensors.push(r.tensor);
        }
        let kinds = [
            !owned_graphs.is_empty(),
            !owned.is_empty(),
            !stored.is_empty(),
        ];
        let empty = |set: &PairSet| DataError::Empty {
            file: file.into(),
            skipped: set.skipped.len(),
            missing: set.missing.len(),
        };
        if set.ids.is_empty() || kinds.iter().filter(|k| **k).count() != 1 {
            return Err(empty(&set));
        }
        let (store, graph_store) = match store {
            Some(StructureStore::Vectors(v)) => (Some(v), None),
            Some(StructureStore::Graphs(g)) => (None, Some(g)),
            None => (None, None),
        };
        if !owned_graphs.is_empty() {
            set.graphs = Some(StructureGraphs::owned(owned_graphs));
        } else if let Some(g) = graph_store.filter(|_| !stored.is_empty()) {
            set.graphs = Some(StructureGraphs::new(g, std::mem::take(&mut stored)));
        }
        let vectors = if !owned.is_empty() {
            if set.feature_dim == 0 {
                return Err(empty(&set));
            }
            let n = set.len();
            Some(StructureVectors {
                store: VectorStore {
                    rows: Arc::new(OwnedRows::new(owned, set.feature_dim)),
                    minmax: None,
                },
                index: (0..n).collect(),
                dim: set.feature_dim,
                scaler: None,
            })
        } else if let Some(store) = store.filter(|_| !stored.is_empty()) {
            let dim = store.rows.row(stored[0]).len();
            if dim == 0 {
                return Err(empty(&set));
            }
            set.feature_dim = dim;
            Some(StructureVectors {
                store,
                index: stored,
                dim,
                scaler: None,
            })
        } else {
            None
        };
        if let Some(v) = &vectors {
            // Every vector is read once, as training will read it.
            let mut row = Vec::with_capacity(v.dim);
            for i in 0..set.len() {
                row.clear();
                v.read_into(i, &mut row);
                if row.len() != v.dim {
                    return Err(DataError::Dimension {
                        id: set.ids[i].clone(),
                        source_name: source_name.into(),
                        expected: v.dim,
                        found: row.len(),
                    });
                }
                if row.iter().any(|x| !x.is_finite()) {
                    return Err(DataError::NotFinite {
                        id: set.ids[i].clone(),
                        source_name: source_name.into(),
                    });
                }
            }
        }
        set.vectors = vectors;
        set.is_val = match set.layout {
            Layout::Prepared if own_split.iter().all(Option::is_some) => {
                own_split.into_iter().map(|v| v.unwrap_or(false)).collect()
            }
            _ => validation_mask(set.len(), val_fraction, seed),
        };
        Ok(set)
    }

    /// Vectors held in memory, `values` row-major `[ids.len(), dim]`, every item training
    /// data (benchmarks and tests).
    pub fn from_vectors(
        ids: Vec<String>,
        texts: Vec<String>,
        values: Vec<f32>,
        dim: usize,
    ) -> Self {
        let n = ids.len();
        assert_eq!(values.len(), n * dim, "values are not ids × dim");
        PairSet {
            formulas: vec![None; n],
            groups: vec![String::new(); n],
            tensors: vec![None; n],
            vectors: Some(StructureVectors {
                store: VectorStore {
                    rows: Arc::new(OwnedRows::new(values, dim)),
                    minmax: None,
                },
                index: (0..n).collect(),
                dim,
                scaler: None,
            }),
            feature_dim: dim,
            graphs: None,
            element_table: None,
            is_val: vec![false; n],
            layout: Layout::Original,
            skipped: Vec::new(),
            missing: Vec::new(),
            ids,
            texts: ItemTexts::single(texts),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn indices(&self, validation: bool) -> Vec<usize> {
        super::split_indices(&self.is_val, validation)
    }

    /// Item `i`'s structure vector as the model reads it (empty for graphs).
    pub fn feature(&self, i: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.feature_dim);
        if let Some(v) = &self.vectors {
            v.read_into(i, &mut out);
        }
        out
    }

    /// The structure vectors of the items `idx`, row-major.
    pub fn features_of(&self, idx: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * self.feature_dim);
        if let Some(v) = &self.vectors {
            for &i in idx {
                v.read_into(i, &mut out);
            }
        }
        out
    }
}

/// Per-dimension standardisation of structure vectors, fitted on the training rows only and
/// kept with the model so that evaluation on other data uses the same statistics. Without it,
/// high-dimensional inputs sharing a large common component (FTCP, pooled GNN features) make
/// every projected embedding nearly the same vector.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FeatureScaler {
    pub mean: Vec<f32>,
    /// Standard deviation; 1 where a dimension was constant in training.
    pub std: Vec<f32>,
}

impl FeatureScaler {
    pub fn fit(set: &PairSet) -> Self {
        let d = set.feature_dim;
        let rows = set.indices(false);
        let rows = if rows.is_empty() {
            (0..set.len()).collect()
        } else {
            rows
        };
        let n = rows.len().max(1) as f64;
        // Statistics of the vectors as stored (and row-scaled), not of an earlier scaler.
        let mut unscaled = set.vectors.clone();
        if let Some(v) = &mut unscaled {
            v.scaler = None;
        }
        let mut row = Vec::with_capacity(d);
        let read = |i: usize, row: &mut Vec<f32>| {
            row.clear();
            if let Some(v) = &unscaled {
                v.read_into(i, row);
            }
        };
        // One pass (Welford's update): at scale every pass reads every mapped row again.
        let (mut mean, mut var) = (vec![0f64; d], vec![0f64; d]);
        for (k, &i) in rows.iter().enumerate() {
            read(i, &mut row);
            let weight = 1.0 / (k + 1) as f64;
            for ((m, v), x) in mean.iter_mut().zip(var.iter_mut()).zip(&row) {
                let x = *x as f64;
                let delta = x - *m;
                *m += delta * weight;
                *v += delta * (x - *m);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt();
                if s > 1e-8 { s as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Makes `set` read every vector standardised (in place of any earlier scaler); the
    /// dimensions must match.
    pub fn apply(&self, set: &mut PairSet) {
        assert_eq!(
            self.mean.len(),
            set.feature_dim,
            "scaler and data dimensions differ"
        );
        if let Some(v) = &mut set.vectors {
            v.scaler = Some(self.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"{"id": "mp-1", "text": "NaCl is rock salt.", "formula": "NaCl", "tensor": "[1,2,3,4,5,6,7,8,9]", "group": "cubic"}
{"id": "mp-2", "text": "", "formula": "Si"}
{"id": 3, "text": "Iron.", "formula": "Fe", "graph_emb": "emb/fe.npy", "tensor": [[1,0,0],[0,1,0],[0,0,1]], "robo_crystal_system": "cubic"}
"#;

    #[test]
    fn reads_the_original_layout_and_lists_skipped_lines() {
        let r = parse_jsonl(ORIGINAL, "d.jsonl").unwrap();
        assert_eq!(r.layout, Layout::Original);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].line, 2);
        assert_eq!(r.records[0].tensor.unwrap()[8], 9.0);
        assert_eq!(r.records[1].id, "3");
        assert_eq!(r.records[1].tensor.unwrap()[4], 1.0);
        let c = r.records[1].embedding_candidates(Path::new("/d"), Path::new("/d/graph_emb"));
        assert_eq!(
            c,
            vec![
                PathBuf::from("/d/emb/fe.npy"),
                PathBuf::from("/d/graph_emb/3.npy"),
                PathBuf::from("/d/graph_emb/Fe_3.npy")
            ]
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let e = parse_jsonl("{\"id\":\"a\",\"text\":\"x\"}\n{oops\n", "d.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("d.jsonl:2:"), "{e}");
        let e = parse_jsonl(
            "{\"id\":\"a\",\"text\":\"x\",\"tensor\":[1,2]}\n",
            "d.jsonl",
        )
        .unwrap_err();
        assert!(e.to_string().contains("d.jsonl:1: `tensor`"), "{e}");
    }

    #[test]
    fn several_texts_are_read_in_order_and_empty_ones_dropped() {
        let r = parse_jsonl(
            concat!(
                "{\"id\":\"a\",\"text\":\"long\",\"texts\":[\"long\",\" \",\"short\"]}\n",
                "{\"id\":\"b\",\"text\":\"only\"}\n",
                "{\"id\":\"c\",\"texts\":[]}\n",
            ),
            "d.jsonl",
        )
        .unwrap();
        assert_eq!(r.records[0].texts, ["long", "short"]);
        assert_eq!(r.records[1].texts, ["only"]);
        assert_eq!(r.skipped.len(), 1, "a record without any text is skipped");
        let e = parse_jsonl("{\"id\":\"a\",\"texts\":\"x\"}", "d.jsonl").unwrap_err();
        assert!(e.to_string().contains("d.jsonl:1: `texts`"), "{e}");
    }

    #[test]
    fn drawn_texts_are_the_items_own_cover_them_all_and_repeat_per_seed_and_epoch() {
        let mut texts = ItemTexts::default();
        for (i, k) in [3usize, 1, 2].into_iter().enumerate() {
            texts.push((0..k).map(|j| format!("{i}.{j}")).collect());
        }
        assert_eq!(texts.items(), 3);
        assert!(texts.has_several());
        assert_eq!(
            texts.of_items(&[2, 0]),
            (vec![4, 5, 0, 1, 2], vec![0, 0, 1, 1, 1])
        );
        assert_eq!(texts.count(&[2, 0]), 5);
        let idx = [0, 1, 2];
        let mut seen = std::collections::HashSet::new();
        for epoch in 1..=40 {
            let drawn = texts.draw(&idx, 7, epoch);
            assert_eq!(drawn, texts.draw(&idx, 7, epoch));
            for (&i, &t) in idx.iter().zip(&drawn) {
                assert!(texts.range(i).contains(&t), "item {i} drew text {t}");
            }
            seen.extend(drawn);
        }
        assert_eq!(seen.len(), 6, "every text is drawn at some epoch");
        assert_ne!(
            (1..=10).map(|e| texts.draw(&idx, 7, e)).collect::<Vec<_>>(),
            (1..=10).map(|e| texts.draw(&idx, 8, e)).collect::<Vec<_>>()
        );
        assert!(!ItemTexts::single(vec!["x".into(), "y".into()]).has_several());
    }

    #[test]
    fn ids_never_escape_the_embedding_directory() {
        let r = parse_jsonl("{\"id\":\"../x\",\"text\":\"t\"}", "d").unwrap();
        assert!(
            r.records[0]
                .embedding_candidates(Path::new("."), Path::new("e"))
                .is_empty()
        );
    }

    #[test]
    fn assembly_reports_missing_and_rejects_ragged_vectors() {
        let r = parse_jsonl(ORIGINAL, "d").unwrap();
        let set = PairSet::assemble(
            "d",
            r.clone(),
            vec![Ok(vec![1.0, 2.0]), Err(vec!["nowhere".into()])],
            "emb",
            0.0,
            1,
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.missing[0].id, "3");
        let e = PairSet::assemble(
            "d",
            r.clone(),
            vec![Ok(vec![1.0]), Ok(vec![1.0, 2.0])],
            "emb",
            0.0,
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`3` has a 2-D"), "{e}");
        let mut set = PairSet::assemble(
            "d",
            r,
            vec![Ok(vec![1.0, 5.0]), Ok(vec![3.0, 5.0])],
            "emb",
            0.0,
            1,
        )
        .unwrap();
        let scaler = FeatureScaler::fit(&set);
        assert_eq!(
            (scaler.mean.clone(), scaler.std.clone()),
            (vec![2.0, 5.0], vec![1.0, 1.0])
        );
        scaler.apply(&mut set);
        assert_eq!(set.features_of(&[0, 1]), vec![-1.0, 0.0, 1.0, 0.0]);
    }
}
