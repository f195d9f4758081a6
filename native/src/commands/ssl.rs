//! `xtal ssl`: the FTCP self-supervised blocks — `train` (one block or all, each in its own
//! run directory under the SSL run), `extract` (N × 2048 features in input order, from
//! unmasked inputs), `bottleneck` (an autoencoder to K dimensions) and `eval` (the three
//! scenarios, in `ssl_eval.rs`). The models and the training loop live in core
//! (`models::ftcp_ssl`, `train::ssl`).
//!
//! ```text
//! RUN/ssl.json                  data, FTCP layout, block settings, task weights
//! RUN/block{N}_{name}/          metrics.jsonl, checkpoints/{last,best}.ckpt, summary.json, plots/
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args as ClapArgs, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xtal_core::data::{decode_npy, epoch_batches, validation_mask};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::models::ftcp_ssl::bottleneck::{Bottleneck, BottleneckConfig};
use xtal_core::models::ftcp_ssl::{BlockKind, FEATURE_DIM, SslBlock, SslBlockConfig};
use xtal_core::structure::CrystalSystem;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::ssl::{
    SslData, TaskLosses, block_features, evaluate_ssl, task_weights, train_ssl_epoch,
};
use xtal_core::train::{ModelOptimizer, model_from_bytes, to_host};

use crate::exit::BadInput;
use crate::output::{write_atomic, write_npy};
use crate::plots::{self, Curves};
use crate::run_dir::{EpochSteps, RunDir};

#[derive(Subcommand)]
pub enum Command {
    /// Pretrain blocks: `xtal ssl train --data D --out RUN [--block N|all]`.
    Train(TrainArgs),
    /// Features of every material (N × 2048, rows in input order) from a trained run:
    /// `xtal ssl extract --run RUN --out features.npy`.
    Extract(ExtractArgs),
    /// Compress features with an autoencoder: `xtal ssl bottleneck --features F.npy --dim K --out DIR`.
    Bottleneck(BottleneckArgs),
    /// The evaluation scenarios (linear probes, attribution, few-shot) on a labelled dataset:
    /// `xtal ssl eval --run RUN --out REPORT`.
    Eval(super::ssl_eval::EvalArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(a) => train(a),
        Command::Extract(a) => extract(a),
        Command::Bottleneck(a) => bottleneck(a),
        Command::Eval(a) => super::ssl_eval::eval(a),
    }
}

/// Where the FTCP tensors come from (recorded in the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SslSource {
    /// A prepared dataset directory, or an `.npy` of FTCP tensors with `ids`.
    pub data: PathBuf,
    pub ids: Option<PathBuf>,
    /// With an `.npy`: the validation fraction and the seed of the split.
    pub val_fraction: f64,
    pub split_seed: u64,
}

/// What a loader reads: ids, layout, raw tensors, their scaling, crystal systems, split and
/// dataset records, one entry per tensor.
type Columns = (
    Vec<String>,
    FtcpConfig,
    Vec<f32>,
    RowMinMax,
    Vec<Option<CrystalSystem>>,
    Vec<bool>,
    Vec<Option<Value>>,
);

/// The loaded rows plus each row's dataset record (properties, source) when there is one.
pub struct LoadedData {
    pub data: SslData,
    pub records: Vec<Option<Value>>,
}

impl SslSource {
    /// Reads the tensors; `normalizer` (a trained run's) replaces the data's own scaling.
    pub fn load(&self, normalizer: Option<&RowMinMax>) -> anyhow::Result<LoadedData> {
        let (ids, layout, raw, own, systems, is_val, records) = if self.data.is_dir() {
            self.load_prepared()?
        } else {
            self.load_npy()?
        };
        let normalizer = normalizer.cloned().unwrap_or(own);
        let data = SslData::new(ids, layout, raw, normalizer, systems, is_val)
            .map_err(|e| BadInput(format!("{}: {e}", self.data.display())))?;
        if data.indices(false).len() < 2 || data.indices(true).is_empty() {
            return Err(BadInput(format!(
                "{}: {} training and {} validation tensors; need at least 2 and 1",
                self.data.display(),
                data.indices(false).len(),
                data.indices(true).len()
            ))
            .into());
        }
        Ok(LoadedData { data, records })
    }

