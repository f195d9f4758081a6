//! `xtal train tensor`, `xtal eval tensor`: property-tensor heads over frozen CLIP
//! embeddings of either modality. The computing lives in `xtal_core::train::tensor`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xtal_core::data::epoch_batches;
use xtal_core::device::{DeviceSpec, OnDevice, run_on};
use xtal_core::metrics::regression_metrics;
use xtal_core::models::tensor_head::{RegressionLoss, TensorHead, TensorHeadConfig};
use xtal_core::train::spec::{RunSpec, TensorRegressionSpec};
use xtal_core::train::tensor::{
    TensorEvaluation, TensorRows, TensorTargets, evaluate_head, train_tensor_epoch,
};
use xtal_core::train::{ModelOptimizer, TrainState, model_from_bytes};

use super::clip::{EmbedTask, LoadedRun, SpecOverrides, load_clip_run};
use crate::clip_data::DataSource;
use crate::exit::BadInput;
use crate::plots::{self, Curves, ParityPlot};
use crate::run_dir::{EpochSteps, RunDir};

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
    /// Replace an existing run directory.
    #[arg(long)]
    force: bool,
    /// No plots at the end.
    #[arg(long)]
    no_plots: bool,
}

#[derive(ClapArgs, Debug)]
pub struct EvalArgs {
    /// Run directory of `xtal train tensor`.
    #[arg(long)]
    run: PathBuf,
    /// Another dataset (same structure representation) instead of the run's.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings for --data (original layout).
    #[arg(long)]
    graph_emb_dir: Option<PathBuf>,
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    checkpoint: String,
    /// Which rows (a dataset given with --data defaults to all, the run's own to val).
    #[arg(long, value_parser = ["val", "train", "all"])]
    split: Option<String>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also write id, true and predicted components of every evaluated row to this CSV.
    #[arg(long, value_name = "CSV")]
    predictions: Option<PathBuf>,
}

/// `run.json` of a tensor run: which CLIP run and checkpoint feed it, and how targets map.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TensorRunInfo {
    family: String,
    clip_run: PathBuf,
    clip_checkpoint: String,
    /// The CLIP checkpoint's epoch when the head was trained (eval warns if it changed).
    clip_epoch: usize,
    data: DataSource,
    modality: String,
    head: TensorHeadConfig,
    targets: TensorTargets,
    loss: RegressionLoss,
    batch_size: usize,
}

/// Rows with a tensor, embedded by the frozen CLIP model, and what was left out.
struct EmbeddedRows {
    rows: TensorRows,
    without_tensor: Vec<String>,
    source: DataSource,
    clip_epoch: usize,
}

fn embed_rows(
    clip_run: &Path,
    clip_checkpoint: &str,
    modality: &str,
    data: Option<&Path>,
    graph_emb_dir: Option<&Path>,
    device: &DeviceSpec,
) -> anyhow::Result<EmbeddedRows> {
    let LoadedRun {
        run,
        info,
        spec: clip_spec,
        set,
        source,
        ..
    } = load_clip_run(clip_run, data, graph_emb_dir)?;
    let (with, without): (Vec<usize>, Vec<usize>) =
        (0..set.len()).partition(|&i| set.tensors[i].is_some());
    if with.is_empty() {
        return Err(BadInput(format!(
            "{}: no record has a `tensor` (9 values, row-major 3×3)",
            source.jsonl.display()
        ))
        .into());
    }
    let c = run.load_checkpoint(clip_checkpoint)?;
    let (s, t) = run_on(
        device,
        EmbedTask {
            config: &info.model,
            weights: c.model,
            set: &set,
            idx: &with,
            batch_size: clip_spec.training.batch_size,
        },
    )??;
    let inputs = if modality == "text" { t } else { s };
    Ok(EmbeddedRows {
        rows: TensorRows {
            ids: with.iter().map(|&i| set.ids[i].clone()).collect(),
            dim: inputs.len() / with.len(),
            inputs,
            tensors: with.iter().filter_map(|&i| set.tensors[i]).collect(),
            is_val: with.iter().map(|&i| set.is_val[i]).collect(),
        },
        without_tensor: without.iter().map(|&i| set.ids[i].clone()).collect(),
        source,
        clip_epoch: c.state.epoch,
    })
}

