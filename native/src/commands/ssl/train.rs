//! `xtal ssl train`: each block through the shared training loop, in its own run directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde::Serialize;
use xtal_core::device::OnDevice;
use xtal_core::models::ftcp_ssl::{BlockKind, SslBlock, SslBlockConfig};
use xtal_core::train::seeded_init;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::ssl::{SslData, SslStep, TaskLosses, task_weights};
use xtal_core::train::{
    EpochEnd, FitSettings, ModelOptimizer, Ranks, TrainStep, fit, model_from_bytes,
};

use super::run_info::SslRunInfo;
use crate::collective::{
    NodeArgs, NodeRanks, RankPlace, check_batch, train_on_devices, training_devices,
};
use crate::data::ftcp::SslSource;
use crate::exit::BadInput;
use crate::plots::{self, Curves};
use crate::run_dir::{Bar, Progress, RunDir};
use crate::tracking::TrackingArgs;

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
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N]. Several of one backend (cuda:0,cuda:1) train data-parallel, one rank per device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Each block is tracked as a run of its own (named RUN/blockN_name in MLflow).
    #[command(flatten)]
    tracking: TrackingArgs,
    /// Every rank trains the same blocks in turn, each block data-parallel over the ranks.
    #[command(flatten)]
    nodes: NodeArgs,
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
    let devices = training_devices(&args.device)?;
    let (nodes, lead) =
        args.nodes
            .plan_for_batch(args.batch_size, "--batch-size", devices.len())?;
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
        check_batch(
            nodes.as_ref(),
            devices.len(),
            info.training.batch_size,
            "the run's batch size",
        )?;
        if lead {
            RunDir::new(&args.out).write_info("ssl.json", &info)?;
        }
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
        if lead {
            start_or_join(&RunDir::new(&args.out), &info, &blocks, args.force)?;
        }
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
    let jobs: Vec<BlockJob> = blocks
        .into_iter()
        .map(|kind| {
            let weights = task_weights(
                kind,
                &info
                    .weights
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
            );
            let resume = args.resume
                && SslRunInfo::block_dir(&args.out, kind)
                    .checkpoint_path("last")
                    .is_file();
            BlockJob {
                config: info.config(kind),
                weights,
                resume,
            }
        })
        .collect();
    // Rank 0 opens each block's run directory as the block starts, and writes its results.
    let open = |job: &BlockJob| -> anyhow::Result<RunDir> {
        let kind = job.config.kind;
        let dir = SslRunInfo::block_dir(&args.out, kind);
        if !job.resume {
            dir.create(true, "")?;
        }
        let params = serde_json::json!({"block": info.config(kind), "training": info.training,
                            "weights": info.weights, "limit": info.limit});
        dir.track(&args.tracking, &params, job.resume)
    };
    let done = |job: &BlockJob, dir: &RunDir, outcome: BlockOutcome| -> anyhow::Result<()> {
        let kind = job.config.kind;
        dir.write_json("summary.json", &outcome)?;
        let mut series = vec![
            ("train".to_string(), dir.epoch_curve("train_loss")),
            ("validation".to_string(), dir.epoch_curve("val_loss")),
        ];
        for (task, _) in &job.weights {
            series.push((
                format!("val {task}"),
                dir.epoch_curve(&format!("val_{task}")),
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
        dir.finish_tracking()
    };
    let say = |rank: usize, job: &BlockJob| {
        let block = job.config.kind.number();
        eprintln!("rank {rank} done with block {block} (rank 0 writes the run)");
    };
    train_on_devices(&devices, nodes.as_ref(), |place| TrainBlocks {
        jobs: &jobs,
        training: &info.training,
        data: &data,
        limit: info.limit,
        out: &args.out,
        place,
        open: &open,
        done: &done,
        say: &say,
    })
}

/// Starts the SSL run in `run`, or joins the one another process (or an earlier call) started
/// there with the same data and settings, to train other blocks in it at the same time (each
/// process maps the same dataset). `--force` starts over.
fn start_or_join(
    run: &RunDir,
    info: &SslRunInfo,
    blocks: &[BlockKind],
    force: bool,
) -> anyhow::Result<()> {
    let description = run.file("ssl.json");
    if force || !description.is_file() {
        match run.create(force, " or --resume to continue it") {
            Ok(()) => return run.write_info("ssl.json", info),
            // Another process started the run meanwhile and may be writing its ssl.json
            // (atomically: a temporary file first): wait for it, then join.
            Err(e) => {
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                while !force && !description.is_file() && Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if force || !description.is_file() {
                    return Err(e);
                }
            }
        }
    }
    let theirs: serde_json::Value = std::fs::read_to_string(&description)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| BadInput(format!("{}: not an SSL run", description.display())))?;
    if theirs != serde_json::to_value(run.stored(info)?)? {
        return Err(BadInput(format!(
            "{} holds an SSL run with other data or settings (its ssl.json); to train more \
             blocks in it give the same ones, or use another --out (--force replaces it)",
            run.path.display()
        ))
        .into());
    }
    for &kind in blocks {
        let dir = SslRunInfo::block_dir(&run.path, kind);
        if dir.path.exists() {
            return Err(BadInput(format!(
                "{}: block {} is in this run already; --resume continues it",
                dir.path.display(),
                kind.number()
            ))
            .into());
        }
    }
    eprintln!(
        "joining the SSL run in {} (same data and settings)",
        run.path.display()
    );
    Ok(())
}

/// One block to train: its configuration, pretext-task weights and whether it resumes.
struct BlockJob {
    config: SslBlockConfig,
    weights: Vec<(String, f64)>,
    resume: bool,
}

/// What rank 0 does around each block: opens its run directory, writes its results.
type OpenBlock<'a> = &'a (dyn Fn(&BlockJob) -> anyhow::Result<RunDir> + Sync);
type BlockDone<'a> = &'a (dyn Fn(&BlockJob, &RunDir, BlockOutcome) -> anyhow::Result<()> + Sync);

/// Every block of the command in turn, on one rank. A rank joins the run once for all its
/// blocks: burn-collective's coordinator numbers nodes by how many are registered, so a node
/// that left after one block and joined for the next while another was still registered got a
/// number already taken (and rank 0 cannot host a second coordinator on the same port).
struct TrainBlocks<'a> {
    jobs: &'a [BlockJob],
    training: &'a TrainingSpec,
    data: &'a SslData,
    limit: Option<usize>,
    out: &'a std::path::Path,
    place: RankPlace<'a>,
    open: OpenBlock<'a>,
    done: BlockDone<'a>,
    /// What a rank other than 0 says after each block.
    say: &'a (dyn Fn(usize, &BlockJob) + Sync),
}

