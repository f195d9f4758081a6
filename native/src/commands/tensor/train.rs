//! `xtal train tensor`: a head over frozen CLIP embeddings through the shared training loop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde_json::{Value, json};
use xtal_core::device::OnDevice;
use xtal_core::models::tensor_head::TensorHead;
use xtal_core::train::seeded_init;
use xtal_core::train::spec::{RunSpec, TensorRegressionSpec};
use xtal_core::train::tensor::{TensorEvaluation, TensorRows, TensorStep, TensorTargets};
use xtal_core::train::{FitSettings, ModelOptimizer, TrainState, fit};

use super::run::{TensorRunInfo, baseline, embed_rows, predict_on, print_table, write_predictions};
use crate::collective::{
    NodeArgs, NodeRanks, RankPlace, say_done, train_on_devices, training_devices,
};
use crate::commands::clip::SpecOverrides;
use crate::exit::BadInput;
use crate::plots::{self, Curves, ParityPlot};
use crate::run_dir::{Bar, Progress, RunDir};
use crate::tracking::TrackingArgs;

#[derive(ClapArgs, Debug)]
pub struct TrainArgs {
    /// The CLIP run whose frozen embeddings the head reads (default:
    /// tensor_regression.clip_checkpoint_path of the configuration).
    #[arg(long)]
    clip_run: Option<PathBuf>,
    /// Which checkpoint of the CLIP run.
    #[arg(long, value_parser = ["best", "last"])]
    clip_checkpoint: Option<String>,
    /// JSON configuration; its `tensor_regression` and `training` sections are used (the
    /// original's keys are accepted). Defaults apply without one.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Dataset with `tensor` fields (default: the CLIP run's data); it is split as the CLIP
    /// run split its own, so validation rows are unseen by both models.
    #[arg(long, short)]
    data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings for --data (original layout).
    #[arg(long)]
    graph_emb_dir: Option<PathBuf>,
    /// Run directory to create.
    #[arg(long, short)]
    out: PathBuf,
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N] (default: training.device, else cpu).
    /// Several of one backend (cuda:0,cuda:1) train data-parallel, one rank per device.
    #[arg(long)]
    device: Option<String>,
    /// Shorthand for --set tensor_regression.modality=graph|text.
    #[arg(long, value_parser = ["graph", "text"])]
    modality: Option<String>,
    /// Shorthand for --set tensor_regression.tensor_mode=full|2d|voigt2d.
    #[arg(long, value_parser = ["full", "2d", "voigt2d"])]
    mode: Option<String>,
    #[command(flatten)]
    overrides: SpecOverrides,
    #[command(flatten)]
    tracking: TrackingArgs,
    #[command(flatten)]
    nodes: NodeArgs,
    /// Replace an existing run directory.
    #[arg(long)]
    force: bool,
    /// Continue the run in --out from its last checkpoint, with its own configuration, CLIP
    /// run and data (exactly as an uninterrupted run would have gone on).
    #[arg(long, conflicts_with_all = ["force", "config", "clip_run", "clip_checkpoint", "data", "graph_emb_dir", "modality", "mode"])]
    resume: bool,
    /// Stop after this epoch (continue later with --resume).
    #[arg(long, value_name = "EPOCH")]
    stop_after: Option<usize>,
    /// No plots at the end.
    #[arg(long)]
    no_plots: bool,
}

fn spec_from(args: &TrainArgs) -> anyhow::Result<RunSpec> {
    let own = args.out.join("config.json");
    let config = if args.resume {
        Some(&own)
    } else {
        args.config.as_ref()
    };
    let (text, name) = match config {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| BadInput(format!("{}: cannot read ({e})", p.display())))?,
            p.display().to_string(),
        ),
        None => ("{}".to_string(), "(defaults)".to_string()),
    };
    let mut value: Value =
        serde_json::from_str(&text).map_err(|e| BadInput(format!("{name}: {e}")))?;
    // The section's presence makes this a head run (its metrics, its validation).
    if let Some(obj) = value.as_object_mut() {
        obj.entry("tensor_regression").or_insert_with(|| json!({}));
    }
    let mut overrides = args.overrides.list();
    if let Some(m) = &args.modality {
        overrides.push(format!("tensor_regression.modality={m}"));
    }
    if let Some(m) = &args.mode {
        overrides.push(format!("tensor_regression.tensor_mode={m}"));
    }
    crate::commands::run_spec(&value.to_string(), &name, &overrides)
}

