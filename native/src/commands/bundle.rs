//! `xtal bundle pack|inspect|verify`, `xtal embed` and `xtal search`: bundles on the command
//! line. Reading, verifying, embedding and searching are core's (`xtal_core::bundle`), the
//! same code the browser runs; this file only moves bytes and prints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use xtal_core::bundle::{
    Bundle, FtcpInput, GraphInput, IndexRecords, Limits, PackInput, RetrievalIndex, Side,
    StructureInput, pack, rfc3339,
};
use xtal_core::data::{Layout, PairSet};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::structure_batch;
use xtal_core::train::{model_from_bytes, to_host};
use xtal_core::viz::tsne::{TsneConfig, tsne};

use super::clip::{EmbedTask, LoadedRun, load_clip_run};
use crate::exit::BadInput;
use crate::output::{write_atomic, write_npy};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Pack a CLIP run into one portable zip: `xtal bundle pack --run RUN [--index DATASET] -o B.xtal`.
    Pack(PackArgs),
    /// Summarise a bundle: model, inputs, index, entries (`--json` for machines).
    Inspect(InspectArgs),
    /// Check every hash, every size and every tensor shape against the configuration.
    Verify(InspectArgs),
    /// Fine-tune the text projection (and temperature, optionally LayerNorms) on a CSV of
    /// pairs, structure tower locked; writes a new bundle with the index's text side redone.
    FineTune(super::fine_tune::FineTuneArgs),
}

#[derive(clap::Args)]
pub struct PackArgs {
    /// The CLIP run to pack.
    #[arg(long)]
    run: PathBuf,
    /// Which checkpoint of the run.
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    checkpoint: String,
    /// Add a retrieval index of every pair of this dataset (e.g. the run's own).
    #[arg(long, value_name = "DATASET")]
    index: Option<PathBuf>,
    /// Where the original layout's `.npy` embeddings of --index are (default: graph_emb/ beside it).
    #[arg(long, requires = "index")]
    graph_emb_dir: Option<PathBuf>,
    /// Store weights and index as f16 (half the size); the accuracy change is measured and kept.
    #[arg(long)]
    f16: bool,
    /// Leave out the index's 2-D map (t-SNE of its structure embeddings).
    #[arg(long)]
    no_map: bool,
    /// A Markdown model card to include (default: one written from the run).
    #[arg(long)]
    card: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Device that computes the index embeddings.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The bundle file.
    bundle: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What a bundle may hold; a bundle over a limit is refused before it is decompressed.
#[derive(clap::Args, Clone)]
pub struct LimitArgs {
    /// Largest accepted entry, in MiB (uncompressed).
    #[arg(long, default_value_t = 2048)]
    max_entry_mib: u64,
    /// Largest accepted total of all entries, in MiB (uncompressed).
    #[arg(long, default_value_t = 4096)]
    max_total_mib: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_entry_bytes: self.max_entry_mib << 20,
            max_total_bytes: self.max_total_mib << 20,
            ..Limits::default()
        }
    }
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The bundle whose model embeds.
    #[arg(long, global = true)]
    bundle: Option<PathBuf>,
    /// Or a HuggingFace model folder (config.json, tokenizer.json, model.safetensors): embeds
    /// texts with the pretrained encoder alone.
    #[arg(long, global = true, conflicts_with = "bundle")]
    model: Option<PathBuf>,
    /// Or a run with a graph encoder (a CLIP run with model.graph_backbone cgcnn/painn, or
    /// `xtal train property`): embeds CIFs or a whole dataset.
    #[arg(long, global = true, conflicts_with_all = ["bundle", "model"])]
    run: Option<PathBuf>,
    /// With --model: how token states become one vector (mean, first, last, max).
    #[arg(long, global = true, default_value = "mean")]
    pooling: String,
    /// With --model: scale each vector to unit length.
    #[arg(long, global = true)]
    normalize: bool,
    /// With --model: longest input in tokens (texts are truncated).
    #[arg(long, global = true, default_value_t = 512)]
    max_tokens: usize,
    #[command(subcommand)]
    what: EmbedWhat,
    /// Write the embeddings as float32 `.npy` `[n, dim]`.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Print a JSON array with one vector per input.
    #[arg(long, global = true)]
    json: bool,
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(clap::Subcommand)]
pub enum EmbedWhat {
    /// Embed sentences: `xtal embed --bundle B text "a layered oxide" …`.
    Text {
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Embed the first structure of each CIF (bundles that read structures, or --run).
    Cif {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Embed every structure of an `xtal prepare` dataset with --run into DIR/graph_emb/{id}.npy
    /// plus DIR/dataset.jsonl (the original CLIP layout, readable by `xtal train clip --data DIR`).
    Dataset {
        /// The prepared dataset directory.
        data: PathBuf,
        /// Output directory (created atomically).
        #[arg(long = "out-dir", short = 'o')]
        out_dir: PathBuf,
        /// Replace an existing output directory.
        #[arg(long)]
        force: bool,
    },
}

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

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pack(args) => pack_run(args),
        Command::Inspect(args) => inspect(args),
        Command::Verify(args) => verify(args),
        Command::FineTune(args) => super::fine_tune::run(args),
    }
}

