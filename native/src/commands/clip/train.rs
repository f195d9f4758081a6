//! `xtal train clip`: the data, the model (a HuggingFace text side loaded from its folder) and
//! the shared training loop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde_json::json;
use xtal_core::data::{FeatureScaler, PairSet};
use xtal_core::device::OnDevice;
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::{ClipEvaluation, ClipStep, embed_pairs, evaluate_clip};
use xtal_core::train::seeded_init;
use xtal_core::train::spec::RunSpec;
use xtal_core::train::trainable::{set_trainable, trainable_parameters};
use xtal_core::train::{
    EpochEnd, FitSettings, ModelOptimizer, Ranks, TrainState, fit, model_from_bytes, to_host,
};

use super::eval::print_retrieval;
use super::plots::{embedding_plots, plotted_subset, write_all_plots};
use super::run::{SpecOverrides, check_structure_dim};
use crate::collective::{
    NodeArgs, NodeRanks, RankPlace, say_done, train_on_devices, training_devices,
};
use crate::data::pairs::{DataReport, DataSource};
use crate::exit::BadInput;
use crate::run_dir::{Bar, Progress, RunDir, RunInfo};
use crate::tracking::TrackingArgs;

#[derive(ClapArgs, Debug)]
pub struct TrainArgs {
    /// JSON configuration with `model` and `training` sections (the original run_spec.json
    /// keys are accepted; unknown keys are an error). Defaults apply without one.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Dataset directory (with dataset.jsonl) or a .jsonl file.
    #[arg(long, short)]
    data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings (default: graph_emb/ beside the JSONL).
    #[arg(long)]
    graph_emb_dir: Option<PathBuf>,
    /// Run directory to create.
    #[arg(long, short)]
    out: PathBuf,
    /// Device: cpu, cpu:ndarray, wgpu[:N], cuda[:N] (default: training.device, else cpu).
    /// Several of one backend (cuda:0,cuda:1) train data-parallel, one rank per device.
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    overrides: SpecOverrides,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this epoch (continue later with --resume).
    #[arg(long, value_name = "EPOCH")]
    stop_after: Option<usize>,
    /// Replace an existing run directory.
    #[arg(long)]
    force: bool,
    /// No plots at the end (they are made by `xtal visualize` later).
    #[arg(long)]
    no_plots: bool,
    #[command(flatten)]
    tracking: TrackingArgs,
    #[command(flatten)]
    nodes: NodeArgs,
}