fn spec_from(args: &TrainArgs) -> anyhow::Result<RunSpec> {
    let (text, name) = match &args.config {
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
    RunSpec::from_json(&value.to_string(), &name, &overrides)
        .map_err(|e| BadInput(e.to_string()).into())
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
    let (clip_run, clip_checkpoint) = clip_source(&args, &tr)?;
    let device_text = args
        .device
        .clone()
        .or(t.device.clone())
        .unwrap_or_else(|| "cpu".into());
    let device = super::one_device(&device_text)?;
    let embedded = embed_rows(
        &clip_run,
        &clip_checkpoint,
        &tr.modality,
        args.data.as_deref(),
        args.graph_emb_dir.as_deref(),
        &device,
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
    let targets = TensorTargets::fit(tr.mode(), &train_tensors, tr.normalize);
    let head = tr.head_config(rows.dim);
    let info = TensorRunInfo {
        family: "tensor".into(),
        clip_run: std::fs::canonicalize(&clip_run).unwrap_or(clip_run.clone()),
        clip_checkpoint,
        clip_epoch: embedded.clip_epoch,
        data: embedded.source.clone(),
        modality: tr.modality.clone(),
        head: head.clone(),
        targets: targets.clone(),
        loss: tr.loss(),
        batch_size: t.batch_size,
    };

    let run = RunDir::new(&args.out);
    run.create(args.force, "")?;
    run.write_json("config.json", &spec)?;
    run.write_json("run.json", &info)?;
    run.write_json(
        "data_report.json",
        &json!({"data": embedded.source.jsonl, "rows_with_tensor": rows.len(),
                "train": n_train, "validation": n_val,
                "without_tensor": {"count": embedded.without_tensor.len(), "ids": embedded.without_tensor}}),
    )?;

    let outcome = run_on(
        &device,
        HeadTrainTask {
            spec: &spec,
            info: &info,
            rows,
            run: &run,
        },
    )??;

    // Final figures from the best checkpoint (the last one when nothing was tracked).
    let c = run.load_checkpoint("best")?;
    let evaluate = |validation: bool| -> anyhow::Result<Option<Scored>> {
        let idx = rows.indices(validation);
        if idx.is_empty() {
            return Ok(None);
        }
        let (eval, pred) = predict_on(&device, &info, c.model.clone(), rows, &idx)?;
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
            "device": device.to_string(),
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
    eprintln!("run: {}", run.path.display());
    Ok(())
}

/// MAE and R² of always predicting the training mean: the floor a head must clear.
fn baseline(rows: &TensorRows, idx: &[usize], targets: &TensorTargets) -> TensorEvaluation {
    let pred: Vec<f64> = idx
        .iter()
        .flat_map(|_| targets.mean.iter().copied())
        .collect();
    let truth = rows.truth(idx, targets.mode);
    TensorEvaluation {
        loss: f64::NAN,
        metrics: regression_metrics(&pred, &truth, targets.mode.component_names()),
    }
}

fn print_table(e: &TensorEvaluation, mean_predictor: &TensorEvaluation, title: &str) {
    println!("{title}:");
    println!("  component        MAE         R²   (training-mean predictor: MAE)");
    for (c, b) in e
        .metrics
        .components
        .iter()
        .zip(&mean_predictor.metrics.components)
    {
        println!(
            "  {:<9} {:>11.4} {:>10.4}   ({:.4})",
            c.name, c.mae, c.r2, b.mae
        );
    }
    println!(
        "  mean      {:>11.4} {:>10.4}   ({:.4}); pooled R² {:.4}",
        e.metrics.mae, e.metrics.r2, mean_predictor.metrics.mae, e.metrics.r2_pooled
    );
}

fn write_predictions<'a>(
    path: &Path,
    rows: &TensorRows,
    targets: &TensorTargets,
    parts: impl Iterator<Item = (&'a [usize], &'a [f64])>,
) -> anyhow::Result<()> {
    let names = targets.mode.component_names();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string(), "split".to_string()];
    header.extend(names.iter().map(|n| format!("true_{n}")));
    header.extend(names.iter().map(|n| format!("pred_{n}")));
    w.write_record(&header)?;
    for (idx, pred) in parts {
        for (r, &i) in idx.iter().enumerate() {
            let mut record = vec![
                rows.ids[i].clone(),
                if rows.is_val[i] { "val" } else { "train" }.to_string(),
            ];
            record.extend(
                targets
                    .mode
                    .select(&rows.tensors[i])
                    .iter()
                    .map(f64::to_string),
            );
            record.extend(
                pred[r * names.len()..(r + 1) * names.len()]
                    .iter()
                    .map(f64::to_string),
            );
            w.write_record(&record)?;
        }
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::output::write_atomic(path, &bytes)
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

/// Evaluation and de-normalised predictions of the rows `idx` by saved head weights.
fn predict_on(
    device: &DeviceSpec,
    info: &TensorRunInfo,
    weights: Vec<u8>,
    rows: &TensorRows,
    idx: &[usize],
) -> anyhow::Result<(TensorEvaluation, Vec<f64>)> {
    run_on(
        device,
        PredictTask {
            info,
            weights,
            rows,
            idx,
        },
    )?
}

struct PredictTask<'a> {
    info: &'a TensorRunInfo,
    weights: Vec<u8>,
    rows: &'a TensorRows,
    idx: &'a [usize],
}

impl OnDevice for PredictTask<'_> {
    type Output = anyhow::Result<(TensorEvaluation, Vec<f64>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let head: TensorHead<B::InnerBackend> =
            model_from_bytes(self.info.head.init(&device), self.weights, &device)?;
        Ok(evaluate_head(
            &head,
            self.rows,
            self.idx,
            &self.info.targets,
            self.info.loss,
            self.info.batch_size,
            &device,
        ))
    }
}

struct HeadTrainTask<'a> {
    spec: &'a RunSpec,
    info: &'a TensorRunInfo,
    rows: &'a TensorRows,
    run: &'a RunDir,
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
        let (rows, targets, loss) = (self.rows, &self.info.targets, self.info.loss);
        let train_idx = rows.indices(false);
        let val_idx = if t.use_validation {
            rows.indices(true)
        } else {
            Vec::new()
        };
        let settings =
            t.optimizer_settings(tr.regression_lr.unwrap_or(t.learning_rate), train_idx.len());
        B::seed(&device, t.seed);
        let mut head: TensorHead<B> = self.info.head.init(&device);
        let mut optimizer = ModelOptimizer::<B, TensorHead<B>>::new(settings, []);
        let mut state = t.fresh_state();
        let mut log = self.run.metrics_log()?;
        let started = Instant::now();
        let bar = ProgressBar::new(t.epochs as u64).with_style(
            ProgressStyle::with_template("epochs {bar:30} {pos}/{len}  {msg}  [{elapsed}<{eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        for epoch in 1..=t.epochs {
            B::seed(&device, t.seed.wrapping_add(epoch as u64));
            let batches = epoch_batches(&train_idx, t.batch_size, t.seed, epoch);
            let mut steps = EpochSteps::new(epoch, optimizer.step, t, batches.len());
            head = train_tensor_epoch(
                head,
                &mut optimizer,
                rows,
                targets,
                loss,
                &batches,
                &device,
                |l, lr| steps.record(l.into_scalar().elem::<f64>(), lr),
            );
            let train_loss = steps.mean_loss();
            let mut line = json!({"kind": "epoch", "epoch": epoch, "step": optimizer.step,
                "train_loss": train_loss, "lr": optimizer.lr()});
            let mut message = format!("train loss {train_loss:.4}");
            if !val_idx.is_empty() {
                let (e, _) = evaluate_head(
                    &head.valid(),
                    rows,
                    &val_idx,
                    targets,
                    loss,
                    t.batch_size,
                    &device,
                );
                line["val_loss"] = json!(e.loss);
                line["val_mae"] = json!(e.metrics.mae);
                line["val_r2"] = json!(e.metrics.r2);
                line["val_r2_pooled"] = json!(e.metrics.r2_pooled);
                for c in &e.metrics.components {
                    line[format!("val_mae_{}", c.name)] = json!(c.mae);
                    line[format!("val_r2_{}", c.name)] = json!(c.r2);
                }
                message += &format!(", val MAE {:.4}, R² {:.3}", e.metrics.mae, e.metrics.r2);
            }
            self.run
                .end_epoch(&mut log, t, &mut state, steps, line, &head, &optimizer)?;
            bar.inc(1);
            bar.set_message(message);
            if state.stopped {
                bar.println(format!(
                    "early stopping after epoch {epoch}: {} has not improved for {} epochs",
                    t.early_stopping_metric, t.early_stopping_patience
                ));
                break;
            }
        }
        bar.finish_and_clear();
        Ok(HeadOutcome {
            state,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let info: TensorRunInfo = run.read_run_json("tensor")?;
    let device = super::one_device(&args.device)?;
    // Without --data: the rows the head was trained on (which may not be the CLIP run's).
    let (data, embedding_dir) = match &args.data {
        Some(d) => (d.clone(), args.graph_emb_dir.clone()),
        None => (
            info.data.jsonl.clone(),
            Some(info.data.embedding_dir.clone()),
        ),
    };
    let embedded = embed_rows(
        &info.clip_run,
        &info.clip_checkpoint,
        &info.modality,
        Some(&data),
        embedding_dir.as_deref(),
        &device,
    )
    .with_context(|| format!("the CLIP run of {}", run.path.display()))?;
    if embedded.clip_epoch != info.clip_epoch {
        eprintln!(
            "warning: {} {} checkpoint is now epoch {}, the head was trained on epoch {}'s embeddings",
            info.clip_run.display(),
            info.clip_checkpoint,
            embedded.clip_epoch,
            info.clip_epoch
        );
    }
    let rows = &embedded.rows;
    if rows.dim != info.head.input_dim {
        return Err(BadInput(format!(
            "{}: {}-D embeddings, the head reads {}-D",
            info.clip_run.display(),
            rows.dim,
            info.head.input_dim
        ))
        .into());
    }
    let (split, idx) = super::split_rows(args.split.as_deref(), args.data.is_none(), &rows.is_val);
    if idx.len() < 2 {
        return Err(BadInput(format!(
            "the {split} split has {} rows with a tensor; at least 2 are needed",
            idx.len()
        ))
        .into());
    }
    let c = run.load_checkpoint(&args.checkpoint)?;
    let (e, pred) = predict_on(&device, &info, c.model, rows, &idx)?;
    if let Some(p) = &args.predictions {
        write_predictions(
            p,
            rows,
            &info.targets,
            std::iter::once((idx.as_slice(), pred.as_slice())),
        )?;
    }
    if args.json {
        println!(
            "{}",
            json!({"checkpoint": args.checkpoint, "epoch": c.state.epoch, "split": split,
                   "evaluation": e, "mean_predictor": baseline(rows, &idx, &info.targets)})
        );
    } else {
        print_table(
            &e,
            &baseline(rows, &idx, &info.targets),
            &format!(
                "{split} ({} rows, epoch {}), {} embeddings",
                e.metrics.n, c.state.epoch, info.modality
            ),
        );
    }
    Ok(())
}
