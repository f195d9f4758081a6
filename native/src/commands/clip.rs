//! `xtal train clip`, `xtal eval clip`, `xtal visualize`: structure–text CLIP from the CLI.
//! Everything that computes lives in `xtal_core::train::clip`; this file reads and writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde_json::{Value, json};
use xtal_core::data::{FeatureScaler, PairSet, epoch_batches};
use xtal_core::device::{DeviceSpec, OnDevice, run_on};
use xtal_core::metrics::retrieval_metrics;
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::{ClipEvaluation, embed_pairs, evaluate_clip, train_clip_epoch};
use xtal_core::train::spec::RunSpec;
use xtal_core::train::trainable::{set_trainable, trainable_parameters};
use xtal_core::train::{ModelOptimizer, TrainState, model_from_bytes, to_host};
use xtal_core::viz::{TsneConfig, tsne};

use crate::clip_data::{DataReport, DataSource};
use crate::exit::BadInput;
use crate::plots::{self, CosineHistogram, Curves, Heatmap, PairMap};
use crate::run_dir::{EpochSteps, RunDir, RunInfo};

/// `--set section.key=value` and the training shorthands, shared by every `train` command.
#[derive(ClapArgs, Debug)]
pub struct SpecOverrides {
    /// Configuration override, `section.key=value` (repeatable), e.g. training.epochs=5.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Shorthand for --set training.epochs=N.
    #[arg(long)]
    epochs: Option<usize>,
    /// Shorthand for --set training.batch_size=N.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Shorthand for --set training.learning_rate=X.
    #[arg(long)]
    lr: Option<f64>,
    /// Shorthand for --set training.seed=N.
    #[arg(long)]
    seed: Option<u64>,
}

impl SpecOverrides {
    /// All overrides as `section.key=value`, shorthands last (they win).
    pub fn list(&self) -> Vec<String> {
        let mut all = self.overrides.clone();
        let short = [
            ("epochs", self.epochs.map(|v| v.to_string())),
            ("batch_size", self.batch_size.map(|v| v.to_string())),
            ("learning_rate", self.lr.map(|v| v.to_string())),
            ("seed", self.seed.map(|v| v.to_string())),
        ];
        for (key, v) in short {
            if let Some(v) = v {
                all.push(format!("training.{key}={v}"));
            }
        }
        all
    }
}

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
}

/// Which run, checkpoint, data and device `eval` and `visualize` use.
#[derive(ClapArgs, Debug)]
pub struct RunArgs {
    /// Run directory of `xtal train clip`.
    #[arg(long)]
    run: PathBuf,
    /// Use another dataset (same structure representation) instead of the run's.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings for --data (original layout).
    #[arg(long)]
    graph_emb_dir: Option<PathBuf>,
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    checkpoint: String,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(ClapArgs, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Which pairs (a dataset given with --data defaults to all, the run's own to val).
    #[arg(long, value_parser = ["val", "train", "all"])]
    split: Option<String>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs, Debug)]
pub struct VisualizeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output directory (default: RUN/plots).
    #[arg(long)]
    out: Option<PathBuf>,
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
    RunSpec::from_json(&text, &name.display().to_string(), &overrides)
        .map_err(|e| BadInput(e.to_string()).into())
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
    let device = super::one_device(&device_text)?;

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
    config.text.huggingface = super::text_model::hf_text_config(&spec)?;

    if !args.resume {
        run.create(args.force, " or --resume to continue it")?;
    }
    run.write_json("config.json", &spec)?;
    run.write_json(
        "run.json",
        &RunInfo {
            family: "clip".into(),
            data: source.clone(),
            model: config.clone(),
            scaler: scaler.clone(),
        },
    )?;
    run.write_json("data_report.json", &report)?;

    let outcome = run_on(
        &device,
        TrainTask {
            spec: &spec,
            config: &config,
            set: &set,
            run: &run,
            resume: args.resume,
            stop_after: args.stop_after,
        },
    )??;