    fn load_prepared(&self) -> anyhow::Result<Columns> {
        let dir = &self.data;
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| BadInput(format!("{}: cannot read ({e})", p.display())))
        };
        let summary: Value = serde_json::from_slice(&read("summary.json")?)
            .map_err(|e| BadInput(format!("{}: {e}", dir.join("summary.json").display())))?;
        let layout: FtcpConfig = serde_json::from_value(summary["config"]["ftcp"].clone())
            .map_err(|e| {
                BadInput(format!(
                    "{}: config.ftcp: {e}",
                    dir.join("summary.json").display()
                ))
            })?;
        let normalizer: RowMinMax = serde_json::from_slice(&read("ftcp_normalizer.json")?)
            .map_err(|e| {
                BadInput(format!(
                    "{}: {e}",
                    dir.join("ftcp_normalizer.json").display()
                ))
            })?;
        let npy_path = dir.join("ftcp.npy");
        let npy = decode_npy(&read("ftcp.npy")?)
            .map_err(|e| BadInput(format!("{}: {e}", npy_path.display())))?;
        let per = layout.rows() * layout.cols();
        if npy.shape
            != [
                npy.shape.first().copied().unwrap_or(0),
                layout.rows(),
                layout.cols(),
            ]
        {
            return Err(BadInput(format!(
                "{}: shape {:?}, expected (N, {}, {}) for the dataset's FTCP layout",
                npy_path.display(),
                npy.shape,
                layout.rows(),
                layout.cols()
            ))
            .into());
        }
        let count = npy.shape[0];
        let jsonl = dir.join("dataset.jsonl");
        let text = String::from_utf8(read("dataset.jsonl")?)
            .map_err(|e| BadInput(format!("{}: {e}", jsonl.display())))?;
        let (mut ids, mut raw, mut systems, mut is_val, mut records) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (line, l) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = |m: String| BadInput(format!("{}:{}: {m}", jsonl.display(), line + 1));
            let r: Value = serde_json::from_str(l).map_err(|e| at(e.to_string()))?;
            let Some(k) = r.get("ftcp_index").and_then(Value::as_u64) else {
                continue;
            };
            let k = k as usize;
            if k >= count {
                return Err(at(format!(
                    "ftcp_index {k} is past the {count} tensors of ftcp.npy"
                ))
                .into());
            }
            let group = r.get("group").and_then(Value::as_str);
            let system = group.and_then(|g| CrystalSystem::ALL.into_iter().find(|c| c.name() == g));
            if group.is_some() && system.is_none() {
                return Err(at(format!("group {group:?} is not a crystal system")).into());
            }
            ids.push(
                r.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
            raw.extend_from_slice(&npy.data[k * per..(k + 1) * per]);
            systems.push(system);
            is_val.push(r.get("split").and_then(Value::as_str) == Some("val"));
            records.push(Some(r));
        }
        Ok((ids, layout, raw, normalizer, systems, is_val, records))
    }

    fn load_npy(&self) -> anyhow::Result<Columns> {
        let path = &self.data;
        let Some(ids_path) = &self.ids else {
            return Err(BadInput(format!(
                "{}: an .npy of FTCP tensors needs --ids (one id per line, in row order)",
                path.display()
            ))
            .into());
        };
        let bytes = std::fs::read(path)
            .map_err(|e| BadInput(format!("{}: cannot read ({e})", path.display())))?;
        let npy = decode_npy(&bytes).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        let layout = FtcpConfig::default();
        if npy.shape.len() != 3 || npy.shape[1] != layout.rows() || npy.shape[2] != layout.cols() {
            return Err(BadInput(format!(
                "{}: shape {:?}, expected (N, {}, {})",
                path.display(),
                npy.shape,
                layout.rows(),
                layout.cols()
            ))
            .into());
        }
        let ids: Vec<String> = std::fs::read_to_string(ids_path)
            .map_err(|e| BadInput(format!("{}: cannot read ({e})", ids_path.display())))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if ids.len() != npy.shape[0] {
            return Err(BadInput(format!(
                "{}: {} ids for the {} tensors of {}",
                ids_path.display(),
                ids.len(),
                npy.shape[0],
                path.display()
            ))
            .into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(BadInput("--val-fraction must be in [0, 1)".into()).into());
        }
        let is_val = validation_mask(ids.len(), self.val_fraction, self.split_seed);
        let per = layout.rows() * layout.cols();
        let normalizer = RowMinMax::fit(
            layout.rows(),
            layout.cols(),
            (0..ids.len())
                .filter(|&i| !is_val[i])
                .map(|i| &npy.data[i * per..(i + 1) * per]),
        )
        .ok_or_else(|| BadInput(format!("{}: no training rows", path.display())))?;
        let n = ids.len();
        Ok((
            ids,
            layout,
            npy.data,
            normalizer,
            vec![None; n],
            is_val,
            vec![None; n],
        ))
    }
}