impl OnDevice for TrainBlocks<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let ranks = NodeRanks::join::<B::InnerBackend>(self.place, device.clone())?;
        for job in self.jobs {
            let kind = job.config.kind;
            eprintln!(
                "block {} ({}): tasks {}",
                kind.number(),
                kind.name(),
                job.weights
                    .iter()
                    .map(|(n, w)| format!("{n} ×{w}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let dir = if ranks.rank() == 0 {
                (self.open)(job)?
            } else {
                SslRunInfo::block_dir(self.out, kind)
            };
            let block = TrainBlock {
                config: job.config.clone(),
                training: self.training,
                data: self.data,
                weights: &job.weights,
                dir: &dir,
                resume: job.resume,
                limit: self.limit,
            };
            match block.train::<B>(&ranks, &device)? {
                Some(outcome) => (self.done)(job, &dir, outcome)?,
                None => (self.say)(ranks.rank(), job),
            }
        }
        ranks.finish()
    }
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

impl TrainBlock<'_> {
    /// Trains the block on this rank; `None` on ranks other than 0, which write and report
    /// nothing.
    fn train<B: AutodiffBackend>(
        self,
        ranks: &NodeRanks,
        device: &B::Device,
    ) -> anyhow::Result<Option<BlockOutcome>> {
        let device = device.clone();
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
        let model: SslBlock<B> = seeded_init(&device, t.seed, |d| self.config.init(d));
        let parameters = model.num_params();
        let settings = t.optimizer_settings(t.learning_rate, train_idx.len());
        let optimizer = |m: SslBlock<B>| (m, ModelOptimizer::<B, SslBlock<B>>::new(settings, []));
        let (model, mut optimizer, state) = self.dir.start(
            self.resume,
            &format!(" block {}", kind.number()),
            model,
            &device,
            t,
            optimizer,
        )?;
        let step = SslStep::<B> {
            kind,
            data: self.data,
            weights: self.weights,
            val: &val_idx,
            batch_size: t.batch_size,
            seed: t.seed,
            rank: ranks.rank(),
            device: device.clone(),
        };
        let summary = |end: &EpochEnd| {
            let l = |k: &str| end.line[k].as_f64().unwrap_or(f64::NAN);
            let tasks: Vec<String> = self
                .weights
                .iter()
                .map(|(n, _)| format!("{n} {:.4}", l(&format!("val_{n}"))))
                .collect();
            format!(
                "block {} epoch {}/{}: validation {:.4} ({})",
                kind.number(),
                end.epoch,
                end.epochs,
                l("val_loss"),
                tasks.join(", ")
            )
        };
        let mut progress = Progress::new(
            &format!("block {}", kind.number()),
            Bar::Batches,
            t,
            summary,
        );
        let (started, mut store) = (Instant::now(), self.dir);
        let fitted = fit::<_, _, _, _, anyhow::Error, _>(
            &step,
            model,
            &mut optimizer,
            FitSettings {
                training: t,
                train: &train_idx,
                state,
                stop_after: None,
                ranks,
            },
            &mut store,
            &mut progress,
            &device,
        )?;
        drop(progress);
        if ranks.rank() != 0 {
            return Ok(None);
        }
        let seconds = started.elapsed().as_secs_f64();
        let (best_epoch, best_val) = match fitted.best {
            Some((epoch, metrics)) => (epoch, TaskLosses::from_metrics(&metrics)),
            // No epoch of this invocation improved (a resumed run): the best checkpoint's.
            None => {
                let c = self.dir.load_checkpoint("best")?;
                let m: SslBlock<B::InnerBackend> =
                    model_from_bytes(self.config.init(&device), c.model, &device)?;
                let metrics = TrainStep::<B>::validate(&step, &m)?;
                (c.state.epoch, TaskLosses::from_metrics(&metrics))
            }
        };
        let state = fitted.state;
        let seen = fitted.items_seen;
        Ok(Some(BlockOutcome {
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
        }))
    }
}