fn spec_from(args: &TrainArgs, run: &RunDir) -> anyhow::Result<RunSpec> {
    let overrides = args.overrides.list();
    let (text, name) = match (&args.config, args.resume) {
        (_, true) => {
            let p = run.file("config.json");
            (
                std::fs::read_to_string(&p)
                    .map_err(|e| BadInput(format!("{}: cannot resume ({e})", p.display())))?,
                p,
            )
        }
        (Some(p), false) => (
            std::fs::read_to_string(p)
                .map_err(|e| BadInput(format!("{}: cannot read ({e})", p.display())))?,
            p.clone(),
        ),
        (None, false) => (String::new(), PathBuf::from("(defaults)")),
    };
    crate::commands::run_spec(&text, &name.display().to_string(), &overrides)
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.out);
    let spec = spec_from(&args, &run)?;
    let resumed = if args.resume {
        if args.data.is_some() {
            return Err(
                BadInput("--resume continues on the run's own data; drop --data".into()).into(),
            );
        }
        Some(run.info()?)
    } else {
        None
    };
    let source = if let Some(info) = &resumed {
        info.data.clone()
    } else {
        let data = args
            .data
            .as_deref()
            .or(spec.data_dir.as_deref().map(Path::new))
            .ok_or_else(|| BadInput("--data is required".into()))?;
        DataSource::new(data, args.graph_emb_dir.as_deref())?
    };
    let device_text = args
        .device
        .clone()
        .or(spec.training.device.clone())
        .unwrap_or_else(|| "cpu".into());
    let devices = training_devices(&device_text)?;
    let (nodes, lead) = args.nodes.plan_for_batch(
        spec.training.batch_size,
        "training.batch_size",
        devices.len(),
    )?;

    let t = &spec.training;
    let graph = spec.model.graph_encoder().map(|g| g.graph);
    let mut set = source.load(t.val_split, t.val_seed, graph.as_ref())?;
    let scaler = match resumed {
        Some(info) => {
            check_structure_dim(&source, &set, &info.model)?;
            info.scaler
        }
        None => FeatureScaler::fit(&set),
    };
    scaler.apply(&mut set);
    let report = DataReport::new(&source, &set);
    eprintln!("data: {}", report.line());
    if t.use_validation && report.validation < 2 {
        return Err(BadInput(format!(
            "{}: only {} validation pairs; retrieval needs at least 2",
            source.jsonl.display(),
            report.validation
        ))
        .into());
    }
    if report.train < 2 {
        return Err(BadInput(format!(
            "{}: fewer than 2 training pairs",
            source.jsonl.display()
        ))
        .into());
    }
    let mut config = spec.clip_config(set.feature_dim);
    config.text.huggingface = crate::commands::text_model::hf_text_config(&spec)?;

    let run = if lead {
        if !args.resume {
            run.create(args.force, " or --resume to continue it")?;
        }
        let source = source.adopted_by(&run.path)?;
        run.write_json("config.json", &spec)?;
        run.write_info(
            "run.json",
            &RunInfo {
                family: "clip".into(),
                data: source.clone(),
                model: config.clone(),
                scaler: scaler.clone(),
            },
        )?;
        run.write_json("data_report.json", &report)?;
        run.track(&args.tracking, &serde_json::to_value(&spec)?, args.resume)?
    } else {
        run
    };

    let outcome = train_on_devices(&devices, nodes.as_ref(), |place| TrainTask {
        spec: &spec,
        config: &config,
        set: &set,
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

    if let Some(eval) = &outcome.validation {
        let texts = set.texts.count(&set.indices(true));
        print_retrieval(eval, outcome.best_epoch, texts);
    }
    run.write_json(
        "summary.json",
        &json!({
            "epochs_completed": outcome.state.epoch,
            "optimizer_steps": outcome.state.step,
            "stopped_early": outcome.state.stopped,
            "best_epoch": outcome.best_epoch,
            "early_stopping": outcome.state.early_stopping,
            "validation": outcome.validation,
            "pairs": {"train": report.train, "validation": report.validation,
                      "skipped_lines": report.skipped_lines, "missing_structure": report.missing_structure},
            "device": device_text,
            "seconds": outcome.seconds,
            "pairs_per_second": outcome.pairs_per_second,
        }),
    )?;
    if !args.no_plots {
        let written = write_all_plots(
            &run,
            &config,
            &set,
            &spec,
            &devices[0],
            "best",
            &run.plots(),
        )?;
        eprintln!("plots: {} files in {}", written, run.plots().display());
    }
    run.finish_tracking()?;
    eprintln!("run: {}", run.path.display());
    Ok(())
}

struct TrainTask<'a> {
    spec: &'a RunSpec,
    config: &'a ClipConfig,
    set: &'a PairSet,
    run: &'a RunDir,
    resume: bool,
    stop_after: Option<usize>,
    place: RankPlace<'a>,
}

struct TrainOutcome {
    state: TrainState,
    best_epoch: Option<usize>,
    validation: Option<ClipEvaluation>,
    seconds: f64,
    pairs_per_second: f64,
}