    if let Some(eval) = &outcome.validation {
        print_retrieval(eval, outcome.best_epoch);
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
            "device": device.to_string(),
            "seconds": outcome.seconds,
            "pairs_per_second": outcome.pairs_per_second,
        }),
    )?;
    if !args.no_plots {
        let written = write_all_plots(&run, &config, &set, &spec, &device, "best", &run.plots())?;
        eprintln!("plots: {} files in {}", written, run.plots().display());
    }
    eprintln!("run: {}", run.path.display());
    Ok(())
}

fn print_retrieval(e: &ClipEvaluation, best_epoch: Option<usize>) {
    let r = &e.retrieval;
    let chance1 = 1.0 / r.n as f64;
    let chance10 = (10.0 / r.n as f64).min(1.0);
    println!(
        "validation ({} pairs{}):",
        r.n,
        best_epoch.map_or(String::new(), |b| format!(", best epoch {b}"))
    );
    for (name, d) in [
        ("structure → text", &r.structure_to_text),
        ("text → structure", &r.text_to_structure),
    ] {
        println!(
            "  {name}: Recall@1 {:.3} (chance {:.3})  Recall@10 {:.3} (chance {:.3})  MRR {:.3}  median rank {}",
            d.recall_at_1, chance1, d.recall_at_10, chance10, d.mrr, d.median_rank
        );
    }
    println!(
        "  matched cosine {:.3} ± {:.3}, unmatched {:.3} ± {:.3}; loss {:.4}",
        r.matched_cosine_mean,
        r.matched_cosine_std,
        r.unmatched_cosine_mean,
        r.unmatched_cosine_std,
        e.loss
    );
}

/// Per-epoch metric names (see `TRACKED_METRICS`) of an evaluation.
fn metric_map(e: &ClipEvaluation) -> Vec<(&'static str, f64)> {
    let r = &e.retrieval;
    let (g, t) = (&r.structure_to_text, &r.text_to_structure);
    vec![
        ("val_loss", e.loss),
        ("val_acc_g2t", e.acc_g2t),
        ("val_acc_t2g", e.acc_t2g),
        ("val_r1_g2t", g.recall_at_1),
        ("val_r5_g2t", g.recall_at_5),
        ("val_r10_g2t", g.recall_at_10),
        ("val_mrr_g2t", g.mrr),
        ("val_median_rank_g2t", g.median_rank),
        ("val_r1_t2g", t.recall_at_1),
        ("val_r5_t2g", t.recall_at_5),
        ("val_r10_t2g", t.recall_at_10),
        ("val_mrr_t2g", t.mrr),
        ("val_median_rank_t2g", t.median_rank),
        ("val_matched_cosine", r.matched_cosine_mean),
        ("val_logit_scale", e.logit_scale),
    ]
}