/// The CLIP run and checkpoint: `--clip-run`, else the configuration's path (a run
/// directory or a checkpoint file inside one).
fn clip_source(args: &TrainArgs, tr: &TensorRegressionSpec) -> anyhow::Result<(PathBuf, String)> {
    let which = args.clip_checkpoint.clone();
    if let Some(run) = &args.clip_run {
        return Ok((run.clone(), which.unwrap_or_else(|| "best".into())));
    }
    let Some(p) = tr.clip_checkpoint_path.as_deref().map(PathBuf::from) else {
        return Err(BadInput(
            "--clip-run is required (or tensor_regression.clip_checkpoint_path)".into(),
        )
        .into());
    };
    if p.is_dir() {
        return Ok((p, which.unwrap_or_else(|| "best".into())));
    }
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    match (p.extension().and_then(|e| e.to_str()), p.parent().and_then(Path::parent)) {
        (Some("ckpt"), Some(run)) if ["best", "last"].contains(&stem) => {
            Ok((run.to_path_buf(), which.unwrap_or_else(|| stem.into())))
        }
        _ => Err(BadInput(format!(
            "tensor_regression.clip_checkpoint_path: {} is not an xtal CLIP run or its checkpoints/best.ckpt or last.ckpt",
            p.display()
        ))
        .into()),
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let spec = spec_from(&args)?;
    let tr = spec.tensor_regression.clone().unwrap_or_default();
    let t = &spec.training;
    let run = RunDir::new(&args.out);
    // A resumed run reads the embeddings it was trained on.
    let resumed: Option<TensorRunInfo> = if args.resume {
        Some(run.read_run_json("tensor")?)
    } else {
        None
    };
    let (clip_run, clip_checkpoint, data, graph_emb_dir) = match &resumed {
        Some(info) => (
            info.clip_run.clone(),
            info.clip_checkpoint.clone(),
            Some(info.data.jsonl.clone()),
            Some(info.data.embedding_dir.clone()),
        ),
        None => {
            let (clip_run, clip_checkpoint) = clip_source(&args, &tr)?;
            (
                clip_run,
                clip_checkpoint,
                args.data.clone(),
                args.graph_emb_dir.clone(),
            )
        }
    };
    let device_text = args
        .device
        .clone()
        .or(t.device.clone())
        .unwrap_or_else(|| "cpu".into());
    let devices = training_devices(&device_text)?;
    let (nodes, lead) =
        args.nodes
            .plan_for_batch(t.batch_size, "training.batch_size", devices.len())?;
    let embedded = embed_rows(
        &clip_run,
        &clip_checkpoint,
        tr.modality,
        data.as_deref(),
        graph_emb_dir.as_deref(),
        &devices[0],
    )?;
    let rows = &embedded.rows;
    let (n_train, n_val) = (rows.indices(false).len(), rows.indices(true).len());
    eprintln!(
        "data: {} rows with a tensor ({n_train} train, {n_val} validation), {} without; {} embeddings ({}-D) from {}",
        rows.len(),
        embedded.without_tensor.len(),
        tr.modality,
        rows.dim,
        clip_run.display()
    );
    if n_train < 2 || (t.use_validation && n_val < 2) {
        return Err(BadInput(format!(
            "{}: {n_train} training and {n_val} validation rows have a tensor; at least 2 each are needed",
            embedded.source.jsonl.display()
        ))
        .into());
    }
    let train_tensors: Vec<[f64; 9]> = rows
        .indices(false)
        .iter()
        .map(|&i| rows.tensors[i])
        .collect();
    // Refitted, not read back from run.json: JSON need not give each float back to the bit.
    let targets = TensorTargets::fit(tr.mode(), &train_tensors, tr.normalize);
    let info = match resumed {
        Some(info) => TensorRunInfo {
            targets: targets.clone(),
            ..info
        },
        None => TensorRunInfo {
            family: "tensor".into(),
            clip_run: clip_run.clone(),
            clip_checkpoint,
            clip_epoch: embedded.clip_epoch,
            data: embedded.source.clone(),
            modality: tr.modality,
            head: tr.head_config(rows.dim),
            targets: targets.clone(),
            loss: tr.loss(),
            batch_size: t.batch_size,
        },
    };

    let run = if lead {
        if !args.resume {
            run.create(args.force, " or --resume to continue it")?;
        }
        run.write_json("config.json", &spec)?;
        run.write_info("run.json", &info)?;
        run.write_json(
            "data_report.json",
            &json!({"data": embedded.source.jsonl, "rows_with_tensor": rows.len(),
                    "train": n_train, "validation": n_val,
                    "without_tensor": {"count": embedded.without_tensor.len(), "ids": embedded.without_tensor}}),
        )?;
        run.track(&args.tracking, &serde_json::to_value(&spec)?, args.resume)?
    } else {
        run
    };

    let outcome = train_on_devices(&devices, nodes.as_ref(), |place| HeadTrainTask {
        spec: &spec,
        info: &info,
        rows,
        run: &run,
        resume: args.resume,
        stop_after: args.stop_after,
        place,
    })?;
    if !lead {
        say_done(
            nodes.as_ref(),
            &format!(" after epoch {}", outcome.state.epoch),
        );
        return Ok(());
    }

    // Final figures from the best checkpoint (the last one when nothing was tracked).
    let c = run.load_checkpoint("best")?;
    let evaluate = |validation: bool| -> anyhow::Result<Option<Scored>> {
        let idx = rows.indices(validation);
        if idx.is_empty() {
            return Ok(None);
        }
        let (eval, pred) = predict_on(&devices[0], &info, c.model.clone(), rows, &idx)?;
        Ok(Some(Scored { idx, eval, pred }))
    };
    let val = if t.use_validation {
        evaluate(true)?
    } else {
        None
    };
    let train_fit = evaluate(false)?;
    if let Some(v) = &val {
        print_table(
            &v.eval,
            &baseline(rows, &v.idx, &targets),
            &format!(
                "validation ({} rows, epoch {}), {} embeddings → {}",
                v.eval.metrics.n,
                c.state.epoch,
                info.modality,
                serde_json::to_value(targets.mode)?.as_str().unwrap_or("?")
            ),
        );
    }
    write_predictions(
        &run.file("predictions.csv"),
        rows,
        &targets,
        [&val, &train_fit]
            .into_iter()
            .flatten()
            .map(|s| (s.idx.as_slice(), s.pred.as_slice())),
    )?;
    run.write_json(
        "summary.json",
        &json!({
            "epochs_completed": outcome.state.epoch,
            "optimizer_steps": outcome.state.step,
            "stopped_early": outcome.state.stopped,
            "best_epoch": outcome.state.early_stopping.as_ref().and_then(|e| e.best_epoch),
            "validation": val.as_ref().map(|v| &v.eval),
            "validation_mean_predictor": val.as_ref().map(|v| baseline(rows, &v.idx, &targets)),
            "train": train_fit.as_ref().map(|v| &v.eval),
            "rows": {"train": n_train, "validation": n_val, "without_tensor": embedded.without_tensor.len()},
            "modality": info.modality,
            "tensor_mode": targets.mode,
            "clip_run": info.clip_run,
            "clip_checkpoint": info.clip_checkpoint,
            "device": device_text,
            "seconds": outcome.seconds,
        }),
    )?;
    if !args.no_plots {
        let mut files = curve_plots(&run)?;
        if tr.log_parity_plot {
            // Validation in colour over the training rows, or the training rows alone.
            let (shown, background, label) = match (&val, &train_fit) {
                (Some(v), t) => (Some(v), t.as_ref(), "validation rows (training rows grey)"),
                (None, t) => (t.as_ref(), None, "training rows"),
            };
            if let Some(shown) = shown {
                files += parity(
                    rows,
                    &targets,
                    shown,
                    background,
                    &format!("{label}, epoch {}", c.state.epoch),
                    &run.plots(),
                )?;
            }
        }
        eprintln!("plots: {files} files in {}", run.plots().display());
    }
    run.finish_tracking()?;
    eprintln!("run: {}", run.path.display());
    Ok(())
}

/// Rows a head was scored on: their indices, metrics and de-normalised predictions.
struct Scored {
    idx: Vec<usize>,
    eval: TensorEvaluation,
    pred: Vec<f64>,
}

/// Parity panels of `shown` (with `background` rows faint behind) as `dir/parity.{png,svg}`.
fn parity(
    rows: &TensorRows,
    targets: &TensorTargets,
    shown: &Scored,
    background: Option<&Scored>,
    label: &str,
    dir: &Path,
) -> anyhow::Result<usize> {
    let names = targets.mode.component_names();
    let k = names.len();
    let pairs = |idx: &[usize], pred: &[f64], c: usize| -> Vec<(f64, f64)> {
        let truth = rows.truth(idx, targets.mode);
        (0..idx.len())
            .map(|r| (truth[r * k + c], pred[r * k + c]))
            .collect()
    };
    let figure = ParityPlot {
        title: format!("tensor regression: {label}"),
        names: names.iter().map(|s| s.to_string()).collect(),
        panels: (0..k)
            .map(|c| {
                let m = &shown.eval.metrics.components[c];
                (
                    pairs(&shown.idx, &shown.pred, c),
                    format!("R² {:.3}, MAE {:.4}", m.r2, m.mae),
                )
            })
            .collect(),
        background: background.map_or(Vec::new(), |b| {
            (0..k).map(|c| pairs(&b.idx, &b.pred, c)).collect()
        }),
    };
    Ok(plots::save(&figure, dir, "parity")?.len())
}

fn curve_plots(run: &RunDir) -> anyhow::Result<usize> {
    let lines = run.read_metrics();
    let get = |key: &str| -> Vec<(f64, f64)> {
        lines
            .iter()
            .filter(|l| l["kind"] == "epoch")
            .filter_map(|l| Some((l["epoch"].as_f64()?, l[key].as_f64()?)))
            .collect()
    };
    let mut series = vec![
        ("train loss".to_string(), get("train_loss")),
        ("validation loss".to_string(), get("val_loss")),
    ];
    series.retain(|(_, s)| !s.is_empty());
    let mut files = plots::save(
        &Curves {
            title: "tensor-regression loss (normalised units)".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series,
            references: Vec::new(),
        },
        &run.plots(),
        "loss",
    )?
    .len();
    let r2 = get("val_r2");
    if !r2.is_empty() {
        files += plots::save(
            &Curves {
                title: "validation R² (mean over components)".into(),
                x_label: "epoch".into(),
                y_label: "R²".into(),
                series: vec![("validation R²".into(), r2)],
                references: vec![("training-mean predictor".into(), 0.0)],
            },
            &run.plots(),
            "r2",
        )?
        .len();
    }
    Ok(files)
}

struct HeadTrainTask<'a> {
    spec: &'a RunSpec,
    info: &'a TensorRunInfo,
    rows: &'a TensorRows,
    run: &'a RunDir,
    resume: bool,
    stop_after: Option<usize>,
    place: RankPlace<'a>,
}