impl OnDevice for TrainTask<'_> {
    type Output = anyhow::Result<TrainOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let t = &self.spec.training;
        let tokenizer = crate::commands::text_model::tokenize(self.config, self.set)?;
        let train_idx = self.set.indices(false);
        let val_idx = if t.use_validation {
            self.set.indices(true)
        } else {
            Vec::new()
        };
        let settings = t.optimizer_settings(t.learning_rate, train_idx.len());
        let ranks = NodeRanks::join::<B::InnerBackend>(self.place, device.clone())?;
        let lead = ranks.rank() == 0;
        let model: Clip<B> = seeded_init(&device, t.seed, |d| self.config.init(d));
        // After loading: parameter ids come from the checkpoint, and the temperature must be
        // recognised by its id to stay exempt from weight decay.
        let prepare = |model: Clip<B>| {
            let model_size = model.num_params();
            let model = set_trainable(model, |path| self.config.trains(path));
            if self.config.text.huggingface.is_some() {
                eprintln!(
                    "trainable: {} of {model_size} parameters",
                    trainable_parameters(&model)
                );
            }
            let optimizer = ModelOptimizer::<B, Clip<B>>::new(settings, [model.logit_scale.id]);
            (model, optimizer)
        };
        let (model, mut optimizer, state) = if self.resume {
            let resumed = self.run.resume(model, &device, prepare)?;
            eprintln!(
                "resuming after epoch {} (step {})",
                resumed.2.epoch, resumed.2.step
            );
            resumed
        } else {
            let model = match &self.config.text.huggingface {
                Some(hf) => {
                    let pretrained = crate::commands::text_model::load_folder::<B>(
                        Path::new(&hf.model),
                        self.config.text.max_len,
                        &device,
                    )?;
                    model.with_text_backbone(pretrained.encoder)
                }
                None => model,
            };
            let (model, optimizer) = prepare(model);
            (model, optimizer, t.fresh_state())
        };
        let step = ClipStep::<B> {
            set: self.set,
            tokens: &tokenizer,
            text_seed: t.seed,
            val: &val_idx,
            batch_size: t.batch_size,
            device: device.clone(),
        };
        let chance_r10 = (10.0 / val_idx.len().max(1) as f64).min(1.0);
        let summary = |end: &EpochEnd| {
            let l = |k: &str| end.line[k].as_f64().unwrap_or(f64::NAN);
            let mut s = format!(
                "epoch {}/{}: train loss {:.4}",
                end.epoch,
                end.epochs,
                l("train_loss")
            );
            if !val_idx.is_empty() {
                s += &format!(
                    ", val loss {:.4}, R@1 {:.3}/{:.3}, R@10 {:.3}/{:.3} (s→t / t→s; chance R@10 {chance_r10:.3})",
                    l("val_loss"),
                    l("val_r1_g2t"),
                    l("val_r1_t2g"),
                    l("val_r10_g2t"),
                    l("val_r10_t2g"),
                );
            }
            s
        };
        let mut progress = Progress::new("epoch", Bar::Batches, t, summary);
        if !val_idx.is_empty() {
            progress = progress.with_line("val_pairs", json!(val_idx.len()));
            if self.set.texts.has_several() {
                let texts = self.set.texts.count(&val_idx);
                progress = progress.with_line("val_texts", json!(texts));
            }
        }
        let mut progress = progress.after_epoch(|end: &EpochEnd, valid: &Clip<B::InnerBackend>| {
            if !(t.visualize_during_training
                && end.epoch.is_multiple_of(t.visualize_interval.max(1))
                && !val_idx.is_empty())
            {
                return Ok(());
            }
            let (s, txt) = embed_pairs(
                valid,
                self.set,
                &plotted_subset(&val_idx, self.spec, t.visualize_n_samples),
                &tokenizer,
                self.spec.visualization.similarity_batch_size,
                &device,
            );
            let (s, txt) = (to_host(s)?, to_host(txt)?);
            let dir = self.run.plots().join(format!("epoch_{:03}", end.epoch));
            embedding_plots(
                &s,
                &txt,
                self.config.text.embed_dim,
                self.spec,
                &dir,
                &format!("epoch {}", end.epoch),
            )?;
            Ok(())
        });
        let (started, mut store) = (Instant::now(), self.run);
        let fitted = fit::<_, _, _, _, anyhow::Error, _>(
            &step,
            model,
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
        let seconds = started.elapsed().as_secs_f64();
        // Report the best checkpoint's validation figures (the last epoch's without one).
        let best_epoch = fitted
            .state
            .early_stopping
            .as_ref()
            .and_then(|e| e.best_epoch);
        let validation = if val_idx.is_empty() || !lead {
            None
        } else if best_epoch.is_some() {
            let c = self.run.load_checkpoint("best")?;
            let best: Clip<B::InnerBackend> =
                model_from_bytes(self.config.init(&device), c.model, &device)?;
            Some(evaluate_clip(
                &best,
                self.set,
                &val_idx,
                &tokenizer,
                t.batch_size,
                &device,
            )?)
        } else {
            Some(evaluate_clip(
                &fitted.model.valid(),
                self.set,
                &val_idx,
                &tokenizer,
                t.batch_size,
                &device,
            )?)
        };
        Ok(TrainOutcome {
            state: fitted.state,
            best_epoch,
            validation,
            seconds,
            pairs_per_second: fitted.items_seen as f64 / seconds.max(1e-9),
        })
    }
}