/// `RUN/ssl.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SslRunInfo {
    pub family: String,
    pub source: SslSource,
    pub layout: FtcpConfig,
    /// The scaling every later input goes through (fitted on this run's training rows).
    pub normalizer: RowMinMax,
    pub blocks: Vec<SslBlockConfig>,
    pub weights: BTreeMap<String, f64>,
    pub training: TrainingSpec,
    /// `--limit`: the seeded sample of training rows every block of the run trains on.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl SslRunInfo {
    pub fn load(run: &Path) -> anyhow::Result<Self> {
        let p = run.join("ssl.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BadInput(format!("{}: not an SSL run ({e})", p.display())))?;
        let info: Self =
            serde_json::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        for b in &info.blocks {
            b.check()
                .map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        }
        Ok(info)
    }

    pub fn block_dir(run: &Path, kind: BlockKind) -> RunDir {
        RunDir::new(&run.join(format!("block{}_{}", kind.number(), kind.name())))
    }

    pub fn config(&self, kind: BlockKind) -> SslBlockConfig {
        self.blocks
            .iter()
            .find(|b| b.kind == kind)
            .cloned()
            .unwrap_or_else(|| SslBlockConfig::new(kind))
    }
}

#[derive(ClapArgs)]
pub struct TrainArgs {
    /// A dataset directory from `xtal prepare`, or an `.npy` of FTCP tensors (N, 400, 63) as
    /// the original system stored them (then --ids is required). Not with --resume.
    #[arg(long, short)]
    data: Option<PathBuf>,
    /// With an `.npy`: a text file of N ids, one per line, row i naming tensor i.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// With an `.npy`: the fraction of rows held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    #[arg(long, default_value_t = 42)]
    split_seed: u64,
    /// SSL run directory.
    #[arg(long, short)]
    out: PathBuf,
    /// Block number (1–6) or `all`.
    #[arg(long, default_value = "all")]
    block: String,
    #[arg(long)]
    force: bool,
    /// Continue a run from each block's last checkpoint, up to --epochs.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (AdamW, warm-up then cosine); 1e-3 made Block 5 diverge.
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1e-5)]
    weight_decay: f64,
    /// Epochs without a better validation loss before a block stops.
    #[arg(long, default_value_t = 5)]
    patience: usize,
    #[arg(long, default_value_t = 64)]
    width: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Train on a seeded sample of at most this many training rows (a quick look; validation
    /// is kept whole).
    #[arg(long)]
    limit: Option<usize>,
    /// A pretext task's loss weight, `task=weight` (repeatable), e.g. crystal_system=1.
    #[arg(long = "task-weight")]
    task_weights: Vec<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn parse_blocks(text: &str) -> anyhow::Result<Vec<BlockKind>> {
    if text == "all" {
        return Ok(BlockKind::ALL.to_vec());
    }
    text.split(',')
        .map(|t| {
            t.trim()
                .parse::<usize>()
                .ok()
                .and_then(BlockKind::from_number)
                .ok_or_else(|| {
                    BadInput(format!(
                        "--block {text}: expected 1–6, a list like 2,5, or all"
                    ))
                    .into()
                })
        })
        .collect()
}

fn parse_weights(items: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let known: Vec<&str> = BlockKind::ALL
        .iter()
        .flat_map(|k| k.tasks().iter().map(|(n, _)| *n))
        .collect();
    let mut out = BTreeMap::new();
    for item in items {
        let parsed = item
            .split_once('=')
            .and_then(|(n, w)| Some((n.trim(), w.trim().parse::<f64>().ok()?)));
        match parsed {
            Some((n, w)) if known.contains(&n) && w.is_finite() && w >= 0.0 => {
                out.insert(n.to_string(), w);
            }
            _ => {
                return Err(BadInput(format!(
                    "--task-weight {item}: expected task=weight (≥ 0) with a task of {}",
                    known.join(", ")
                ))
                .into());
            }
        }
    }
    Ok(out)
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let blocks = parse_blocks(&args.block)?;
    if args.epochs == 0 || args.batch_size < 2 || !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(BadInput(
            "--epochs must be positive, --batch-size at least 2 and --lr positive".into(),
        )
        .into());
    }
    let device = super::one_device(&args.device)?;
    let info = if args.resume {
        if args.data.is_some() {
            return Err(
                BadInput("--resume continues on the run's own data; drop --data".into()).into(),
            );
        }
        let mut info = SslRunInfo::load(&args.out)?;
        // A resumed block must see the rows and losses it started with.
        if args.limit.is_some() && args.limit != info.limit {
            return Err(BadInput(format!(
                "--limit: the run trains on {}; a resume keeps it (drop --limit)",
                info.limit
                    .map_or("every training row".into(), |l| format!("--limit {l}"))
            ))
            .into());
        }
        if !args.task_weights.is_empty() {
            return Err(BadInput(
                "--task-weight: a resume keeps the run's weights (edit `weights` in its ssl.json)"
                    .into(),
            )
            .into());
        }
        info.training.epochs = args.epochs;
        RunDir::new(&args.out).write_json("ssl.json", &info)?;
        info
    } else {
        let weights = parse_weights(&args.task_weights)?;
        let Some(data) = args.data.clone() else {
            return Err(
                BadInput("--data is required (or --resume to continue a run)".into()).into(),
            );
        };
        let source = SslSource {
            data,
            ids: args.ids.clone(),
            val_fraction: args.val_fraction,
            split_seed: args.split_seed,
        };
        let loaded = source.load(None)?;
        let configs: Vec<SslBlockConfig> = BlockKind::ALL
            .iter()
            .map(|&k| {
                SslBlockConfig::new(k)
                    .with_width(args.width)
                    .with_layers(args.layers)
                    .with_element_columns(loaded.data.layout.element_columns())
            })
            .collect();
        for c in &configs {
            c.check()
                .map_err(|e| BadInput(format!("--width/--layers: {e}")))?;
        }
        let training = TrainingSpec {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            early_stopping: true,
            early_stopping_patience: args.patience,
            early_stopping_metric: "val_loss".into(),
            seed: args.seed,
            ..TrainingSpec::default()
        };
        RunDir::new(&args.out).create(args.force, " or --resume to continue it")?;
        let info = SslRunInfo {
            family: "ssl".into(),
            source,
            layout: loaded.data.layout,
            normalizer: loaded.data.normalizer.clone(),
            blocks: configs,
            weights,
            training,
            limit: args.limit,
        };
        RunDir::new(&args.out).write_json("ssl.json", &info)?;
        info
    };
    let loaded = info.source.load(Some(&info.normalizer))?;
    let data = loaded.data;
    eprintln!(
        "data: {} FTCP tensors ({} train, {} validation), {} with a crystal system",
        data.len(),
        data.indices(false).len(),
        data.indices(true).len(),
        data.crystal_systems.iter().filter(|c| c.is_some()).count()
    );
    for kind in blocks {
        let dir = SslRunInfo::block_dir(&args.out, kind);
        let resume = args.resume && dir.checkpoint_path("last").is_file();
        if !resume {
            dir.create(true, "")?;
        }
        let weights = task_weights(
            kind,
            &info
                .weights
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<Vec<_>>(),
        );
        eprintln!(
            "block {} ({}): tasks {}",
            kind.number(),
            kind.name(),
            weights
                .iter()
                .map(|(n, w)| format!("{n} ×{w}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let outcome = run_on(
            &device,
            TrainBlock {
                config: info.config(kind),
                training: &info.training,
                data: &data,
                weights: &weights,
                dir: &dir,
                resume,
                limit: info.limit,
            },
        )??;
        dir.write_json("summary.json", &outcome)?;
        let metrics = dir.read_metrics();
        let epochs: Vec<&Value> = metrics.iter().filter(|m| m["kind"] == "epoch").collect();
        let mut series = vec![
            ("train".to_string(), curve(&epochs, "train_loss")),
            ("validation".to_string(), curve(&epochs, "val_loss")),
        ];
        for (task, _) in &weights {
            series.push((
                format!("val {task}"),
                curve(&epochs, &format!("val_{task}")),
            ));
        }
        plots::save(
            &Curves {
                title: format!("Block {} ({}): pretext losses", kind.number(), kind.name()),
                x_label: "epoch".into(),
                y_label: "loss".into(),
                series,
                references: vec![],
            },
            &dir.plots(),
            "losses",
        )?;
        eprintln!(
            "block {}: best validation loss {:.4} at epoch {} ({:.0} samples/s) → {}",
            kind.number(),
            outcome.best_val_loss,
            outcome.best_epoch,
            outcome.samples_per_second,
            dir.path.display()
        );
    }
    Ok(())
}

fn curve(epochs: &[&Value], key: &str) -> Vec<(f64, f64)> {
    epochs
        .iter()
        .filter_map(|m| Some((m["epoch"].as_f64()?, m.get(key)?.as_f64()?)))
        .collect()
}

struct TrainBlock<'a> {
    config: SslBlockConfig,
    training: &'a TrainingSpec,
    data: &'a SslData,
    weights: &'a [(String, f64)],
    dir: &'a RunDir,
    resume: bool,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct BlockOutcome {
    block: usize,
    name: &'static str,
    parameters: usize,
    /// Rows trained on, and the `--limit` that sampled them (none: every training row).
    train_rows: usize,
    limit: Option<usize>,
    best_epoch: usize,
    best_val_loss: f64,
    /// The best epoch's validation loss per task (unweighted).
    best_val_tasks: Vec<(String, f64)>,
    epochs_run: usize,
    seconds: f64,
    samples_per_second: f64,
}

impl OnDevice for TrainBlock<'_> {
    type Output = anyhow::Result<BlockOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let t = self.training;
        let kind = self.config.kind;
        let mut train_idx = self.data.indices(false);
        if let Some(limit) = self.limit {
            // A seeded sample, not the first rows: datasets are often grouped by source.
            xtal_core::data::seeded_shuffle(&mut train_idx, t.seed);
            train_idx.truncate(limit.max(2));
            train_idx.sort_unstable();
        }
        let val_idx = self.data.indices(true);
        B::seed(&device, t.seed);
        let mut model: SslBlock<B> = self.config.init(&device);
        let parameters = model.num_params();
        let mut optimizer = ModelOptimizer::<B, SslBlock<B>>::new(
            t.optimizer_settings(t.learning_rate, train_idx.len()),
            [],
        );
        let mut state = t.fresh_state();
        if self.resume {
            let c = self.dir.load_checkpoint("last")?;
            let bad = |e: String| {
                BadInput(format!(
                    "{}: {e}",
                    self.dir.checkpoint_path("last").display()
                ))
            };
            model = model_from_bytes(model, c.model, &device).map_err(|e| bad(e.to_string()))?;
            optimizer = optimizer
                .load_bytes(c.optimizer, &device)
                .map_err(|e| bad(e.to_string()))?;
            state = c.state;
            self.dir.truncate_metrics(state.epoch)?;
            eprintln!(
                "resuming block {} after epoch {}",
                kind.number(),
                state.epoch
            );
        }
        // With a fixed masking (seed only), so that epochs compare.
        let validate = |m: &SslBlock<B::InnerBackend>| {
            evaluate_ssl(
                m,
                self.data,
                &val_idx,
                self.weights,
                t.batch_size,
                t.seed,
                &device,
            )
        };
        let mut log = self.dir.metrics_log()?;
        let started = Instant::now();
        let mut seen = 0usize;
        let mut best: Option<(usize, TaskLosses)> = None;
        for epoch in state.epoch + 1..=t.epochs {
            if state.stopped {
                break;
            }
            B::seed(&device, t.seed.wrapping_add(epoch as u64));
            let batches = self.data.block_batches(
                kind,
                epoch_batches(&train_idx, t.batch_size, t.seed, epoch),
                t.seed ^ epoch as u64,
            );
            let bar = crate::run_dir::epoch_bar(
                "block",
                batches.len(),
                format!("{} epoch {epoch}/{}", kind.number(), t.epochs),
            );
            let mut steps = EpochSteps::new(epoch, optimizer.step, t, batches.len());
            let mut task_sums: Vec<f64> = vec![0.0; self.weights.len()];
            let epoch_start = Instant::now();
            model = train_ssl_epoch(
                model,
                &mut optimizer,
                self.data,
                &batches,
                self.weights,
                t.seed,
                epoch,
                &device,
                |losses, lr| {
                    steps.record(losses.total, lr);
                    for (s, (_, l)) in task_sums.iter_mut().zip(&losses.tasks) {
                        *s += l;
                    }
                    bar.inc(1);
                    bar.set_message(format!("loss {:.4}  lr {lr:.2e}", losses.total));
                },
            );
            bar.finish_and_clear();
            seen += batches.iter().map(Vec::len).sum::<usize>();
            let val = validate(&model.valid());
            let mut line = json!({
                "kind": "epoch", "epoch": epoch, "step": optimizer.step,
                "train_loss": steps.mean_loss(), "val_loss": val.total, "lr": optimizer.lr(),
                "seconds": epoch_start.elapsed().as_secs_f64(),
            });
            for ((task, _), sum) in self.weights.iter().zip(&task_sums) {
                line[format!("train_{task}")] = json!(sum / batches.len().max(1) as f64);
            }
            for (task, l) in &val.tasks {
                line[format!("val_{task}")] = json!(l);
            }
            let improved = self
                .dir
                .end_epoch(&mut log, t, &mut state, steps, line, &model, &optimizer)?;
            let tasks: Vec<String> = val
                .tasks
                .iter()
                .map(|(n, l)| format!("{n} {l:.4}"))
                .collect();
            eprintln!(
                "block {} epoch {epoch}/{}: validation {:.4} ({}){}",
                kind.number(),
                t.epochs,
                val.total,
                tasks.join(", "),
                if improved { "  *best" } else { "" }
            );
            if improved {
                best = Some((epoch, val));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let (best_epoch, best_val) = match best {
            Some(b) => b,
            // No epoch of this invocation improved (a resumed run): the best checkpoint's.
            None => {
                let c = self.dir.load_checkpoint("best")?;
                let m: SslBlock<B> = model_from_bytes(self.config.init(&device), c.model, &device)?;
                let v = validate(&m.valid());
                (c.state.epoch, v)
            }
        };
        Ok(BlockOutcome {
            block: kind.number(),
            name: kind.name(),
            parameters,
            train_rows: train_idx.len(),
            limit: self.limit,
            best_epoch,
            best_val_loss: best_val.total,
            best_val_tasks: best_val.tasks,
            epochs_run: state.epoch,
            seconds,
            samples_per_second: seen as f64 / seconds.max(1e-9),
        })
    }
}

#[derive(ClapArgs)]
pub struct ExtractArgs {
    /// A trained SSL run.
    #[arg(long)]
    run: PathBuf,
    /// Data to embed (default: the run's own); scaled with the run's training normaliser.
    #[command(flatten)]
    other: OtherData,
    /// Output `.npy` (N × 2048); the ids go to the same name with `.ids.txt`.
    #[arg(long, short)]
    out: PathBuf,
    /// The control: the same encoders at their (seeded) random initialisation.
    #[arg(long)]
    random_init: bool,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct OtherData {
    /// Another dataset directory (or `.npy` with --other-ids).
    #[arg(long = "data")]
    pub data: Option<PathBuf>,
    #[arg(long = "other-ids")]
    pub ids: Option<PathBuf>,
}

impl OtherData {
    pub fn source(&self, info: &SslRunInfo) -> SslSource {
        match &self.data {
            Some(d) => SslSource {
                data: d.clone(),
                ids: self.ids.clone(),
                ..info.source.clone()
            },
            None => info.source.clone(),
        }
    }
}

/// Features of every row of `data` (N × 2048, row-major), trained or at random init.
pub fn extract_features(
    run: &Path,
    info: &SslRunInfo,
    data: &SslData,
    rows: &[usize],
    random_init: bool,
    batch_size: usize,
    device: &str,
) -> anyhow::Result<Vec<f32>> {
    let device = super::one_device(device)?;
    let bar = ProgressBar::new((rows.len() * BlockKind::ALL.len()) as u64).with_style(
        ProgressStyle::with_template("extract {bar:30} {pos}/{len}  [{elapsed}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = vec![0f32; rows.len() * FEATURE_DIM];
    for kind in BlockKind::ALL {
        let checkpoint = if random_init {
            None
        } else {
            let dir = SslRunInfo::block_dir(run, kind);
            if !dir.checkpoint_path("best").is_file() {
                return Err(BadInput(format!(
                    "{}: block {} ({}) is not trained; run `xtal ssl train --block {}`",
                    run.display(),
                    kind.number(),
                    kind.name(),
                    kind.number()
                ))
                .into());
            }
            Some(dir)
        };
        let features = run_on(
            &device,
            ExtractBlock {
                config: info.config(kind),
                seed: info.training.seed,
                checkpoint: checkpoint.as_ref(),
                data,
                rows,
                batch_size,
                bar: &bar,
            },
        )??;
        let (dim, offset) = (kind.output_dim(), kind.offset());
        for (i, chunk) in features.chunks(dim).enumerate() {
            out[i * FEATURE_DIM + offset..i * FEATURE_DIM + offset + dim].copy_from_slice(chunk);
        }
    }
    bar.finish_and_clear();
    if let Some(k) = out.iter().position(|v| !v.is_finite()) {
        return Err(anyhow::anyhow!(
            "feature {} of row {} ({}) is not finite",
            k % FEATURE_DIM,
            rows[k / FEATURE_DIM],
            data.ids[rows[k / FEATURE_DIM]]
        ));
    }
    Ok(out)
}

struct ExtractBlock<'a> {
    config: SslBlockConfig,
    seed: u64,
    checkpoint: Option<&'a RunDir>,
    data: &'a SslData,
    rows: &'a [usize],
    batch_size: usize,
    bar: &'a ProgressBar,
}

impl OnDevice for ExtractBlock<'_> {
    type Output = anyhow::Result<Vec<f32>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // The control is the initialisation training started from (same seed).
        B::seed(&device, self.seed);
        let mut model: SslBlock<B> = self.config.init(&device);
        if let Some(dir) = self.checkpoint {
            let c = dir.load_checkpoint("best")?;
            model = model_from_bytes(model, c.model, &device)
                .map_err(|e| BadInput(format!("{}: {e}", dir.checkpoint_path("best").display())))?;
        }
        let model = model.valid();
        Ok(block_features(
            &model,
            self.data,
            self.rows,
            self.batch_size,
            &device,
            |n| self.bar.inc(n as u64),
        ))
    }
}

pub fn write_ids(path: &Path, ids: &[&str]) -> anyhow::Result<()> {
    let mut text = ids.join("\n");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn ids_path(npy: &Path) -> PathBuf {
    npy.with_extension("ids.txt")
}

fn extract(args: ExtractArgs) -> anyhow::Result<()> {
    let info = SslRunInfo::load(&args.run)?;
    let data = args.other.source(&info).load(Some(&info.normalizer))?.data;
    let rows: Vec<usize> = (0..data.len()).collect();
    let started = Instant::now();
    let features = extract_features(
        &args.run,
        &info,
        &data,
        &rows,
        args.random_init,
        args.batch_size,
        &args.device,
    )?;
    write_npy(
        &args.out,
        &[data.len() as u64, FEATURE_DIM as u64],
        &features,
    )?;
    let ids: Vec<&str> = data.ids.iter().map(String::as_str).collect();
    write_ids(&ids_path(&args.out), &ids)?;
    eprintln!(
        "{} × {FEATURE_DIM} {} features in {:.1} s → {} (ids: {})",
        data.len(),
        if args.random_init {
            "random-init"
        } else {
            "SSL"
        },
        started.elapsed().as_secs_f64(),
        args.out.display(),
        ids_path(&args.out).display()
    );
    Ok(())
}

#[derive(ClapArgs)]
pub struct BottleneckArgs {
    /// Features from `xtal ssl extract` (N × 2048), with their `.ids.txt` beside them.
    #[arg(long)]
    features: PathBuf,
    /// Width of the code.
    #[arg(long)]
    dim: usize,
    /// Output directory: features_K.npy (+ ids), metrics.jsonl, checkpoints, plots.
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long)]
    force: bool,
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn bottleneck(args: BottleneckArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.features)
        .map_err(|e| BadInput(format!("{}: cannot read ({e})", args.features.display())))?;
    let npy =
        decode_npy(&bytes).map_err(|e| BadInput(format!("{}: {e}", args.features.display())))?;
    let &[n, d] = &npy.shape[..] else {
        return Err(BadInput(format!(
            "{}: shape {:?}, expected (N, D)",
            args.features.display(),
            npy.shape
        ))
        .into());
    };
    if n < 2 || d < 2 {
        return Err(BadInput(format!(
            "{}: shape {:?}; needs at least 2 rows and 2 columns",
            args.features.display(),
            npy.shape
        ))
        .into());
    }
    if args.dim == 0 || args.dim >= d {
        return Err(BadInput(format!(
            "--dim {}: must be between 1 and {}",
            args.dim,
            d - 1
        ))
        .into());
    }
    if let Some(k) = npy.data.iter().position(|v| !v.is_finite()) {
        return Err(BadInput(format!(
            "{}: row {}, column {} is not finite",
            args.features.display(),
            k / d,
            k % d
        ))
        .into());
    }
    let ids_file = ids_path(&args.features);
    let ids = std::fs::read_to_string(&ids_file)
        .map_err(|e| BadInput(format!("{}: cannot read the ids ({e})", ids_file.display())))?;
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if ids.len() != n {
        return Err(BadInput(format!(
            "{}: {} ids for {n} rows",
            ids_file.display(),
            ids.len()
        ))
        .into());
    }
    let is_val = validation_mask(n, args.val_fraction, args.seed);
    // Standardised with training-row statistics, so every column counts alike.
    let (mut mean, mut std) = (vec![0f64; d], vec![0f64; d]);
    let train: Vec<usize> = (0..n).filter(|&i| !is_val[i]).collect();
    for c in 0..d {
        let scale =
            xtal_core::train::TargetScale::fit(train.iter().map(|&i| npy.data[i * d + c] as f64));
        (mean[c], std[c]) = (scale.mean, scale.std);
    }
    let x: Vec<f32> = npy
        .data
        .iter()
        .enumerate()
        .map(|(k, v)| ((*v as f64 - mean[k % d]) / std[k % d]) as f32)
        .collect();
    let run = RunDir::new(&args.out);
    run.create(args.force, "")?;
    let device = super::one_device(&args.device)?;
    let config = BottleneckConfig::new(args.dim).with_input_dim(d);
    let (codes, best) = run_on(
        &device,
        TrainBottleneck {
            args: &args,
            config: &config,
            x: &x,
            d,
            is_val: &is_val,
            run: &run,
        },
    )??;
    let out = args.out.join(format!("features_{}.npy", args.dim));
    write_npy(&out, &[n as u64, args.dim as u64], &codes)?;
    write_ids(&ids_path(&out), &ids)?;
    run.write_json(
        "summary.json",
        &json!({"dim": args.dim, "input_dim": d, "rows": n, "best_val_mse": best,
                "standardization": {"mean": mean, "std": std}, "model": config}),
    )?;
    eprintln!(
        "bottleneck {d} → {}: validation reconstruction MSE {best:.4} (standardised units; predicting the mean scores 1) → {}",
        args.dim,
        out.display()
    );
    Ok(())
}

struct TrainBottleneck<'a> {
    args: &'a BottleneckArgs,
    config: &'a BottleneckConfig,
    x: &'a [f32],
    d: usize,
    is_val: &'a [bool],
    run: &'a RunDir,
}