struct HeadOutcome {
    state: TrainState,
    seconds: f64,
}

impl OnDevice for HeadTrainTask<'_> {
    type Output = anyhow::Result<HeadOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let t = &self.spec.training;
        let tr = self.spec.tensor_regression.clone().unwrap_or_default();
        let rows = self.rows;
        let train_idx = rows.indices(false);
        let val_idx = if t.use_validation {
            rows.indices(true)
        } else {
            Vec::new()
        };
        let settings =
            t.optimizer_settings(tr.regression_lr.unwrap_or(t.learning_rate), train_idx.len());
        let ranks = NodeRanks::join::<B::InnerBackend>(self.place, device.clone())?;
        let head: TensorHead<B> = seeded_init(&device, t.seed, |d| self.info.head.init(d));
        let optimizer =
            |h: TensorHead<B>| (h, ModelOptimizer::<B, TensorHead<B>>::new(settings, []));
        let (head, mut optimizer, state) =
            self.run
                .start(self.resume, "", head, &device, t, optimizer)?;
        let step = TensorStep::<B> {
            rows,
            targets: &self.info.targets,
            loss: self.info.loss,
            val: &val_idx,
            batch_size: t.batch_size,
            device: device.clone(),
        };
        let mut progress = Progress::new("head", Bar::Epochs, t, |end| {
            let l = |k: &str| end.line[k].as_f64().unwrap_or(f64::NAN);
            let mut message = format!("train loss {:.4}", l("train_loss"));
            if end.line.get("val_mae").is_some() {
                message += &format!(", val MAE {:.4}, R² {:.3}", l("val_mae"), l("val_r2"));
            }
            message
        });
        let (started, mut store) = (Instant::now(), self.run);
        let fitted = fit::<_, _, _, _, anyhow::Error, _>(
            &step,
            head,
            &mut optimizer,
            FitSettings {
                training: t,
                train: &train_idx,
                state,
                stop_after: self.stop_after,
                ranks: &ranks,
            },
            &mut store,
            &mut progress,
            &device,
        )?;
        drop(progress);
        ranks.finish()?;
        Ok(HeadOutcome {
            state: fitted.state,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
