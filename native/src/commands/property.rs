//! `xtal train property`: a graph encoder (CGCNN or PaiNN) trained alone to predict one
//! scalar property of a prepared dataset, with the held-out MAE reported next to a
//! composition-only ridge baseline on the same split. The computing lives in
//! `xtal_core::train::property`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xtal_core::data::epoch_batches;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::property::{PropertyModel, PropertyModelConfig};
use xtal_core::models::structure::{GraphBackbone, Readout, StructureEncoderConfig};
use xtal_core::train::property::{
    PropertyRows, composition_baseline, mean_absolute_error, predict_property, train_property_epoch,
};
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::{ModelOptimizer, TargetScale, model_to_bytes};

use crate::clip_data::{DataSource, checked_graph};
use crate::exit::BadInput;
use crate::plots::{self, Curves, ParityPlot};
use crate::run_dir::{Checkpoint, RunDir};

#[derive(ClapArgs, Debug)]
pub struct TrainArgs {
    /// A dataset directory written by `xtal prepare`.
    #[arg(long, short)]
    data: PathBuf,
    /// The property to predict: a key of the records' `properties` (e.g. band_gap).
    #[arg(long)]
    target: String,
    /// Only records of this `source` (a property means different things per source, so
    /// rows of several sources are refused unless one is chosen).
    #[arg(long)]
    source: Option<String>,
    /// Run directory to create.
    #[arg(long, short)]
    out: PathBuf,
    /// Replace an existing run directory.
    #[arg(long)]
    force: bool,
    /// Graph network: cgcnn or painn.
    #[arg(long, default_value = "cgcnn")]
    backbone: String,
    /// mean or attention.
    #[arg(long, default_value = "mean")]
    readout: String,
    /// Atom feature width.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Message-passing layers.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Width of the structure embedding.
    #[arg(long, default_value_t = 128)]
    embedding_dim: usize,
    /// Neighbour cutoff in Å (default: the backbone's own).
    #[arg(long)]
    cutoff: Option<f64>,
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Ridge penalty of the composition baseline (on standardised features).
    #[arg(long, default_value_t = 1.0)]
    baseline_alpha: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// `run.json` of a property run: enough to rebuild the model and read its graphs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PropertyRunInfo {
    pub family: String,
    pub data: DataSource,
    pub target: String,
    pub source: Option<String>,
    pub model: PropertyModelConfig,
    pub scale: TargetScale,
}

impl PropertyRunInfo {
    pub fn load(run: &RunDir) -> anyhow::Result<Self> {
        run.read_run_json("property")
    }
}