/// Reads and verifies a bundle file.
pub fn open(path: &Path, limits: &Limits) -> anyhow::Result<Bundle> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Bundle::from_bytes(&bytes, limits).with_context(|| format!("{}", path.display()))
}

// ---- pack ----------------------------------------------------------------------------------

fn pack_run(args: PackArgs) -> anyhow::Result<()> {
    if args.out.exists() && !args.force {
        return Err(BadInput(format!(
            "{} exists; pass --force to replace it",
            args.out.display()
        ))
        .into());
    }
    let started = Instant::now();
    let loaded = load_clip_run(
        &args.run,
        args.index.as_deref(),
        args.graph_emb_dir.as_deref(),
    )?;
    if let Some(hf) = &loaded.info.model.text.huggingface {
        return Err(BadInput(format!(
            "{}: its text encoder is the HuggingFace model {} ({}); bundles carry byte-level text encoders only so far",
            args.run.display(),
            hf.model,
            hf.model_type
        ))
        .into());
    }
    let checkpoint = loaded.run.load_checkpoint(&args.checkpoint)?;
    let (structure_input, element_table) = structure_input(&loaded)?;
    let device = super::one_device(&args.device)?;
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
                        descriptions: set.texts.clone(),
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
    let summary: serde_json::Value = std::fs::read(loaded.run.file("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let source = json!({
        "run": args.run.display().to_string(),
        "checkpoint": args.checkpoint,
        "epoch": checkpoint.state.epoch,
        "data": loaded.info.data.jsonl.display().to_string(),
        "validation": summary.get("validation").cloned().unwrap_or_default(),
    });
    let card = match &args.card {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?
        }
        None => model_card(&args, &loaded, config, checkpoint.state.epoch, &summary),
    };
    let created = rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let packed = run_on(
        &device,
        PackTask {
            weights: checkpoint.model,
            config,
            structure_input: &structure_input,
            element_table,
            // Graph inputs have no fitted normalisers.
            fitted_on: config
                .graph
                .is_none()
                .then(|| loaded.set.len() - loaded.set.is_val.iter().filter(|v| **v).count()),
            index: index.as_ref().map(|(i, d)| (i, Some(d.clone()))),
            card,
            half: args.f16,
            created,
            source,
            set: &loaded.set,
        },
    )??;
    write_atomic(&args.out, &packed.bytes)?;
    eprintln!(
        "packed {} ({}, {} parameters{}{}) in {:.1} s",
        args.out.display(),
        human_bytes(packed.bytes.len() as u64),
        config.parameter_count(),
        if args.f16 { ", f16" } else { "" },
        index
            .as_ref()
            .map(|(i, _)| format!(", index of {} entries", i.len()))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    if let Some(check) = packed.f16_check {
        eprintln!("f16 check: {}", f16_line(&check));
    }
    Ok(())
}

/// The structure input of a run — the FTCP pipeline for `xtal prepare` data, else vectors —
/// and where its element table came from.
fn structure_input(loaded: &LoadedRun) -> anyhow::Result<(StructureInput, Option<String>)> {
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
    let summary_path = data.dir().join("summary.json");
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
    let table_source = summary["element_table"].as_str().unwrap_or("default");
    let table = super::element_table((table_source != "default").then(|| Path::new(table_source)))?;
    let input = StructureInput::Ftcp(
        FtcpInput {
            config,
            table,
            minmax,
        },
        scaler,
    );
    Ok((input, Some(table_source.to_string())))
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
    args: &PackArgs,
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
         - Text encoder: byte-level Transformer, width {}, {} layers, {} heads, {} bytes\n\
         - Structure input: {}-D {}\n\
         - Embedding: {}-D, L2-normalised; cosine similarity compares them\n\n\
         Validation retrieval at packing: structure → text Recall@1 {} / Recall@10 {}, \
         text → structure Recall@1 {} / Recall@10 {}.\n",
        args.run.display(),
        args.checkpoint,
        loaded.info.data.jsonl.display(),
        config.text.width,
        config.text.layers,
        config.text.heads,
        config.text.max_len,
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
    f16_check: Option<serde_json::Value>,
}

