//! `xtal train property`: a graph encoder (CGCNN or PaiNN) trained alone to predict one
//! scalar property of a prepared dataset, with the held-out MAE reported next to a
//! composition-only ridge baseline on the same split. The computing lives in
//! `xtal_core::train::property`, the loop in `xtal_core::train::fit`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xtal_core::data::StructureGraphs;
use xtal_core::device::OnDevice;
use xtal_core::models::property::{PropertyModel, PropertyModelConfig};
use xtal_core::models::structure::{GraphBackbone, Readout, StructureEncoderConfig};
use xtal_core::train::property::{
    PropertyRows, PropertyStep, composition_baseline, mean_absolute_error, predict_property,
};
use xtal_core::train::seeded_init;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::{FitSettings, ModelOptimizer, Ranks, TargetScale, fit, model_from_bytes};

use crate::collective::{
    NodeArgs, NodeRanks, RankPlace, check_batch, say_done, train_on_devices, training_devices,
};
use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::plots::{self, Curves, ParityPlot};
use crate::run_dir::{Bar, Progress, RunDir, RunPaths};
use crate::tracking::TrackingArgs;

#[derive(ClapArgs, Debug)]
pub struct TrainArgs {
    /// A dataset directory written by `xtal prepare`.
    #[arg(long, short, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// The property to predict: a key of the records' `properties` (e.g. band_gap).
    #[arg(long, required_unless_present = "resume")]
    target: Option<String>,
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
    /// Continue the run in --out from its last checkpoint, with its own data, model and
    /// training settings (exactly as an uninterrupted run would have gone on).
    #[arg(long, conflicts_with_all = ["force", "data", "target", "source"])]
    resume: bool,
    /// Stop when the validation MAE has not improved for this many epochs (0: never).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    /// Stop after this epoch (continue later with --resume).
    #[arg(long, value_name = "EPOCH")]
    stop_after: Option<usize>,
    #[command(flatten)]
    tracking: TrackingArgs,
    #[command(flatten)]
    nodes: NodeArgs,
    /// Graph network: cgcnn or painn.
    #[arg(long, default_value = "cgcnn")]
    backbone: GraphBackbone,
    /// mean or attention.
    #[arg(long, default_value = "mean")]
    readout: Readout,
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
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N]. Several of one backend (cuda:0,cuda:1) train data-parallel, one rank per device.
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
    /// Epochs, batch, learning rate, seed and early stopping (a resume continues with them).
    #[serde(default)]
    pub training: TrainingSpec,
}

impl RunPaths for PropertyRunInfo {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.data.paths_mut()
    }
}

impl PropertyRunInfo {
    pub fn load(run: &RunDir) -> anyhow::Result<Self> {
        run.read_run_json("property")
    }
}

/// The records of `data` with a finite `target` (and `source`), as graphs with a split.
pub(crate) fn property_rows(
    data: &DataSource,
    target: &str,
    source: Option<&str>,
    encoder: &StructureEncoderConfig,
) -> anyhow::Result<(PropertyRows, usize)> {
    let path = &data.jsonl;
    let records = data.json_records()?;
    let table = data.element_table()?;
    // The rows with a target, and the structure each reads.
    let (mut ids, mut graph_indices, mut targets, mut is_val) = (vec![], vec![], vec![], vec![]);
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
        ids.push(r["id"].as_str().unwrap_or("").to_string());
        graph_indices.push(
            r.get("graph_index")
                .and_then(Value::as_u64)
                .map(|k| k as usize),
        );
        targets.push(y);
        is_val.push(r.get("split").and_then(Value::as_str) == Some("val"));
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
    let (found, store) = data.graph_rows(&graph_indices, &encoder.graph, &table)?;
    let kept: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_ok()).collect();
    unusable += found.len() - kept.len();
    let rows = PropertyRows {
        ids: kept.iter().map(|&i| ids[i].clone()).collect(),
        graphs: StructureGraphs::new(
            store,
            kept.iter().filter_map(|&i| found[i].clone().ok()).collect(),
        ),
        targets: kept.iter().map(|&i| targets[i]).collect(),
        is_val: kept.iter().map(|&i| is_val[i]).collect(),
        table,
    };
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

