//! A training run on disk:
//!
//! ```text
//! RUN/config.json        the configuration as used (every default spelled out)
//! RUN/run.json           model family and configuration, where the data came from
//! RUN/data_report.json   pairs used, lines skipped, records without a structure
//! RUN/metrics.jsonl      one line per logged step and per epoch
//! RUN/summary.json       final validation figures
//! RUN/checkpoints/{last,best}.ckpt
//! RUN/plots/             PNG + SVG
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xtal_core::models::clip::ClipConfig;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::{
    ModelOptimizer, TrainState, model_to_bytes, pack_sections, unpack_sections,
};

use crate::clip_data::DataSource;
use crate::exit::BadInput;
use crate::output::write_atomic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub family: String,
    pub data: DataSource,
    pub model: ClipConfig,
    /// Standardisation of structure vectors, fitted on the training split.
    pub scaler: xtal_core::data::FeatureScaler,
}

pub struct RunDir {
    pub path: PathBuf,
}

/// A checkpoint's contents.
pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

impl RunDir {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn plots(&self) -> PathBuf {
        self.path.join("plots")
    }

    pub fn checkpoint_path(&self, which: &str) -> PathBuf {
        self.path.join("checkpoints").join(format!("{which}.ckpt"))
    }

    /// An existing CLIP run's `run.json`.
    pub fn info(&self) -> anyhow::Result<RunInfo> {
        self.read_run_json("clip")
    }

    /// An existing run's `run.json`, which must be of model `family`.
    pub fn read_run_json<T: serde::de::DeserializeOwned>(&self, family: &str) -> anyhow::Result<T> {
        let p = self.file("run.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BadInput(format!("{}: not a run directory ({e})", p.display())))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        let found = value.get("family").and_then(|f| f.as_str()).unwrap_or("?");
        if found != family {
            return Err(BadInput(format!(
                "{}: a {found} run, not a {family} run",
                self.path.display()
            ))
            .into());
        }
        serde_json::from_value(value).map_err(|e| BadInput(format!("{}: {e}", p.display())).into())
    }

    /// Makes the run directory, refusing to replace a non-empty one unless `force`
    /// (`hint` is added to the refusal, e.g. how to continue it instead).
    pub fn create(&self, force: bool, hint: &str) -> anyhow::Result<()> {
        let busy = self.path.exists()
            && self
                .path
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(true);
        if busy {
            if !force {
                return Err(BadInput(format!(
                    "{} exists; pass --force to replace it{hint}",
                    self.path.display()
                ))
                .into());
            }
            std::fs::remove_dir_all(&self.path)
                .with_context(|| format!("cannot remove {}", self.path.display()))?;
        }
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("cannot create {}", self.path.display()))
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        write_atomic(&self.file(name), text.as_bytes())
    }