struct PackTask<'a> {
    weights: Vec<u8>,
    config: &'a ClipConfig,
    structure_input: &'a StructureInput,
    element_table: Option<String>,
    fitted_on: Option<usize>,
    index: Option<(&'a RetrievalIndex, Option<String>)>,
    card: String,
    half: bool,
    created: String,
    source: serde_json::Value,
    /// Pairs whose validation rows measure what f16 changes.
    set: &'a PairSet,
}

impl OnDevice for PackTask<'_> {
    type Output = anyhow::Result<Packed>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let bytes = |half: bool, f16_check: Option<serde_json::Value>| {
            pack(PackInput {
                model: &model,
                config: self.config,
                structure_input: self.structure_input,
                element_table_source: self.element_table.clone(),
                fitted_on: self.fitted_on,
                index: self.index.clone(),
                card: Some(self.card.clone()),
                half,
                created: self.created.clone(),
                xtal_version: env!("CARGO_PKG_VERSION").into(),
                source: Some(self.source.clone()),
                f16_check,
            })
        };
        if !self.half {
            return Ok(Packed {
                bytes: bytes(false, None)?,
                f16_check: None,
            });
        }
        // Measure what f16 storage changes: embeddings of the validation pairs (or all) and
        // the top-10 of every text query against the index, f16 bundle vs f32 model.
        let half = Bundle::from_bytes(&bytes(true, None)?, &Limits::default())?;
        let half_model: Clip<B::InnerBackend> = half.model(&device)?;
        let set = self.set;
        let mut idx = set.indices(true);
        if idx.len() < 2 {
            idx = (0..set.len()).collect();
        }
        let texts: Vec<&str> = idx.iter().map(|&i| set.texts[i].as_str()).collect();
        let t32 = to_host(half.embed_texts(&model, &texts, &device));
        let t16 = to_host(half.embed_texts(&half_model, &texts, &device));
        let s32 = to_host(model.encode_structures(structure_batch(set, &idx, &device)));
        let s16 = to_host(half_model.encode_structures(structure_batch(set, &idx, &device)));
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let mut check = json!({
            "rows": idx.len(),
            "max_abs_diff_text": diff(&t32, &t16),
            "max_abs_diff_structure": diff(&s32, &s16),
        });
        if let (Some((index32, _)), Some(index16)) = (&self.index, &half.index) {
            let d = self.config.text.embed_dim;
            let mut overlap = 0usize;
            for (q32, q16) in t32.chunks(d).zip(t16.chunks(d)) {
                let a = index32.search(q32, 10, Side::Structure)?;
                let b = index16.search(q16, 10, Side::Structure)?;
                overlap += a
                    .iter()
                    .filter(|h| b.iter().any(|g| g.row == h.row))
                    .count();
            }
            let k = 10.min(index32.len());
            check["top10_overlap"] = json!(overlap as f64 / (k * idx.len()) as f64);
        }
        Ok(Packed {
            bytes: bytes(true, Some(check.clone()))?,
            f16_check: Some(check),
        })
    }
}

fn f16_line(check: &serde_json::Value) -> String {
    format!(
        "over {} validation pairs, max |Δ| of unit embeddings {:.2e} (text) / {:.2e} (structure){}",
        check["rows"],
        check["max_abs_diff_text"].as_f64().unwrap_or(f64::NAN),
        check["max_abs_diff_structure"].as_f64().unwrap_or(f64::NAN),
        check["top10_overlap"]
            .as_f64()
            .map(|o| format!("; text→structure top-10 shared with f32: {:.1}%", 100.0 * o))
            .unwrap_or_default()
    )
}