struct TrainTask<'a> {
    spec: &'a RunSpec,
    config: &'a ClipConfig,
    set: &'a PairSet,
    run: &'a RunDir,
    resume: bool,
    stop_after: Option<usize>,
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
        let tokenizer = super::text_model::tokenize(self.config, self.set)?;
        let train_idx = self.set.indices(false);
        let val_idx = if t.use_validation {
            self.set.indices(true)
        } else {
            Vec::new()
        };
        let settings = t.optimizer_settings(t.learning_rate, train_idx.len());
        B::seed(&device, t.seed);
        let mut model: Clip<B> = self.config.init(&device);
        let mut state = t.fresh_state();
        let checkpoint = if self.resume {
            let c = self.run.load_checkpoint("last")?;
            model = model_from_bytes(model, c.model, &device).map_err(|e| {
                BadInput(format!(
                    "{}: {e}",
                    self.run.checkpoint_path("last").display()
                ))
            })?;
            Some((c.optimizer, c.state))
        } else {
            if let Some(hf) = &self.config.text.huggingface {
                let pretrained = super::text_model::load_folder::<B>(
                    Path::new(&hf.model),
                    self.config.text.max_len,
                    &device,
                )?;
                model = model.with_text_backbone(pretrained.encoder);
            }
            None
        };
        let model_size = model.num_params();
        model = set_trainable(model, |path| self.config.trains(path));
        if self.config.text.huggingface.is_some() {
            eprintln!(
                "trainable: {} of {model_size} parameters",
                trainable_parameters(&model)
            );
        }
        // After loading: parameter ids come from the checkpoint, and the temperature must be
        // recognised by its id to stay exempt from weight decay.
        let mut optimizer = ModelOptimizer::<B, Clip<B>>::new(settings, [model.logit_scale.id]);
        if let Some((optimizer_bytes, saved_state)) = checkpoint {
            optimizer = optimizer
                .load_bytes(optimizer_bytes, &device)
                .map_err(|e| {
                    BadInput(format!(
                        "{}: {e}",
                        self.run.checkpoint_path("last").display()
                    ))
                })?;
            state = saved_state;
            self.run.truncate_metrics(state.epoch)?;
            eprintln!("resuming after epoch {} (step {})", state.epoch, state.step);
        }
        let mut log = self.run.metrics_log()?;
        let started = Instant::now();
        let mut pairs_seen = 0usize;
        let mut last_eval = None;
        let first = state.epoch + 1;
        for epoch in first..=t.epochs {
            if state.stopped {
                break;
            }
            // Dropout draws from the backend generator: re-seed it per epoch so a resumed
            // run sees the same stream.
            B::seed(&device, t.seed.wrapping_add(epoch as u64));
            let batches = epoch_batches(&train_idx, t.batch_size, t.seed, epoch);
            let bar =
                crate::run_dir::epoch_bar("epoch", batches.len(), format!("{epoch}/{}", t.epochs));
            let mut steps = EpochSteps::new(epoch, optimizer.step, t, batches.len());
            let epoch_start = Instant::now();
            model = train_clip_epoch(
                model,
                &mut optimizer,
                self.set,
                &batches,
                &tokenizer,
                &device,
                |loss, lr| {
                    let loss = loss.into_scalar().elem::<f64>();
                    steps.record(loss, lr);
                    bar.inc(1);
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
                },
            );
            bar.finish_and_clear();
            pairs_seen += batches.iter().map(Vec::len).sum::<usize>();
            let train_loss = steps.mean_loss();
            let mut line = json!({
                "kind": "epoch", "epoch": epoch, "step": optimizer.step,
                "train_loss": train_loss, "lr": optimizer.lr(),
                "seconds": epoch_start.elapsed().as_secs_f64(),
            });
            let mut summary = format!("epoch {epoch}/{}: train loss {train_loss:.4}", t.epochs);
            if !val_idx.is_empty() {
                let evaluating = Instant::now();
                let eval = evaluate_clip::<B::InnerBackend>(
                    &model.valid(),
                    self.set,
                    &val_idx,
                    &tokenizer,
                    t.batch_size,
                    &device,
                );
                tracing::info!("validation in {:.2} s", evaluating.elapsed().as_secs_f64());
                line["val_pairs"] = json!(val_idx.len());
                for (k, v) in metric_map(&eval) {
                    line[k] = json!(v);
                }
                summary += &format!(
                    ", val loss {:.4}, R@1 {:.3}/{:.3}, R@10 {:.3}/{:.3} (s→t / t→s; chance R@10 {:.3})",
                    eval.loss,
                    eval.retrieval.structure_to_text.recall_at_1,
                    eval.retrieval.text_to_structure.recall_at_1,
                    eval.retrieval.structure_to_text.recall_at_10,
                    eval.retrieval.text_to_structure.recall_at_10,
                    eval.retrieval.structure_to_text.chance_recall_at_10
                );
                last_eval = Some(eval);
            }
            let improved = self
                .run
                .end_epoch(&mut log, t, &mut state, steps, line, &model, &optimizer)?;
            eprintln!("{summary}{}", if improved { "  *best" } else { "" });
            if t.visualize_during_training
                && epoch % t.visualize_interval.max(1) == 0
                && !val_idx.is_empty()
            {
                let (s, txt) = embed_pairs(
                    &model.valid(),
                    self.set,
                    &plotted_subset(&val_idx, self.spec),
                    &tokenizer,
                    self.spec.visualization.similarity_batch_size,
                    &device,
                );
                let (s, txt) = (to_host(s), to_host(txt));
                let dir = self.run.plots().join(format!("epoch_{epoch:03}"));
                embedding_plots(
                    &s,
                    &txt,
                    self.config.text.embed_dim,
                    self.spec,
                    &dir,
                    &format!("epoch {epoch}"),
                )?;
            }
            if state.stopped {
                eprintln!(
                    "early stopping: {} has not improved for {} epochs",
                    t.early_stopping_metric, t.early_stopping_patience
                );
            }
            if self.stop_after == Some(epoch) {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        // Report the best checkpoint's validation figures (the last epoch's without one).
        let best_epoch = state.early_stopping.as_ref().and_then(|e| e.best_epoch);
        let validation = if !val_idx.is_empty() && best_epoch.is_some() {
            let c = self.run.load_checkpoint("best")?;
            let best: Clip<B> = model_from_bytes(self.config.init(&device), c.model, &device)?;
            Some(evaluate_clip::<B::InnerBackend>(
                &best.valid(),
                self.set,
                &val_idx,
                &tokenizer,
                t.batch_size,
                &device,
            ))
        } else {
            last_eval
        };
        Ok(TrainOutcome {
            state,
            best_epoch,
            validation,
            seconds,
            pairs_per_second: pairs_seen as f64 / seconds.max(1e-9),
        })
    }
}