    pub fn save_checkpoint(&self, which: &str, c: &Checkpoint) -> anyhow::Result<()> {
        let path = self.checkpoint_path(which);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.path))?;
        let state = serde_json::to_vec(&c.state)?;
        let bytes = pack_sections(&[
            ("state", &state),
            ("model", &c.model),
            ("optimizer", &c.optimizer),
        ]);
        write_atomic(&path, &bytes)
    }

    /// Makes `to` the same checkpoint as `from`: a hard link (no copy of hundreds of MB)
    /// renamed into place; `from` is later replaced by rename, so `to` keeps this content.
    pub fn link_checkpoint(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let (src, dst) = (self.checkpoint_path(from), self.checkpoint_path(to));
        let tmp = crate::output::temp_sibling(&dst, "");
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &dst).with_context(|| format!("cannot write {}", dst.display()))
    }

    pub fn load_checkpoint(&self, which: &str) -> anyhow::Result<Checkpoint> {
        let path = self.checkpoint_path(which);
        let bytes = std::fs::read(&path)
            .map_err(|e| BadInput(format!("{}: cannot read ({e})", path.display())))?;
        let bad = |m: String| BadInput(format!("{}: {m}", path.display()));
        let mut sections = unpack_sections(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut take = |name: &str| {
            sections
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| sections.swap_remove(i).1)
                .ok_or_else(|| bad(format!("no `{name}` section")))
        };
        let state = take("state")?;
        let state: TrainState =
            serde_json::from_slice(&state).map_err(|e| bad(format!("state: {e}")))?;
        Ok(Checkpoint {
            state,
            model: take("model")?,
            optimizer: take("optimizer")?,
        })
    }

    /// Keeps only the metric lines up to `epoch` (a resumed run continues after it).
    pub fn truncate_metrics(&self, epoch: usize) -> anyhow::Result<()> {
        let path = self.file("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()))
                    .is_some_and(|e| e as usize <= epoch)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())
    }

    /// Ends an epoch of any trainer: early stopping watches `line[early_stopping_metric]`;
    /// the step lines and `line` (marked `best` when it improved) go to `metrics.jsonl`;
    /// `last.ckpt` is saved and becomes `best.ckpt` when the metric improved or when nothing
    /// is watched. Returns whether it improved.
    #[allow(clippy::too_many_arguments)]
    pub fn end_epoch<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        log: &mut MetricsLog,
        t: &TrainingSpec,
        state: &mut TrainState,
        steps: EpochSteps,
        mut line: Value,
        model: &M,
        optimizer: &ModelOptimizer<B, M>,
    ) -> anyhow::Result<bool> {
        state.epoch = steps.epoch;
        state.step = optimizer.step;
        let watched = line
            .get(t.early_stopping_metric.as_str())
            .and_then(Value::as_f64);
        let mut improved = false;
        if let (Some(es), Some(v)) = (state.early_stopping.as_mut(), watched) {
            let verdict = es.update(steps.epoch, v);
            improved = verdict.improved;
            state.stopped = t.early_stopping && verdict.stop;
        }
        for l in &steps.lines {
            log.append(l)?;
        }
        line["best"] = json!(improved);
        log.append(&line)?;
        let saving = std::time::Instant::now();
        self.save_checkpoint(
            "last",
            &Checkpoint {
                state: state.clone(),
                model: model_to_bytes(model)?,
                optimizer: optimizer.to_bytes()?,
            },
        )?;
        if improved || watched.is_none() {
            self.link_checkpoint("last", "best")?;
        }
        tracing::info!(
            "checkpoint saved in {:.2} s",
            saving.elapsed().as_secs_f64()
        );
        Ok(improved)
    }

    pub fn metrics_log(&self) -> anyhow::Result<MetricsLog> {
        let path = self.file("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsLog { file })
    }

    pub fn read_metrics(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.file("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// `metrics.jsonl`, one JSON object per line, flushed as written.
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    pub fn append(&mut self, value: &serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// One epoch's micro-batch losses and the step lines due every `log_interval` optimiser
/// steps, as the trainers' progress callbacks record them.
pub struct EpochSteps {
    epoch: usize,
    step_before: usize,
    accumulation: usize,
    log_interval: usize,
    batches: usize,
    loss_sum: f64,
    micro: usize,
    lines: Vec<Value>,
}

impl EpochSteps {
    pub fn new(epoch: usize, step_before: usize, t: &TrainingSpec, batches: usize) -> Self {
        Self {
            epoch,
            step_before,
            accumulation: t.grad_accum_steps.max(1),
            log_interval: t.log_interval.max(1),
            batches,
            loss_sum: 0.0,
            micro: 0,
            lines: Vec::new(),
        }
    }

    pub fn record(&mut self, loss: f64, lr: f64) {
        self.loss_sum += loss;
        self.micro += 1;
        let step = self.step_before + self.micro.div_ceil(self.accumulation);
        if self.micro.is_multiple_of(self.accumulation) && step.is_multiple_of(self.log_interval) {
            self.lines.push(json!({
                "kind": "step", "epoch": self.epoch, "step": step,
                "epoch_progress": self.epoch as f64 - 1.0 + self.micro as f64 / self.batches.max(1) as f64,
                "loss": loss, "lr": lr,
            }));
        }
    }

    /// Mean micro-batch loss of the epoch so far.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.micro.max(1) as f64
    }
}

/// The progress bar of one training epoch: `{label} {prefix} [bar] k/n batches {msg}`.
pub fn epoch_bar(label: &str, batches: usize, prefix: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(batches as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} {{prefix}} {{bar:30}} {{pos}}/{{len}} batches  {{msg}}  [{{elapsed}}<{{eta}}]"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(prefix);
    bar
}