// ---- inspect / verify ----------------------------------------------------------------------

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bundle = open(&args.bundle, &args.limits.limits())?;
    let m = &bundle.manifest;
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    let c = &m.model.config;
    println!(
        "{}  ({}, {} v{}, packed by xtal {} on {})",
        args.bundle.display(),
        human_bytes(bundle.size as u64),
        m.format,
        m.format_version,
        m.xtal_version,
        m.created
    );
    println!(
        "model      {} — {} parameters ({}), {}-D embeddings",
        m.model.kind, m.model.parameters, m.model.weights_dtype, m.model.embed_dim
    );
    println!(
        "text       byte-level Transformer: width {}, {} layers, {} heads, {} bytes",
        c.text.width, c.text.layers, c.text.heads, c.text.max_len
    );
    let s = &m.structure_input;
    println!(
        "structure  {}-D {} → {} projector{}",
        s.dim,
        match (s.kind.as_str(), &c.graph) {
            ("ftcp", _) => "FTCP (embeds CIFs)".to_string(),
            ("graph", Some(g)) => format!(
                "{} graph encoder, {} layers of {} (embeds CIFs)",
                g.backbone, g.layers, g.hidden
            ),
            _ => "precomputed vectors".to_string(),
        },
        if c.structure.hidden.is_empty() {
            "linear".to_string()
        } else {
            format!("MLP {:?}", c.structure.hidden)
        },
        s.fitted_on
            .map(|n| format!(", normalisers fitted on {n} rows"))
            .unwrap_or_default()
    );
    match &m.index {
        Some(i) => println!(
            "index      {} entries ({}): {} embeddings{}{}",
            i.entries,
            i.dtype,
            [("structure", i.structure), ("text", i.text)]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and "),
            if i.map { ", 2-D map" } else { "" },
            i.dataset
                .as_ref()
                .map(|d| format!(", from {d}"))
                .unwrap_or_default()
        ),
        None => println!("index      none"),
    }
    if let Some(check) = &m.f16_check {
        println!("f16        {}", f16_line(check));
    }
    if let Some(src) = &m.source {
        println!(
            "source     run {} ({} checkpoint, epoch {})",
            src["run"].as_str().unwrap_or("?"),
            src["checkpoint"].as_str().unwrap_or("?"),
            src["epoch"]
        );
    }
    println!("entries");
    for e in &m.entries {
        println!(
            "  {:<32} {:>10}  sha256 {}…",
            e.name,
            human_bytes(e.size),
            &e.sha256[..16.min(e.sha256.len())]
        );
    }
    if let Some(card) = &bundle.card {
        println!("model card: {} lines (README.md)", card.lines().count());
    }
    Ok(())
}

struct BuildModel<'a>(&'a Bundle);
impl OnDevice for BuildModel<'_> {
    type Output = Result<usize, xtal_core::bundle::BundleError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        Ok(burn::module::Module::num_params(
            &self.0.model::<B::InnerBackend>(&device)?,
        ))
    }
}

fn verify(args: InspectArgs) -> anyhow::Result<()> {
    let bundle = open(&args.bundle, &args.limits.limits())?;
    let params = run_on(&super::one_device("cpu")?, BuildModel(&bundle))?
        .with_context(|| format!("{}", args.bundle.display()))?;
    let m = &bundle.manifest;
    let report = json!({
        "bundle": args.bundle.display().to_string(),
        "ok": true,
        "entries_verified": m.entries.len(),
        "tensors": bundle.tensors.len(),
        "parameters": params,
        "index_entries": m.index.as_ref().map(|i| i.entries),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "ok: {} — {} entries match their sizes and sha256; {} tensors ({} parameters) match the configuration{}",
            args.bundle.display(),
            m.entries.len(),
            bundle.tensors.len(),
            params,
            m.index
                .as_ref()
                .map(|i| format!("; index of {} entries is consistent", i.entries))
                .unwrap_or_default()
        );
    }
    Ok(())
}

// ---- embed / search ------------------------------------------------------------------------

enum Query<'a> {
    Texts(&'a [String]),
    /// (file name, CIF text)
    Cifs(Vec<(String, String)>),
}