/// The items plotted: the first `n_samples_tsne` of a seeded order of `idx`.
fn plotted_subset(idx: &[usize], spec: &RunSpec) -> Vec<usize> {
    let mut order = idx.to_vec();
    xtal_core::data::seeded_shuffle(&mut order, spec.visualization.tsne_seed);
    order.truncate(spec.visualization.n_samples_tsne.max(2));
    order
}

/// t-SNE map, heatmap, histogram and `similarity_metrics.json` of paired unit embeddings.
fn embedding_plots(
    s: &[f32],
    t: &[f32],
    d: usize,
    spec: &RunSpec,
    dir: &Path,
    label: &str,
) -> anyhow::Result<usize> {
    let n = s.len() / d.max(1);
    let mut sim = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            sim[i * n + j] = (0..d).map(|k| s[i * d + k] * t[j * d + k]).sum();
        }
    }
    let metrics = retrieval_metrics(&sim, n);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(&metrics)?;
    text.push('\n');
    crate::output::write_atomic(&dir.join("similarity_metrics.json"), text.as_bytes())?;

    let v = &spec.visualization;
    let mut both = s.to_vec();
    both.extend_from_slice(t);
    let map = tsne(
        &both,
        2 * n,
        d,
        &TsneConfig {
            perplexity: v.tsne_perplexity,
            iterations: 1000,
            seed: v.tsne_seed,
        },
    );
    let mut files = plots::save(
        &PairMap {
            title: format!("t-SNE of {n} validation pairs ({label})"),
            structure: map[..n].to_vec(),
            text: map[n..].to_vec(),
            connect: v.tsne_connect_k,
        },
        dir,
        "tsne_pairs",
    )?;
    let k = v.heatmap_size.min(n);
    let mut block = Vec::with_capacity(k * k);
    for i in 0..k {
        block.extend_from_slice(&sim[i * n..i * n + k]);
    }
    files.extend(plots::save(
        &Heatmap {
            title: format!("cosine similarity, first {k} validation pairs ({label})"),
            k,
            values: block,
        },
        dir,
        "similarity_heatmap",
    )?);
    let matched: Vec<f64> = (0..n).map(|i| sim[i * n + i] as f64).collect();
    let unmatched: Vec<f64> = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| sim[i * n + j] as f64)
        .collect();
    files.extend(plots::save(
        &CosineHistogram {
            title: format!("matched vs unmatched cosine ({label})"),
            matched,
            unmatched,
            bins: 50,
        },
        dir,
        "cosine_histogram",
    )?);
    Ok(files.len())
}