/// A new run's description from the arguments, with its rows and the count of structures
/// without a usable graph. The `lead` process (rank 0, or the only one) also creates the
/// run directory, adopts the data's element table and writes `run.json`.
fn new_run(
    args: &TrainArgs,
    run: &RunDir,
    lead: bool,
) -> anyhow::Result<(PropertyRunInfo, PropertyRows, usize)> {
    let (Some(data), Some(target)) = (&args.data, &args.target) else {
        return Err(BadInput("--data and --target are required (or --resume)".into()).into());
    };
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
    let mut graph = args.backbone.default_graph();
    if let Some(c) = args.cutoff {
        if !(c.is_finite() && (1.0..=20.0).contains(&c)) {
            return Err(BadInput("--cutoff must be between 1 and 20 Å".into()).into());
        }
        graph.cutoff = c;
    }
    let config = PropertyModelConfig::new(
        StructureEncoderConfig::new(args.backbone, graph)
            .with_hidden(args.width)
            .with_layers(args.layers)
            .with_readout(args.readout)
            .with_output_dim(args.embedding_dim),
    );
    let data = DataSource::new(data, None)?;
    let (rows, unusable) = property_rows(&data, target, args.source.as_deref(), &config.encoder)?;
    if lead {
        run.create(args.force, " or --resume to continue it")?;
    }
    // The best checkpoint is the epoch of the lowest validation MAE.
    let training = TrainingSpec {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        seed: args.seed,
        weight_decay: 1e-4,
        early_stopping: args.patience > 0,
        early_stopping_patience: args.patience.max(1),
        early_stopping_metric: "val_mae".into(),
        ..TrainingSpec::default()
    };
    let info = PropertyRunInfo {
        family: "property".into(),
        data: if lead {
            data.adopted_by(&run.path)?
        } else {
            data
        },
        target: target.clone(),
        source: args.source.clone(),
        model: config,
        scale: rows.scale(),
        training,
    };
    if lead {
        run.write_info("run.json", &info)?;
    }
    Ok((info, rows, unusable))
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    if !(args.baseline_alpha.is_finite() && args.baseline_alpha > 0.0) {
        return Err(BadInput(format!(
            "--baseline-alpha {}: must be positive",
            args.baseline_alpha
        ))
        .into());
    }
    let run = RunDir::new(&args.out);
    let devices = training_devices(&args.device)?;
    let (nodes, lead) =
        args.nodes
            .plan_for_batch(args.batch_size, "--batch-size", devices.len())?;
    let (info, rows, unusable) = if args.resume {
        let info = PropertyRunInfo::load(&run)?;
        let (rows, unusable) = property_rows(
            &info.data,
            &info.target,
            info.source.as_deref(),
            &info.model.encoder,
        )?;
        (info, rows, unusable)
    } else {
        new_run(&args, &run, lead)?
    };
    if args.resume {
        check_batch(
            nodes.as_ref(),
            devices.len(),
            info.training.batch_size,
            "the run's batch size",
        )?;
    }
    let run = if lead {
        run.track(&args.tracking, &serde_json::to_value(&info)?, args.resume)?
    } else {
        run
    };
    let n_val = rows.indices(true).len();
    eprintln!(
        "data: {} structures with {} ({} train, {n_val} validation); {unusable} without a usable graph",
        rows.len(),
        info.target,
        rows.len() - n_val,
    );
    let scale = info.scale;
    let backbone = info.model.encoder.backbone;
    let outcome = train_on_devices(&devices, nodes.as_ref(), |place| TrainProperty {
        info: &info,
        rows: &rows,
        run: &run,
        resume: args.resume,
        stop_after: args.stop_after,
        place,
    })?;
    let Some(outcome) = outcome else {
        say_done(nodes.as_ref(), "");
        return Ok(());
    };

    let val = rows.indices(true);
    let truth: Vec<f64> = val.iter().map(|&i| rows.targets[i]).collect();
    let baseline = composition_baseline(&rows, args.baseline_alpha, &val)?;
    let model_mae = mean_absolute_error(&outcome.predictions, &truth);
    let baseline_mae = mean_absolute_error(&baseline, &truth);
    let mean_mae = mean_absolute_error(&vec![scale.mean; truth.len()], &truth);
    run.write_json(
        "summary.json",
        &json!({
            "target": info.target, "source": info.source,
            "train": rows.len() - val.len(), "validation": val.len(),
            "best_epoch": outcome.best_epoch,
            "validation_mae": model_mae,
            "composition_baseline_mae": baseline_mae,
            "predict_training_mean_mae": mean_mae,
            "parameters": outcome.parameters,
            "seconds": outcome.seconds,
            "graphs_per_second": outcome.graphs_per_second,
            "device": args.device,
        }),
    )?;
    let dir = run.plots();
    let parity = |pred: &[f64]| truth.iter().copied().zip(pred.iter().copied()).collect();
    plots::save(
        &ParityPlot {
            title: format!("{} on {} held-out structures", info.target, val.len()),
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
            title: format!("{}: validation MAE per epoch", info.target),
            x_label: "epoch".into(),
            y_label: format!("MAE ({})", info.target),
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
        info.target,
        val.len(),
        backbone,
        outcome.best_epoch
    );
    run.finish_tracking()?;
    eprintln!("run: {} (plots in {})", run.path.display(), dir.display());
    Ok(())
}

struct TrainProperty<'a> {
    info: &'a PropertyRunInfo,
    rows: &'a PropertyRows,
    run: &'a RunDir,
    resume: bool,
    stop_after: Option<usize>,
    place: RankPlace<'a>,
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
    /// `None` on ranks other than 0, which write and report nothing.
    type Output = anyhow::Result<Option<PropertyOutcome>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let training = &self.info.training;
        let train_idx = self.rows.indices(false);
        let val_idx = self.rows.indices(true);
        let ranks = NodeRanks::join::<B::InnerBackend>(self.place, device.clone())?;
        let model: PropertyModel<B> =
            seeded_init(&device, training.seed, |d| self.info.model.init(d));
        let parameters = model.num_params();
        let settings = training.optimizer_settings(training.learning_rate, train_idx.len());
        let optimizer =
            |m: PropertyModel<B>| (m, ModelOptimizer::<B, PropertyModel<B>>::new(settings, []));
        let (model, mut optimizer, state) =
            self.run
                .start(self.resume, "", model, &device, training, optimizer)?;
        let step = PropertyStep::<B> {
            rows: self.rows,
            scale: self.info.scale,
            val: &val_idx,
            batch_size: training.batch_size,
            device: device.clone(),
        };
        let std = self.info.scale.std;
        let mut progress = Progress::new("epoch", Bar::Batches, training, |end| {
            let l = |k: &str| end.line[k].as_f64().unwrap_or(f64::NAN);
            format!(
                "epoch {}/{}: train MAE {:.4}, validation MAE {:.4}",
                end.epoch,
                end.epochs,
                l("train_loss") * std,
                l("val_mae")
            )
        });
        let (started, mut store) = (Instant::now(), self.run);
        let fitted = fit::<_, _, _, _, anyhow::Error, _>(
            &step,
            model,
            &mut optimizer,
            FitSettings {
                training,
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
        let lead = ranks.rank() == 0;
        ranks.finish()?;
        if !lead {
            return Ok(None);
        }
        let best_epoch = fitted
            .state
            .early_stopping
            .as_ref()
            .and_then(|e| e.best_epoch)
            .unwrap_or(0);
        let c = self.run.load_checkpoint("best")?;
        let best: PropertyModel<B::InnerBackend> =
            model_from_bytes(self.info.model.init(&device), c.model, &device)?;
        let predictions = predict_property(
            &best,
            self.rows,
            &val_idx,
            training.batch_size,
            self.info.scale,
            &device,
        )?;
        let curve = self.run.epoch_curve("val_mae");
        let seen = fitted.items_seen;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Some(PropertyOutcome {
            predictions,
            best_epoch,
            curve,
            parameters,
            seconds,
            graphs_per_second: seen as f64 / seconds.max(1e-9),
        }))
    }
}
