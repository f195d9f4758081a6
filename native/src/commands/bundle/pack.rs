//! `xtal bundle pack`: a trained run (and an index of a dataset) into one portable bundle.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use xtal_core::bundle::{
    Bundle, FtcpInput, GraphInput, IndexRecords, Limits, PackInput, PackModel, Precision,
    RetrievalIndex, Side, StructureInput, pack, rfc3339,
};
use xtal_core::data::{Layout, PairSet};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::structure_batch;
use xtal_core::train::{model_from_bytes, to_host};
use xtal_core::viz::tsne::{TsneConfig, tsne};

use super::pack_tensor::HeadToPack;

use super::common::human_bytes;
use super::index_structures::IndexEntries;
use crate::commands::clip::{EmbedTask, LoadedRun, load_clip_run};
use crate::commands::text_model::tokenizer_json;
use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::output::write_atomic;

#[derive(clap::Args)]
pub struct PackArgs {
    /// The run to pack: a CLIP run, a property run (`xtal train property`), an SSL run
    /// (`xtal ssl train`, all six blocks) or a tensor run (`xtal train tensor`: the head with
    /// the CLIP checkpoint it was trained on).
    #[arg(long)]
    pub(super) run: PathBuf,
    /// Which checkpoint of the run.
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    pub(super) checkpoint: String,
    /// Add a retrieval index of every pair of this dataset (e.g. the run's own).
    #[arg(long, value_name = "DATASET")]
    pub(super) index: Option<PathBuf>,
    /// Add a retrieval index of every structure of this prepared dataset, with its first text
    /// where it has one (e.g. all 12,017 shared structures, most without text): embedded
    /// through the bundle as `xtal embed --bundle` does. Entries without text are found by
    /// text queries, never as a CIF's nearest description.
    #[arg(long, value_name = "DATASET", conflicts_with_all = ["index", "graph_emb_dir"])]
    pub(super) index_structures: Option<PathBuf>,
    /// Where the original layout's `.npy` embeddings of --index are (default: graph_emb/ beside it).
    #[arg(long, requires = "index")]
    pub(super) graph_emb_dir: Option<PathBuf>,
    /// Store weights and index as f16 (half the size); the accuracy change is measured and kept.
    #[arg(long)]
    pub(super) f16: bool,
    /// Store every linear and embedding matrix as int8 with one f32 scale per output channel
    /// (embedding tables: per row), the rest of the weights and the index as f16 — about a
    /// quarter of f32; the accuracy change is measured and kept.
    #[arg(long, conflicts_with = "f16")]
    pub(super) int8: bool,
    /// Leave out the index's structures (P1 CIFs for pictures and 3-D views of hits).
    #[arg(long)]
    pub(super) no_structures: bool,
    /// Leave out the index's 2-D map (t-SNE of its structure embeddings).
    #[arg(long)]
    pub(super) no_map: bool,
    /// A Markdown model card to include (default: one written from the run).
    #[arg(long)]
    pub(super) card: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(short, long)]
    pub(super) out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub(super) force: bool,
    /// Device that computes the index embeddings.
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
}

impl PackArgs {
    pub(super) fn precision(&self) -> Precision {
        match (self.f16, self.int8) {
            (_, true) => Precision::Int8,
            (true, false) => Precision::F16,
            (false, false) => Precision::F32,
        }
    }

    /// ", f16" / ", int8" for the summary line; nothing for f32.
    pub(super) fn precision_label(&self) -> String {
        match self.precision() {
            Precision::F32 => String::new(),
            p => format!(", {}", p.name()),
        }
    }
}

