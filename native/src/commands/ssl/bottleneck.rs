//! `xtal ssl bottleneck`: an autoencoder from the 2048-D features to K dimensions.

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde_json::json;
use xtal_core::data::validation_mask;
use xtal_core::device::OnDevice;
use xtal_core::models::ftcp_ssl::bottleneck::{Bottleneck, BottleneckConfig};
use xtal_core::train::seeded_init;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::ssl::BottleneckStep;
use xtal_core::train::{FitSettings, ModelOptimizer, Ranks, fit, model_from_bytes, to_host};

use super::run_info::{ids_path, write_ids};
use crate::collective::{
    NodeArgs, NodeRanks, RankPlace, say_done, train_on_devices, training_devices,
};
use crate::data::mapped::NpyTensors;
use crate::exit::BadInput;
use crate::output::write_npy;
use crate::plots::{self, Curves};
use crate::run_dir::{Bar, Progress, RunDir};
use crate::tracking::TrackingArgs;

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
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N]. Several of one backend (cuda:0,cuda:1) train data-parallel, one rank per device.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    tracking: TrackingArgs,
    #[command(flatten)]
    nodes: NodeArgs,
}

pub fn bottleneck(args: BottleneckArgs) -> anyhow::Result<()> {
    // Mapped, not loaded: rows are standardised as batches read them.
    let npy = NpyTensors::open(&args.features)?;
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
    let data = npy.values();
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
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
            xtal_core::train::TargetScale::fit(train.iter().map(|&i| data[i * d + c] as f64));
        (mean[c], std[c]) = (scale.mean, scale.std);
    }
    let devices = training_devices(&args.device)?;
    let (nodes, lead) =
        args.nodes
            .plan_for_batch(args.batch_size, "--batch-size", devices.len())?;
    let run = RunDir::new(&args.out);
    let run = if lead {
        run.create(args.force, "")?;
        let params = json!({"features": args.features, "dim": args.dim, "epochs": args.epochs,
                            "batch_size": args.batch_size, "lr": args.lr,
                            "val_fraction": args.val_fraction, "seed": args.seed});
        run.track(&args.tracking, &params, false)?
    } else {
        run
    };
    let config = BottleneckConfig::new(args.dim).with_input_dim(d);
    let trained = train_on_devices(&devices, nodes.as_ref(), |place| TrainBottleneck {
        args: &args,
        config: &config,
        x: data,
        d,
        mean: &mean,
        std: &std,
        is_val: &is_val,
        run: &run,
        place,
    })?;
    let Some((codes, best)) = trained else {
        say_done(nodes.as_ref(), "");
        return Ok(());
    };
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
    run.finish_tracking()
}

struct TrainBottleneck<'a> {
    args: &'a BottleneckArgs,
    config: &'a BottleneckConfig,
    x: &'a [f32],
    d: usize,
    mean: &'a [f64],
    std: &'a [f64],
    is_val: &'a [bool],
    run: &'a RunDir,
    place: RankPlace<'a>,
}

impl OnDevice for TrainBottleneck<'_> {
    /// The codes of every row and the best validation MSE; `None` on ranks other than 0.
    type Output = anyhow::Result<Option<(Vec<f32>, f64)>>;

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
        let step = BottleneckStep::<B> {
            x: self.x,
            d: self.d,
            mean: self.mean,
            std: self.std,
            val: &val_idx,
            device: device.clone(),
        };
        let ranks = NodeRanks::join::<B::InnerBackend>(self.place, device.clone())?;
        let model: Bottleneck<B> = seeded_init(&device, a.seed, |d| self.config.init(d));
        let mut optimizer = ModelOptimizer::<B, Bottleneck<B>>::new(
            training.optimizer_settings(a.lr, train_idx.len()),
            [],
        );
        let mut progress = Progress::new("bottleneck", Bar::Batches, &training, |end| {
            format!(
                "epoch {}/{}: validation MSE {:.4}",
                end.epoch,
                end.epochs,
                end.line["val_loss"].as_f64().unwrap_or(f64::NAN)
            )
        });
        let mut store = self.run;
        let fitted = fit::<_, _, _, _, anyhow::Error, _>(
            &step,
            model,
            &mut optimizer,
            FitSettings {
                training: &training,
                train: &train_idx,
                state: training.fresh_state(),
                stop_after: None,
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
        let state = fitted.state;
        let curve = self.run.epoch_curve("val_loss");
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
            codes.extend(to_host(best.encode(step.rows(chunk)))?);
        }
        Ok(Some((codes, best_val)))
    }
}