struct EmbedQueries<'a>(&'a Bundle, Query<'a>);
impl OnDevice for EmbedQueries<'_> {
    type Output = anyhow::Result<Vec<f32>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let bundle = self.0;
        let model = bundle.model::<B::InnerBackend>(&device)?;
        Ok(match self.1 {
            Query::Texts(texts) => {
                let t: Vec<&str> = texts.iter().map(String::as_str).collect();
                to_host(bundle.embed_texts(&model, &t, &device))
            }
            Query::Cifs(files) => {
                let items = files
                    .iter()
                    .map(|(name, text)| {
                        bundle
                            .structure_input
                            .from_cif(text)
                            .map_err(|e| BadInput(format!("{name}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                to_host(bundle.embed_structures(&model, &items, &device)?)
            }
        })
    }
}

fn read_cifs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read", f.display()))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

pub fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    if let Some(run) = &args.run {
        return embed_with_run(&args, run);
    }
    if let EmbedWhat::Dataset { .. } = &args.what {
        return Err(
            BadInput("`embed dataset` needs --run R (a run with a graph encoder)".into()).into(),
        );
    }
    let Some(bundle_path) = &args.bundle else {
        return embed_with_model(&args);
    };
    let bundle = open(bundle_path, &args.limits.limits())?;
    let device = super::one_device(&args.device)?;
    let (query, labels) = match &args.what {
        EmbedWhat::Text { texts } => (Query::Texts(texts), texts.clone()),
        EmbedWhat::Cif { files } => {
            let cifs = read_cifs(files)?;
            let labels = cifs.iter().map(|c| c.0.clone()).collect();
            (Query::Cifs(cifs), labels)
        }
        EmbedWhat::Dataset { .. } => unreachable!("refused above"),
    };
    let vectors = run_on(&device, EmbedQueries(&bundle, query))??;
    write_embeddings(&args, &labels, &vectors, bundle.manifest.model.embed_dim)
}

/// `xtal embed --run R cif …` and `xtal embed --run R dataset D -o OUT`.
fn embed_with_run(args: &EmbedArgs, run: &Path) -> anyhow::Result<()> {
    use super::embed_structures::{embed_dataset, embed_structures, read_structures};
    match &args.what {
        EmbedWhat::Text { .. } => Err(BadInput(
            "--run embeds structures (`cif FILE…` or `dataset DIR -o OUT`); texts need a bundle"
                .into(),
        )
        .into()),
        EmbedWhat::Cif { files } => {
            let cifs = read_cifs(files)?;
            let structures = read_structures(&cifs)?;
            let labels: Vec<String> = cifs.into_iter().map(|c| c.0).collect();
            let (vectors, d) = embed_structures(run, &structures, &args.device)?;
            write_embeddings(args, &labels, &vectors, d)
        }
        EmbedWhat::Dataset {
            data,
            out_dir,
            force,
        } => embed_dataset(run, data, out_dir, *force, &args.device),
    }
}

/// `xtal embed text --model DIR …`: a pretrained HF encoder with pooling.
fn embed_with_model(args: &EmbedArgs) -> anyhow::Result<()> {
    let (Some(dir), EmbedWhat::Text { texts }) = (&args.model, &args.what) else {
        return Err(BadInput(match &args.model {
            None => "embed needs --bundle B (a packed model) or --model DIR (a HuggingFace text encoder)".into(),
            Some(_) => "--model embeds texts only (`xtal embed text --model DIR \"…\"`); CIFs need a bundle".into(),
        })
        .into());
    };
    let (vectors, d) = super::text_model::embed(
        dir,
        texts,
        &args.pooling,
        args.normalize,
        args.max_tokens,
        &args.device,
    )?;
    write_embeddings(args, texts, &vectors, d)
}

/// `--out` as `.npy [n, d]` (atomically), `--json` as one array per input, or a preview.
fn write_embeddings(
    args: &EmbedArgs,
    labels: &[String],
    vectors: &[f32],
    d: usize,
) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        let tmp = crate::output::temp_sibling(out, ".npy");
        write_npy(&tmp, &[labels.len() as u64, d as u64], vectors)?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "{} embeddings of {d} values → {}",
            labels.len(),
            out.display()
        );
    }
    if args.json {
        let rows: Vec<&[f32]> = vectors.chunks(d).collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else if args.out.is_none() {
        for (label, v) in labels.iter().zip(vectors.chunks(d)) {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
            println!(
                "{}  [{} …] ({d} values)",
                preview(label, 40),
                head.join(" ")
            );
        }
    }
    Ok(())
}

pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    let bundle = open(&args.bundle, &args.limits.limits())?;
    let index = bundle.index.as_ref().ok_or_else(|| {
        BadInput(format!(
            "{}: this bundle has no retrieval index (pack it with --index DATASET)",
            args.bundle.display()
        ))
    })?;
    let device = super::one_device(&args.device)?;
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

/// The start of `text` on one line, at most `n` characters.
fn preview(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let cut: String = one_line.chars().take(n.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