/// The records of `data` with a finite `target` (and `source`), as graphs with a split.
fn property_rows(
    data: &DataSource,
    target: &str,
    source: Option<&str>,
    encoder: &StructureEncoderConfig,
) -> anyhow::Result<(PropertyRows, usize)> {
    let path = &data.jsonl;
    let records = data.json_records()?;
    let table = data.element_table()?;
    let structures = data.structures()?;
    let mut rows = PropertyRows {
        ids: vec![],
        graphs: vec![],
        targets: vec![],
        is_val: vec![],
        table: table.clone(),
    };
    let (mut sources, mut known, mut unusable) = (BTreeMap::<String, usize>::new(), false, 0);
    for (line, r) in records {
        let at = |m: String| BadInput(format!("{}:{line}: {m}", path.display()));
        let Some(props) = r.get("properties").and_then(Value::as_object) else {
            return Err(at("no `properties` (not an `xtal prepare` dataset)".into()).into());
        };
        known |= props.contains_key(target);
        let Some(y) = props
            .get(target)
            .and_then(Value::as_f64)
            .filter(|y| y.is_finite())
        else {
            continue;
        };
        let row_source = r.get("source").and_then(Value::as_str).unwrap_or("");
        if source.is_some_and(|s| s != row_source) {
            continue;
        }
        *sources.entry(row_source.to_string()).or_default() += 1;
        let graph = r
            .get("graph_index")
            .and_then(Value::as_u64)
            .and_then(|k| structures.get(k as usize))
            .map(|s| checked_graph(s, &encoder.graph, &table));
        let Some(Ok(graph)) = graph else {
            unusable += 1;
            continue;
        };
        rows.ids.push(r["id"].as_str().unwrap_or("").to_string());
        rows.graphs.push(graph);
        rows.targets.push(y);
        rows.is_val
            .push(r.get("split").and_then(Value::as_str) == Some("val"));
    }
    if !known {
        return Err(BadInput(format!(
            "{}: no record has a property `{target}`",
            path.display()
        ))
        .into());
    }
    if source.is_none() && sources.len() > 1 {
        let list: Vec<String> = sources.iter().map(|(s, n)| format!("{s} ({n})")).collect();
        return Err(BadInput(format!(
            "{}: `{target}` comes from several sources ({}), where it need not mean the same; choose one with --source",
            path.display(),
            list.join(", ")
        ))
        .into());
    }
    let val = rows.is_val.iter().filter(|v| **v).count();
    if val < 2 || rows.len() - val < 2 {
        return Err(BadInput(format!(
            "{}: {} training and {val} validation rows with `{target}`; need at least 2 of each",
            path.display(),
            rows.len() - val
        ))
        .into());
    }
    Ok((rows, unusable))
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let backbone = GraphBackbone::parse(&args.backbone).ok_or_else(|| {
        BadInput(format!(
            "--backbone {}: expected one of {}",
            args.backbone,
            GraphBackbone::NAMES
        ))
    })?;
    let readout = Readout::parse(&args.readout).ok_or_else(|| {
        BadInput(format!(
            "--readout {}: expected mean or attention",
            args.readout
        ))
    })?;
    if !(args.baseline_alpha.is_finite() && args.baseline_alpha > 0.0) {
        return Err(BadInput(format!(
            "--baseline-alpha {}: must be positive",
            args.baseline_alpha
        ))
        .into());
    }
    if args.width == 0 || args.layers == 0 || args.embedding_dim == 0 || args.batch_size < 2 {
        return Err(BadInput(
            "--width, --layers and --embedding-dim must be positive, --batch-size at least 2"
                .into(),
        )
        .into());
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(BadInput("--lr must be a positive number".into()).into());
    }
    let mut graph = backbone.default_graph();
    if let Some(c) = args.cutoff {
        if !(c.is_finite() && (1.0..=20.0).contains(&c)) {
            return Err(BadInput("--cutoff must be between 1 and 20 Å".into()).into());
        }
        graph.cutoff = c;
    }
    let config = PropertyModelConfig::new(
        StructureEncoderConfig::new(backbone, graph)
            .with_hidden(args.width)
            .with_layers(args.layers)
            .with_readout(readout)
            .with_output_dim(args.embedding_dim),
    );
    let data = DataSource::new(&args.data, None)?;
    let device = super::one_device(&args.device)?;
    let (rows, unusable) =
        property_rows(&data, &args.target, args.source.as_deref(), &config.encoder)?;
    let n_val = rows.indices(true).len();
    eprintln!(
        "data: {} structures with {} ({} train, {n_val} validation); {unusable} without a usable graph",
        rows.len(),
        args.target,
        rows.len() - n_val,
    );
    let scale = rows.scale();
    let run = RunDir::new(&args.out);
    run.create(args.force, "")?;
    let info = PropertyRunInfo {
        family: "property".into(),
        data: data.clone(),
        target: args.target.clone(),
        source: args.source.clone(),
        model: config.clone(),
        scale,
    };
    run.write_json("run.json", &info)?;
    let outcome = run_on(
        &device,
        TrainProperty {
            args: &args,
            config: &config,
            rows: &rows,
            scale,
            run: &run,
        },
    )??;

    let val = rows.indices(true);
    let truth: Vec<f64> = val.iter().map(|&i| rows.targets[i]).collect();
    let baseline = composition_baseline(&rows, args.baseline_alpha, &val)?;
    let model_mae = mean_absolute_error(&outcome.predictions, &truth);
    let baseline_mae = mean_absolute_error(&baseline, &truth);
    let mean_mae = mean_absolute_error(&vec![scale.mean; truth.len()], &truth);
    run.write_json(
        "summary.json",
        &json!({
            "target": args.target, "source": args.source,
            "train": rows.len() - val.len(), "validation": val.len(),
            "best_epoch": outcome.best_epoch,
            "validation_mae": model_mae,
            "composition_baseline_mae": baseline_mae,
            "predict_training_mean_mae": mean_mae,
            "parameters": outcome.parameters,
            "seconds": outcome.seconds,
            "graphs_per_second": outcome.graphs_per_second,
            "device": device.to_string(),
        }),
    )?;
    let dir = run.plots();
    let parity = |pred: &[f64]| truth.iter().copied().zip(pred.iter().copied()).collect();
    plots::save(
        &ParityPlot {
            title: format!("{} on {} held-out structures", args.target, val.len()),
            names: vec![backbone.to_string(), "composition ridge".into()],
            panels: vec![
                (parity(&outcome.predictions), format!("MAE {model_mae:.3}")),
                (parity(&baseline), format!("MAE {baseline_mae:.3}")),
            ],
            background: vec![],
        },
        &dir,
        "parity",
    )?;
    plots::save(
        &Curves {
            title: format!("{}: validation MAE per epoch", args.target),
            x_label: "epoch".into(),
            y_label: format!("MAE ({})", args.target),
            series: vec![("graph encoder".into(), outcome.curve.clone())],
            references: vec![
                ("composition ridge".into(), baseline_mae),
                ("training mean".into(), mean_mae),
            ],
        },
        &dir,
        "mae",
    )?;
    println!(
        "{} MAE on {} held-out structures: {:?} {model_mae:.4} (best epoch {}), composition baseline {baseline_mae:.4}, training mean {mean_mae:.4}",
        args.target,
        val.len(),
        backbone,
        outcome.best_epoch
    );
    eprintln!("run: {} (plots in {})", run.path.display(), dir.display());
    Ok(())
}