pub(super) fn pack_run(args: PackArgs) -> anyhow::Result<()> {
    if args.out.exists() && !args.force {
        return Err(BadInput(format!(
            "{} exists; pass --force to replace it",
            args.out.display()
        ))
        .into());
    }
    if crate::run_dir::RunDir::new(&args.run).family().as_deref() == Some("property") {
        return super::pack_property::pack_property_run(&args);
    }
    if args.run.join("ssl.json").is_file() {
        return super::pack_ssl::pack_ssl_run(&args);
    }
    if args.no_structures && args.index.is_none() && args.index_structures.is_none() {
        return Err(BadInput(
            "--no-structures: there is no index to leave them out of (give --index or --index-structures)".into(),
        )
        .into());
    }
    let started = Instant::now();
    // A tensor run travels with the CLIP model whose embeddings it reads.
    let head = match crate::run_dir::RunDir::new(&args.run).family().as_deref() {
        Some("tensor") => Some(HeadToPack::read(&args.run, &args.checkpoint)?),
        _ => None,
    };
    let (clip_run, clip_checkpoint) = match &head {
        Some(h) => (h.info.clip_run.clone(), h.info.clip_checkpoint.clone()),
        None => (args.run.clone(), args.checkpoint.clone()),
    };
    let loaded = load_clip_run(
        &clip_run,
        args.index.as_deref(),
        args.graph_emb_dir.as_deref(),
    )?;
    // A HF text encoder travels with its tokenizer, read from the folder the run names (and
    // checked once, by the packer).
    let tokenizer_json = tokenizer_json(&loaded.info.model.text)
        .with_context(|| format!("{}: the run's text encoder", clip_run.display()))?
        .map(|(_, bytes)| bytes);
    let checkpoint = loaded.run.load_checkpoint(&clip_checkpoint)?;
    if let Some(h) = &head {
        h.check_clip(&clip_run, &clip_checkpoint, checkpoint.state.epoch, &loaded)?;
    }
    let (structure_input, element_table) = structure_input(&loaded)?;
    let index_entries = args
        .index_structures
        .as_deref()
        .map(|d| IndexEntries::read(d, &structure_input, !args.no_structures))
        .transpose()?;
    let device = crate::commands::one_device(&args.device)?;
    let config = &loaded.info.model;

    let all: Vec<usize> = (0..loaded.set.len()).collect();
    let index = match &args.index {
        None => None,
        Some(dataset) => {
            let (s, t) = run_on(
                &device,
                EmbedTask {
                    config,
                    weights: checkpoint.model.clone(),
                    set: &loaded.set,
                    idx: &all,
                    batch_size: 256,
                },
            )??;
            let map = (!args.no_map)
                .then(|| index_map(&s, config.text.embed_dim))
                .flatten();
            let set = &loaded.set;
            Some((
                RetrievalIndex {
                    records: IndexRecords {
                        ids: set.ids.clone(),
                        formulas: set.formulas.clone(),
                        descriptions: set.texts.firsts(),
                        structures: (!args.no_structures)
                            .then(|| index_structures(dataset, &set.ids))
                            .flatten(),
                    },
                    dim: config.text.embed_dim,
                    structure: Some(s),
                    text: Some(t),
                    map,
                },
                dataset.display().to_string(),
            ))
        }
    };
    let summary = run_summary(&loaded.run);
    let mut source = json!({
        "run": clip_run.display().to_string(),
        "checkpoint": clip_checkpoint,
        "epoch": checkpoint.state.epoch,
        "data": loaded.info.data.jsonl.display().to_string(),
        "validation": summary.get("validation").cloned().unwrap_or_default(),
    });
    if let Some(h) = &head {
        source["tensor_head"] = h.source(&args.run, &args.checkpoint);
    }
    let card = card_or(&args, || {
        let clip = model_card(
            &clip_run,
            &clip_checkpoint,
            &loaded,
            config,
            checkpoint.state.epoch,
            &summary,
        );
        match &head {
            Some(h) => format!("{clip}\n{}", h.card(&args.run)),
            None => clip,
        }
    })?;
    let created = now();
    let packed = run_on(
        &device,
        PackTask {
            weights: checkpoint.model,
            config,
            tokenizer_json: tokenizer_json.as_deref(),
            head: head.as_ref(),
            structure_input: &structure_input,
            element_table,
            // Graph inputs have no fitted normalisers.
            fitted_on: config
                .graph
                .is_none()
                .then(|| loaded.set.len() - loaded.set.is_val.iter().filter(|v| **v).count()),
            index: index.as_ref().map(|(i, d)| (i, Some(d.clone()))),
            index_entries: index_entries.as_ref(),
            no_map: args.no_map,
            card,
            precision: args.precision(),
            created,
            source,
            set: &loaded.set,
        },
    )??;
    write_atomic(&args.out, &packed.bytes)?;
    eprintln!(
        "packed {} ({}, {} parameters{}{}{}) in {:.1} s",
        args.out.display(),
        human_bytes(packed.bytes.len() as u64),
        config.parameter_count(),
        head.as_ref()
            .map(|h| format!(
                ", tensor head ({} {} components from {} embeddings)",
                h.info.targets.components(),
                h.info.targets.mode.name(),
                h.info.modality
            ))
            .unwrap_or_default(),
        args.precision_label(),
        packed
            .index_len
            .map(|n| format!(", index of {n} entries"))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    if let Some(check) = packed.precision_check {
        eprintln!(
            "{} check: {}",
            args.precision().name(),
            precision_line(&check)
        );
    }
    Ok(())
}

/// The index options, refused by name for a run whose bundle has no retrieval index (`kind`:
/// "a property", "an SSL").
pub(super) fn refuse_index_options(args: &PackArgs, kind: &str) -> anyhow::Result<()> {
    for (given, name) in [
        (args.index.is_some(), "--index"),
        (args.index_structures.is_some(), "--index-structures"),
        (args.graph_emb_dir.is_some(), "--graph-emb-dir"),
        (args.no_map, "--no-map"),
        (args.no_structures, "--no-structures"),
    ] {
        if given {
            return Err(BadInput(format!(
                "{name}: {kind} run's bundle has no retrieval index ({} is {kind} run)",
                args.run.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// A run's `summary.json` (null when absent: the card and source then say so).
pub(super) fn run_summary(run: &crate::run_dir::RunDir) -> serde_json::Value {
    std::fs::read(run.file("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The `--card` file, or the card `written` from the run.
pub(super) fn card_or(args: &PackArgs, written: impl FnOnce() -> String) -> anyhow::Result<String> {
    match &args.card {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))
        }
        None => Ok(written()),
    }
}

/// The packing time, RFC 3339.
pub(super) fn now() -> String {
    rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// The structure input of a run — the FTCP pipeline for `xtal prepare` data, else vectors —
/// and where its element table came from.
pub(super) fn structure_input(
    loaded: &LoadedRun,
) -> anyhow::Result<(StructureInput, Option<String>)> {
    let scaler = loaded.info.scaler.clone();
    if let (Some(g), Some(table)) = (&loaded.info.model.graph, &loaded.set.element_table) {
        let input = StructureInput::Graph(GraphInput {
            config: g.graph,
            table: table.clone(),
        });
        return Ok((input, Some(table.source.clone())));
    }
    if loaded.set.layout != Layout::Prepared {
        return Ok((StructureInput::Vector(scaler), None));
    }
    let data = &loaded.info.data;
    let summary_path = data.summary_path();
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&summary_path)
            .with_context(|| format!("{}: cannot read", summary_path.display()))?,
    )
    .map_err(|e| BadInput(format!("{}: {e}", summary_path.display())))?;
    let config: FtcpConfig = serde_json::from_value(summary["config"]["ftcp"].clone())
        .map_err(|e| BadInput(format!("{}: config.ftcp: {e}", summary_path.display())))?;
    let norm_path = data.normalizer_path();
    let minmax: RowMinMax = serde_json::from_slice(
        &std::fs::read(&norm_path)
            .with_context(|| format!("{}: cannot read", norm_path.display()))?,
    )
    .map_err(|e| BadInput(format!("{}: {e}", norm_path.display())))?;
    let table = data.element_table()?;
    let table_source = table.source.clone();
    let input = StructureInput::Ftcp(
        FtcpInput {
            config,
            table,
            minmax,
        },
        scaler,
    );
    Ok((input, Some(table_source)))
}

/// t-SNE of the structure embeddings, for indexes small enough for exact t-SNE.
fn index_map(structure: &[f32], dim: usize) -> Option<Vec<f32>> {
    const MAX: usize = 5000;
    let n = structure.len() / dim;
    if n > MAX {
        eprintln!("index map: {n} entries, more than exact t-SNE's {MAX}; left out");
        return None;
    }
    let y = tsne(structure, n, dim, &TsneConfig::default());
    Some(y.iter().flat_map(|p| [p[0] as f32, p[1] as f32]).collect())
}

fn model_card(
    run: &Path,
    checkpoint: &str,
    loaded: &LoadedRun,
    config: &ClipConfig,
    epoch: usize,
    summary: &serde_json::Value,
) -> String {
    let r = &summary["validation"]["retrieval"];
    let metric = |k: &str| r[k].as_f64().map_or("?".into(), |v| format!("{v:.3}"));
    format!(
        "# xtal structure–text CLIP\n\n\
         Packed from run `{}` ({} checkpoint, epoch {epoch}), trained on `{}`.\n\n\
         - Text encoder: {}\n\
         - Structure input: {}-D {}\n\
         - Embedding: {}-D, L2-normalised; cosine similarity compares them\n\n\
         Validation retrieval at packing: structure → text Recall@1 {} / Recall@10 {}, \
         text → structure Recall@1 {} / Recall@10 {}.\n",
        run.display(),
        checkpoint,
        loaded.info.data.jsonl.display(),
        config.text.describe(),
        config.structure.input_dim,
        match (&config.graph, loaded.set.layout) {
            (Some(g), _) => format!(
                "{} graph encoder over crystal graphs ({} Å cutoff; the bundle embeds CIFs itself)",
                g.backbone, g.graph.cutoff
            ),
            (None, Layout::Prepared) => "FTCP tensor (the bundle embeds CIFs itself)".into(),
            (None, _) => "precomputed structure embedding".into(),
        },
        config.text.embed_dim,
        metric("g2t_r1"),
        metric("g2t_r10"),
        metric("t2g_r1"),
        metric("t2g_r10"),
    )
}

struct Packed {
    bytes: Vec<u8>,
    precision_check: Option<serde_json::Value>,
    index_len: Option<usize>,
}

struct PackTask<'a> {
    weights: Vec<u8>,
    config: &'a ClipConfig,
    tokenizer_json: Option<&'a [u8]>,
    head: Option<&'a HeadToPack>,
    structure_input: &'a StructureInput,
    element_table: Option<String>,
    fitted_on: Option<usize>,
    index: Option<(&'a RetrievalIndex, Option<String>)>,
    /// Structures to index through the packed model (`--index-structures`).
    index_entries: Option<&'a IndexEntries>,
    no_map: bool,
    card: String,
    precision: Precision,
    created: String,
    source: serde_json::Value,
    /// Pairs whose validation rows measure what the reduced precision changes.
    set: &'a PairSet,
}

impl OnDevice for PackTask<'_> {
    type Output = anyhow::Result<Packed>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let head = self.head.map(|h| h.model(&device)).transpose()?;
        let pack_with = |index: Option<(&RetrievalIndex, Option<String>)>,
                         precision: Precision,
                         precision_check: Option<serde_json::Value>| {
            pack(PackInput {
                model: PackModel::Clip {
                    model: &model,
                    config: self.config,
                    tokenizer_json: self.tokenizer_json,
                },
                tensor_head: self
                    .head
                    .zip(head.as_ref())
                    .map(|(h, model)| h.to_pack(model)),
                structure_input: self.structure_input,
                element_table_source: self.element_table.clone(),
                fitted_on: self.fitted_on,
                index,
                card: Some(self.card.clone()),
                precision,
                created: self.created.clone(),
                xtal_version: env!("CARGO_PKG_VERSION").into(),
                source: Some(self.source.clone()),
                precision_check,
            })
        };
        // An index of a dataset's structures is embedded by the packed model itself.
        let built = match self.index_entries {
            None => None,
            Some(entries) => {
                let plain = Bundle::from_bytes(
                    &pack_with(None, Precision::F32, None)?,
                    &Limits::default(),
                )?;
                let dim = self.config.text.embed_dim;
                let map = |s: &[f32]| (!self.no_map).then(|| index_map(s, dim)).flatten();
                Some((
                    entries.embed(&plain, &model, map, &device)?,
                    entries.source.clone(),
                ))
            }
        };
        let index = self
            .index
            .clone()
            .or_else(|| built.as_ref().map(|(i, source)| (i, Some(source.clone()))));
        let index_len = index.as_ref().map(|(i, _)| i.len());
        let bytes = |precision, check| pack_with(index.clone(), precision, check);
        if self.precision == Precision::F32 {
            return Ok(Packed {
                bytes: bytes(Precision::F32, None)?,
                precision_check: None,
                index_len,
            });
        }
        // Measure what f16 or int8 storage changes: embeddings of the validation pairs (or
        // all) and the top-10 of every text query against the index, stored vs f32 model.
        let stored = Bundle::from_bytes(&bytes(self.precision, None)?, &Limits::default())?;
        let stored_model: Clip<B::InnerBackend> = stored.model(&device)?;
        let set = self.set;
        let mut idx = set.indices(true);
        if idx.len() < 2 {
            idx = (0..set.len()).collect();
        }
        let texts: Vec<&str> = idx.iter().map(|&i| set.texts.first(i)).collect();
        let t32 = to_host(stored.embed_texts(&model, &texts, &device)?)?;
        let t_stored = to_host(stored.embed_texts(&stored_model, &texts, &device)?)?;
        let s32 = to_host(model.encode_structures(structure_batch(set, &idx, &device)))?;
        let s_stored =
            to_host(stored_model.encode_structures(structure_batch(set, &idx, &device)))?;
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let mut check = json!({
            "rows": idx.len(),
            "max_abs_diff_text": diff(&t32, &t_stored),
            "max_abs_diff_structure": diff(&s32, &s_stored),
        });
        if let (Some((index32, _)), Some(index_stored)) = (&index, &stored.index) {
            let d = self.config.text.embed_dim;
            let mut overlap = 0usize;
            for (q32, q_stored) in t32.chunks(d).zip(t_stored.chunks(d)) {
                let a = index32.search(q32, 10, Side::Structure)?;
                let b = index_stored.search(q_stored, 10, Side::Structure)?;
                overlap += a
                    .iter()
                    .filter(|h| b.iter().any(|g| g.row == h.row))
                    .count();
            }
            let k = 10.min(index32.len());
            check["top10_overlap"] = json!(overlap as f64 / (k * idx.len()) as f64);
        }
        Ok(Packed {
            bytes: bytes(self.precision, Some(check.clone()))?,
            precision_check: Some(check),
            index_len,
        })
    }
}

/// What reduced-precision storage changed, as `bundle pack` and `bundle inspect` print it
/// (a CLIP, property or SSL bundle's check).
pub(super) fn precision_line(check: &serde_json::Value) -> String {
    let f = |key: &str| check[key].as_f64().unwrap_or(f64::NAN);
    if check.get("max_abs_diff_prediction").is_some() {
        let stored = check
            .as_object()
            .and_then(|o| o.keys().find(|k| k.starts_with("mae_") && *k != "mae_f32"))
            .cloned()
            .unwrap_or_default();
        return format!(
            "over {} validation structures, max |Δ prediction| {:.2e}; MAE {:.4} (f32) / {:.4} ({})",
            check["rows"],
            f("max_abs_diff_prediction"),
            f("mae_f32"),
            f(&stored),
            stored.trim_start_matches("mae_"),
        );
    }
    if check.get("max_abs_diff_feature").is_some() {
        return format!(
            "over {} validation tensors, max |Δ feature| {:.2e} (features are unit-normalised per block)",
            check["rows"],
            f("max_abs_diff_feature"),
        );
    }
    format!(
        "over {} validation pairs, max |Δ| of unit embeddings {:.2e} (text) / {:.2e} (structure){}",
        check["rows"],
        f("max_abs_diff_text"),
        f("max_abs_diff_structure"),
        check["top10_overlap"]
            .as_f64()
            .map(|o| format!("; text→structure top-10 shared with f32: {:.1}%", 100.0 * o))
            .unwrap_or_default()
    )
}

/// Each index entry's structure as a P1 CIF, from the dataset's `structures.jsonl`; none (with
/// the reason on stderr) when the dataset has no structures, e.g. precomputed embeddings.
fn index_structures(dataset: &Path, ids: &[String]) -> Option<Vec<Option<String>>> {
    let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    let found = DataSource::new(dataset, None).and_then(|d| d.structures_of(&wanted));
    match found {
        Ok(found) if !found.is_empty() => {
            let cifs: Vec<Option<String>> = ids
                .iter()
                .map(|id| found.get(id).map(|s| s.to_cif(id)))
                .collect();
            let bytes: usize = cifs.iter().flatten().map(String::len).sum();
            eprintln!(
                "index: {} of {} structures as CIF ({:.1} MB before compression)",
                found.len(),
                ids.len(),
                bytes as f64 / 1e6
            );
            Some(cifs)
        }
        Ok(_) => None,
        Err(e) => {
            eprintln!("index: without structures ({e:#})");
            None
        }
    }
}