impl OnDevice for TrainBottleneck<'_> {
    type Output = anyhow::Result<(Vec<f32>, f64)>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let a = self.args;
        let training = TrainingSpec {
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            weight_decay: 1e-5,
            early_stopping: true,
            early_stopping_patience: 5,
            seed: a.seed,
            ..TrainingSpec::default()
        };
        let train_idx = xtal_core::data::split_indices(self.is_val, false);
        let val_idx = xtal_core::data::split_indices(self.is_val, true);
        let rows = |idx: &[usize]| -> Tensor<B, 2> {
            let mut v = Vec::with_capacity(idx.len() * self.d);
            for &i in idx {
                v.extend_from_slice(&self.x[i * self.d..(i + 1) * self.d]);
            }
            Tensor::from_data(TensorData::new(v, [idx.len(), self.d]), &device)
        };
        B::seed(&device, a.seed);
        let mut model: Bottleneck<B> = self.config.init(&device);
        let mut optimizer = ModelOptimizer::<B, Bottleneck<B>>::new(
            training.optimizer_settings(a.lr, train_idx.len()),
            [],
        );
        let mut state = training.fresh_state();
        let mut log = self.run.metrics_log()?;
        let mut curve = Vec::new();
        for epoch in 1..=a.epochs {
            if state.stopped {
                break;
            }
            let batches = epoch_batches(&train_idx, a.batch_size, a.seed, epoch);
            let mut steps = EpochSteps::new(epoch, optimizer.step, &training, batches.len());
            for idx in &batches {
                let loss = model.forward(rows(idx));
                steps.record(to_host(loss.clone().inner())[0] as f64, optimizer.lr());
                model = optimizer.backward(model, loss).0;
            }
            model = optimizer.flush(model);
            let valid = model.valid();
            let mut val = 0.0;
            for chunk in val_idx.chunks(512) {
                let l = to_host(valid.forward(rows(chunk).inner()))[0] as f64;
                val += l * chunk.len() as f64 / val_idx.len().max(1) as f64;
            }
            curve.push((epoch as f64, val));
            let line = json!({"kind": "epoch", "epoch": epoch, "train_loss": steps.mean_loss(), "val_loss": val});
            let improved = self.run.end_epoch(
                &mut log, &training, &mut state, steps, line, &model, &optimizer,
            )?;
            eprintln!(
                "epoch {epoch}/{}: validation MSE {val:.4}{}",
                a.epochs,
                if improved { "  *best" } else { "" }
            );
        }
        plots::save(
            &Curves {
                title: format!("Bottleneck {} → {}: reconstruction", self.d, a.dim),
                x_label: "epoch".into(),
                y_label: "validation MSE (standardised)".into(),
                series: vec![("validation".into(), curve)],
                references: vec![("predict the mean".into(), 1.0)],
            },
            &self.run.plots(),
            "reconstruction",
        )?;
        let c = self.run.load_checkpoint("best")?;
        let best: Bottleneck<B> = model_from_bytes(self.config.init(&device), c.model, &device)?;
        let best = best.valid();
        let best_val = state
            .early_stopping
            .as_ref()
            .and_then(|e| e.best)
            .unwrap_or(f64::NAN);
        let all: Vec<usize> = (0..self.is_val.len()).collect();
        let mut codes = Vec::with_capacity(all.len() * a.dim);
        for chunk in all.chunks(512) {
            codes.extend(to_host(best.encode(rows(chunk).inner())));
        }
        Ok((codes, best_val))
    }
}