struct TrainProperty<'a> {
    args: &'a TrainArgs,
    config: &'a PropertyModelConfig,
    rows: &'a PropertyRows,
    scale: TargetScale,
    run: &'a RunDir,
}

struct PropertyOutcome {
    /// Best checkpoint's predictions for the validation rows.
    predictions: Vec<f64>,
    best_epoch: usize,
    curve: Vec<(f64, f64)>,
    parameters: usize,
    seconds: f64,
    graphs_per_second: f64,
}

impl OnDevice for TrainProperty<'_> {
    type Output = anyhow::Result<PropertyOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let a = self.args;
        let training = TrainingSpec {
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            seed: a.seed,
            weight_decay: 1e-4,
            ..TrainingSpec::default()
        };
        let train_idx = self.rows.indices(false);
        let val_idx = self.rows.indices(true);
        B::seed(&device, a.seed);
        let mut model: PropertyModel<B> = self.config.init(&device);
        let parameters = model.num_params();
        let settings = training.optimizer_settings(a.lr, train_idx.len());
        let mut optimizer = ModelOptimizer::<B, PropertyModel<B>>::new(settings, []);
        let mut log = self.run.metrics_log()?;
        let (mut best, mut best_epoch, mut curve) = (f64::INFINITY, 0, Vec::new());
        // The saved checkpoint's predictions, kept rather than recomputed at the end.
        let mut best_predictions = Vec::new();
        let truth: Vec<f64> = val_idx.iter().map(|&i| self.rows.targets[i]).collect();
        let started = Instant::now();
        let mut seen = 0usize;
        for epoch in 1..=a.epochs {
            let batches = epoch_batches(&train_idx, a.batch_size, a.seed, epoch);
            let bar =
                crate::run_dir::epoch_bar("epoch", batches.len(), format!("{epoch}/{}", a.epochs));
            let (mut loss_sum, mut steps) = (0.0, 0usize);
            model = train_property_epoch(
                model,
                &mut optimizer,
                self.rows,
                &batches,
                self.scale,
                &device,
                |loss, lr| {
                    let loss = loss.into_scalar().elem::<f64>();
                    loss_sum += loss;
                    steps += 1;
                    bar.inc(1);
                    bar.set_message(format!("L1 {loss:.4}  lr {lr:.2e}"));
                },
            )
            .map_err(|e| BadInput(e.to_string()))?;
            bar.finish_and_clear();
            seen += train_idx.len();
            let valid = model.valid();
            let pred = predict_property(
                &valid,
                self.rows,
                &val_idx,
                a.batch_size,
                self.scale,
                &device,
            )
            .map_err(|e| BadInput(e.to_string()))?;
            let mae = mean_absolute_error(&pred, &truth);
            let train_l1 = loss_sum / steps.max(1) as f64 * self.scale.std;
            curve.push((epoch as f64, mae));
            let improved = mae < best;
            if improved {
                best = mae;
                best_epoch = epoch;
                best_predictions = pred;
                self.run.save_checkpoint(
                    "best",
                    &Checkpoint {
                        state: training.fresh_state(),
                        model: model_to_bytes(&valid)?,
                        optimizer: Vec::new(),
                    },
                )?;
            }
            log.append(&json!({
                "kind": "epoch", "epoch": epoch, "train_mae": train_l1, "val_mae": mae,
                "lr": optimizer.lr(),
            }))?;
            eprintln!(
                "epoch {epoch}/{}: train MAE {train_l1:.4}, validation MAE {mae:.4}{}",
                a.epochs,
                if improved { "  *best" } else { "" }
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(PropertyOutcome {
            predictions: best_predictions,
            best_epoch,
            curve,
            parameters,
            seconds,
            graphs_per_second: seen as f64 / seconds.max(1e-9),
        })
    }
}