/// Loss and retrieval curves from metrics.jsonl.
fn curve_plots(run: &RunDir, dir: &Path) -> anyhow::Result<usize> {
    let lines = run.read_metrics();
    let get = |kind: &str, x: &str, y: &str| -> Vec<(f64, f64)> {
        lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .filter_map(|l| Some((l[x].as_f64()?, l[y].as_f64()?)))
            .collect()
    };
    let mut loss = vec![
        (
            "train loss (steps)".to_string(),
            get("step", "epoch_progress", "loss"),
        ),
        (
            "train loss (epoch mean)".to_string(),
            get("epoch", "epoch", "train_loss"),
        ),
        (
            "validation loss".to_string(),
            get("epoch", "epoch", "val_loss"),
        ),
    ];
    loss.retain(|(_, s)| !s.is_empty());
    let mut files = plots::save(
        &Curves {
            title: "CLIP loss".into(),
            x_label: "epoch".into(),
            y_label: "symmetric cross-entropy".into(),
            series: loss,
            references: Vec::new(),
        },
        dir,
        "loss",
    )?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = [
        ("Recall@1 structure→text", "val_r1_g2t"),
        ("Recall@10 structure→text", "val_r10_g2t"),
        ("Recall@1 text→structure", "val_r1_t2g"),
        ("Recall@10 text→structure", "val_r10_t2g"),
        ("in-batch top-1 s→t", "val_acc_g2t"),
    ]
    .iter()
    .map(|(name, key)| (name.to_string(), get("epoch", "epoch", key)))
    .collect();
    series.retain(|(_, s)| !s.is_empty());
    if !series.is_empty() {
        let n = lines
            .iter()
            .rev()
            .find_map(|l| l.get("val_pairs").and_then(Value::as_f64));
        let references = n.map_or(Vec::new(), |n| {
            vec![("chance Recall@10".to_string(), (10.0 / n).min(1.0))]
        });
        files.extend(plots::save(
            &Curves {
                title: "validation retrieval".into(),
                x_label: "epoch".into(),
                y_label: "fraction".into(),
                series,
                references,
            },
            dir,
            "retrieval",
        )?);
    }
    Ok(files.len())
}

#[allow(clippy::too_many_arguments)]
fn write_all_plots(
    run: &RunDir,
    config: &ClipConfig,
    set: &PairSet,
    spec: &RunSpec,
    device: &DeviceSpec,
    checkpoint: &str,
    dir: &Path,
) -> anyhow::Result<usize> {
    let mut count = curve_plots(run, dir)?;
    let mut idx = set.indices(true);
    if idx.len() < 2 {
        idx = (0..set.len()).collect();
    }
    let c = run.load_checkpoint(checkpoint)?;
    let (s, t) = run_on(
        device,
        EmbedTask {
            config,
            weights: c.model,
            set,
            idx: &plotted_subset(&idx, spec),
            batch_size: spec.visualization.similarity_batch_size,
        },
    )??;
    count += embedding_plots(
        &s,
        &t,
        config.text.embed_dim,
        spec,
        dir,
        &format!("{checkpoint} checkpoint"),
    )?;
    Ok(count)
}

/// Structure and text embeddings (host memory) of the items `idx`, by a saved model.
pub struct EmbedTask<'a> {
    pub config: &'a ClipConfig,
    pub weights: Vec<u8>,
    pub set: &'a PairSet,
    pub idx: &'a [usize],
    pub batch_size: usize,
}

impl OnDevice for EmbedTask<'_> {
    type Output = anyhow::Result<(Vec<f32>, Vec<f32>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let (s, t) = embed_pairs(
            &model,
            self.set,
            self.idx,
            &super::text_model::tokenize(self.config, self.set)?,
            self.batch_size,
            &device,
        );
        Ok((to_host(s), to_host(t)))
    }
}

struct EvalTask<'a> {
    config: &'a ClipConfig,
    weights: Vec<u8>,
    set: &'a PairSet,
    idx: &'a [usize],
    batch_size: usize,
}

impl OnDevice for EvalTask<'_> {
    type Output = anyhow::Result<ClipEvaluation>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let tokenizer = super::text_model::tokenize(self.config, self.set)?;
        Ok(evaluate_clip(
            &model,
            self.set,
            self.idx,
            &tokenizer,
            self.batch_size,
            &device,
        ))
    }
}

/// Data read for an existing model must have the structure width it was trained on.
fn check_structure_dim(
    source: &DataSource,
    set: &PairSet,
    model: &ClipConfig,
) -> anyhow::Result<()> {
    if model.graph.is_some() || set.feature_dim == model.structure.input_dim {
        return Ok(());
    }
    Err(BadInput(format!(
        "{}: {}-D structure vectors, but the model was trained on {}-D",
        source.jsonl.display(),
        set.feature_dim,
        model.structure.input_dim
    ))
    .into())
}

/// A CLIP run on disk with the pairs it is evaluated on.
pub struct LoadedRun {
    pub run: RunDir,
    pub info: RunInfo,
    pub spec: RunSpec,
    /// Standardised as in training, split as the run split its data.
    pub set: PairSet,
    pub source: DataSource,
    /// Whether `set` is the run's own data.
    pub own_data: bool,
}

/// The run's configuration, data (or `data`), and the pairs of one split.
fn load_run(args: &RunArgs) -> anyhow::Result<LoadedRun> {
    load_clip_run(
        &args.run,
        args.data.as_deref(),
        args.graph_emb_dir.as_deref(),
    )
}

/// A CLIP run with its configuration and its data (or `data`).
pub fn load_clip_run(
    run: &Path,
    data: Option<&Path>,
    graph_emb_dir: Option<&Path>,
) -> anyhow::Result<LoadedRun> {
    let run = RunDir::new(run);
    let info = run.info()?;
    let p = run.file("config.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    let spec = RunSpec::from_json(&text, &p.display().to_string(), &[])
        .map_err(|e| BadInput(e.to_string()))?;
    let (source, own) = match data {
        Some(d) => (
            DataSource::new(d, graph_emb_dir)?.scaled_like(&info.data),
            false,
        ),
        None => (info.data.clone(), true),
    };
    let graph = info.model.graph.as_ref().map(|g| g.graph);
    let mut set = source.load(
        spec.training.val_split,
        spec.training.val_seed,
        graph.as_ref(),
    )?;
    check_structure_dim(&source, &set, &info.model)?;
    info.scaler.apply(&mut set);
    eprintln!("data: {}", DataReport::new(&source, &set).line());
    Ok(LoadedRun {
        run,
        info,
        spec,
        set,
        source,
        own_data: own,
    })
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let LoadedRun {
        run,
        info,
        spec,
        set,
        own_data: own,
        ..
    } = load_run(&args.run)?;
    let (split, idx) = super::split_rows(args.split.as_deref(), own, &set.is_val);
    if idx.len() < 2 {
        return Err(BadInput(format!(
            "the {split} split has {} pairs; retrieval needs at least 2",
            idx.len()
        ))
        .into());
    }
    let c = run.load_checkpoint(&args.run.checkpoint)?;
    let device = super::one_device(&args.run.device)?;
    let eval = run_on(
        &device,
        EvalTask {
            config: &info.model,
            weights: c.model,
            set: &set,
            idx: &idx,
            batch_size: spec.training.batch_size,
        },
    )??;
    if args.json {
        println!(
            "{}",
            json!({"checkpoint": args.run.checkpoint, "epoch": c.state.epoch, "split": split, "evaluation": eval})
        );
    } else {
        print_retrieval(&eval, Some(c.state.epoch));
    }
    Ok(())
}

pub fn visualize(args: VisualizeArgs) -> anyhow::Result<()> {
    let LoadedRun {
        run,
        info,
        spec,
        set,
        ..
    } = load_run(&args.run)?;
    let dir = args.out.clone().unwrap_or_else(|| run.plots());
    let n = write_all_plots(
        &run,
        &info.model,
        &set,
        &spec,
        &super::one_device(&args.run.device)?,
        &args.run.checkpoint,
        &dir,
    )?;
    eprintln!("plots: {n} files in {}", dir.display());
    Ok(())
}
