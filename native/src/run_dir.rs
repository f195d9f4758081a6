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
//! RUN/tensorboard/       event files (with --tensorboard)
//! RUN/mlflow.json        the MLflow run it logs to (with --mlflow)
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
    Checkpoint, EpochEnd, FitObserver, ModelOptimizer, RunStore, TrainState, model_from_bytes,
};

use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::output::write_atomic;
use crate::tracking::{Trackers, TrackingArgs};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub family: String,
    pub data: DataSource,
    pub model: ClipConfig,
    /// Standardisation of structure vectors, fitted on the training split.
    pub scaler: xtal_core::data::FeatureScaler,
}

impl RunPaths for RunInfo {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.data.paths_mut()
    }
}

/// A run description (`run.json`, `ssl.json`) that records paths — its data, another run:
/// [`RunDir::write_info`] stores them relative to the run directory and
/// [`RunDir::read_info`] resolves them against it, so that a run and its data can move
/// together and commands work from any directory.
pub trait RunPaths {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf>;
}

pub struct RunDir {
    pub path: PathBuf,
    /// Where the run's metric lines are mirrored besides `metrics.jsonl`.
    trackers: Option<std::sync::Mutex<Trackers>>,
}

impl RunDir {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            trackers: None,
        }
    }

    /// Mirrors the run's metric lines to the trackers `args` asks for (TensorBoard, MLflow;
    /// none: nothing changes). The directory must exist; `params` is what MLflow records of
    /// the configuration. A fresh run whose trackers cannot start is removed (it has not
    /// begun).
    pub fn track(self, args: &TrackingArgs, params: &Value, resume: bool) -> anyhow::Result<Self> {
        match Trackers::start(&self.path, args, params, resume) {
            Ok(trackers) => Ok(Self {
                trackers: trackers.map(std::sync::Mutex::new),
                ..self
            }),
            Err(e) => {
                if !resume {
                    let _ = std::fs::remove_dir_all(&self.path);
                }
                Err(e)
            }
        }
    }

    fn with_trackers(
        &self,
        f: impl FnOnce(&mut Trackers) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match &self.trackers {
            Some(t) => f(&mut *t
                .lock()
                .map_err(|_| anyhow::anyhow!("tracking failed earlier"))?),
            None => Ok(()),
        }
    }

    /// The run is over (its last records and plots written): plots and records go to the
    /// trackers, the MLflow run ends.
    pub fn finish_tracking(&self) -> anyhow::Result<()> {
        self.with_trackers(|t| t.finish())
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

    /// The model family `run.json` names (`clip`, `property`, …), if it can be read.
    pub fn family(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.file("run.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["family"].as_str().map(String::from)
    }

    /// An existing CLIP run's `run.json`.
    pub fn info(&self) -> anyhow::Result<RunInfo> {
        self.read_run_json("clip")
    }

    /// An existing run's `run.json`, which must be of model `family`.
    pub fn read_run_json<T: serde::de::DeserializeOwned + RunPaths>(
        &self,
        family: &str,
    ) -> anyhow::Result<T> {
        self.read_info("run.json", Some(family), "not a run directory")
    }

    /// The run description `name` (of model `family`, if given), its paths resolved against
    /// the run directory; `missing` says what a run without the file is not.
    pub fn read_info<T: serde::de::DeserializeOwned + RunPaths>(
        &self,
        name: &str,
        family: Option<&str>,
        missing: &str,
    ) -> anyhow::Result<T> {
        let p = self.file(name);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BadInput(format!("{}: {missing} ({e})", p.display())))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        let found = value.get("family").and_then(|f| f.as_str()).unwrap_or("?");
        if let Some(family) = family
            && found != family
        {
            return Err(BadInput(format!(
                "{}: a {found} run, not a {family} run",
                self.path.display()
            ))
            .into());
        }
        let mut info: T =
            serde_json::from_value(value).map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        for path in info.paths_mut() {
            *path = self.resolved(path);
        }
        Ok(info)
    }

    /// Writes the run description `name` with its paths relative to the run directory.
    pub fn write_info<T: Serialize + RunPaths + Clone>(
        &self,
        name: &str,
        info: &T,
    ) -> anyhow::Result<()> {
        self.write_json(name, &self.stored(info)?)
    }

    /// `info` as [`Self::write_info`] stores it: its paths relative to the run directory.
    pub fn stored<T: RunPaths + Clone>(&self, info: &T) -> anyhow::Result<T> {
        let mut info = info.clone();
        let run = std::path::absolute(&self.path)
            .with_context(|| format!("{}: no absolute path", self.path.display()))?;
        for path in info.paths_mut() {
            if let Ok(p) = std::path::absolute(&*path)
                && let Some(relative) = pathdiff::diff_paths(&p, &run)
            {
                *path = relative;
            }
        }
        Ok(info)
    }

    /// A path of a run description: relative ones are relative to the run directory. Runs
    /// written before that held paths relative to where xtal ran; those still resolve.
    fn resolved(&self, path: &Path) -> PathBuf {
        let in_run = self.path.join(path);
        if path.is_relative() && !in_run.exists() && path.exists() {
            path.to_path_buf()
        } else {
            in_run
        }
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
        Checkpoint::from_bytes(&bytes)
            .map_err(|e| BadInput(format!("{}: {e}", path.display())).into())
    }

    /// `(epoch, line[key])` of every epoch line of the metrics that has `key`: a curve to plot.
    pub fn epoch_curve(&self, key: &str) -> Vec<(f64, f64)> {
        self.read_metrics()
            .iter()
            .filter(|l| l["kind"] == "epoch")
            .filter_map(|l| Some((l["epoch"].as_f64()?, l.get(key)?.as_f64()?)))
            .collect()
    }

    /// Where a resumed run continues: the `last` checkpoint's weights loaded into `model`,
    /// `prepare` (e.g. freezing, then the optimiser, whose exempt parameter ids are the loaded
    /// model's), the checkpoint's optimiser state and its training state. A checkpoint that
    /// does not fit is a bad input naming it.
    pub fn resume<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        model: M,
        device: &B::Device,
        prepare: impl FnOnce(M) -> (M, ModelOptimizer<B, M>),
    ) -> anyhow::Result<(M, ModelOptimizer<B, M>, TrainState)> {
        let c = self.load_checkpoint("last")?;
        let bad = |e: String| BadInput(format!("{}: {e}", self.checkpoint_path("last").display()));
        let model = model_from_bytes(model, c.model, device).map_err(|e| bad(e.to_string()))?;
        let (model, optimizer) = prepare(model);
        let optimizer = optimizer
            .load_bytes(c.optimizer, device)
            .map_err(|e| bad(e.to_string()))?;
        Ok((model, optimizer, c.state))
    }

    /// Where a run starts: with `resume`, [`RunDir::resume`] (said on stderr, naming `what`,
    /// e.g. " block 2"); otherwise `model` as it is, `prepare`d, before its first epoch.
    pub fn start<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        resume: bool,
        what: &str,
        model: M,
        device: &B::Device,
        training: &TrainingSpec,
        prepare: impl FnOnce(M) -> (M, ModelOptimizer<B, M>),
    ) -> anyhow::Result<(M, ModelOptimizer<B, M>, TrainState)> {
        if resume {
            let resumed = self.resume(model, device, prepare)?;
            let state = &resumed.2;
            eprintln!(
                "resuming{what} after epoch {} (step {})",
                state.epoch, state.step
            );
            Ok(resumed)
        } else {
            let (model, optimizer) = prepare(model);
            Ok((model, optimizer, training.fresh_state()))
        }
    }

    pub fn read_metrics(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.file("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A run directory keeps a `fit`'s checkpoints (`checkpoints/{last,best}.ckpt`, written
/// atomically) and its metric lines (`metrics.jsonl`).
impl RunStore for &RunDir {
    type Error = anyhow::Error;

    fn save_checkpoint(&mut self, which: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.checkpoint_path(which);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.path))
            .with_context(|| format!("cannot create {}", path.display()))?;
        write_atomic(&path, bytes)
    }

    fn copy_checkpoint(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        self.link_checkpoint(from, to)
    }

    fn append_metrics(&mut self, lines: &[Value]) -> anyhow::Result<()> {
        let path = self.file("metrics.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.with_trackers(|t| t.record(lines))
    }

    fn truncate_metrics(&mut self, epoch: usize) -> anyhow::Result<()> {
        let path = self.file("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let (mut kept, mut last_step) = (String::new(), 0);
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["epoch"].as_u64().is_some_and(|e| e as usize <= epoch) {
                last_step = last_step.max(v["step"].as_i64().unwrap_or(0));
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&path, kept.as_bytes())?;
        self.with_trackers(|t| t.restart(last_step + 1))
    }
}

/// How [`Progress`] shows a run: a bar over each epoch's batches, or one bar over the epochs
/// (many short epochs).
#[derive(Clone, Copy)]
pub enum Bar {
    Batches,
    Epochs,
}

type Summary<'a> = Box<dyn FnMut(&EpochEnd) -> String + 'a>;
type AfterEpoch<'a, M> = Box<dyn FnMut(&EpochEnd, &M) -> anyhow::Result<()> + 'a>;

/// The terminal's view of a `fit`: a progress bar with the live loss, each epoch's seconds
/// in its metrics line, and a line per epoch from `summary` (marked `*best`); `after_epoch`
/// sees each epoch's model (e.g. for plots during training).
pub struct Progress<'a, M> {
    label: String,
    bar: Bar,
    /// What early stopping watched, for the line that says it stopped.
    stopping: String,
    current: Option<indicatif::ProgressBar>,
    started: Option<std::time::Instant>,
    summary: Summary<'a>,
    after_epoch: Option<AfterEpoch<'a, M>>,
    /// Figures every epoch line carries (e.g. the validation pairs).
    constant: Vec<(String, Value)>,
}

impl<'a, M> Progress<'a, M> {
    pub fn new(
        label: &str,
        bar: Bar,
        t: &TrainingSpec,
        summary: impl FnMut(&EpochEnd) -> String + 'a,
    ) -> Self {
        Self {
            label: label.to_string(),
            bar,
            stopping: format!(
                "{} has not improved for {} epochs",
                t.early_stopping_metric, t.early_stopping_patience
            ),
            current: None,
            started: None,
            summary: Box::new(summary),
            after_epoch: None,
            constant: Vec::new(),
        }
    }

    /// Adds `key: value` to every epoch's metrics line.
    pub fn with_line(mut self, key: &str, value: Value) -> Self {
        self.constant.push((key.to_string(), value));
        self
    }

    pub fn after_epoch(mut self, f: impl FnMut(&EpochEnd, &M) -> anyhow::Result<()> + 'a) -> Self {
        self.after_epoch = Some(Box::new(f));
        self
    }

    fn print(&self, line: String) {
        match (&self.current, self.bar) {
            (Some(bar), Bar::Epochs) => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl<M> FitObserver<M> for Progress<'_, M> {
    type Error = anyhow::Error;

    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.started = Some(std::time::Instant::now());
        let (len, unit) = match self.bar {
            Bar::Batches => (batches, "batches"),
            Bar::Epochs if self.current.is_some() => return,
            Bar::Epochs => (epochs, "epochs"),
        };
        let bar = indicatif::ProgressBar::new(len as u64).with_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{} {{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed}}<{{eta}}]",
                self.label
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if let Bar::Batches = self.bar {
            bar.set_prefix(format!("{epoch}/{epochs}"));
        }
        self.current = Some(bar);
    }

    fn step(&mut self, loss: f64, lr: f64) -> anyhow::Result<()> {
        if let (Some(bar), Bar::Batches) = (&self.current, self.bar) {
            bar.inc(1);
            bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
        }
        Ok(())
    }

    fn epoch_trained(&mut self, line: &mut Value) {
        if let Some(started) = self.started {
            line["seconds"] = json!(started.elapsed().as_secs_f64());
        }
        for (key, value) in &self.constant {
            line[key.as_str()] = value.clone();
        }
        if let (Some(bar), Bar::Batches) = (self.current.take(), self.bar) {
            bar.finish_and_clear();
        }
    }

    fn epoch_end(&mut self, end: &EpochEnd, model: &M) -> anyhow::Result<()> {
        tracing::info!(
            "validation and checkpoint in {:.2} s",
            self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
        );
        let summary = (self.summary)(end);
        let summary = format!("{summary}{}", if end.improved { "  *best" } else { "" });
        match (&self.current, self.bar) {
            (Some(bar), Bar::Epochs) => {
                bar.inc(1);
                bar.set_message(summary);
            }
            _ => eprintln!("{summary}"),
        }
        if let Some(after) = self.after_epoch.as_mut() {
            after(end, model)?;
        }
        if end.stopped {
            self.print(format!(
                "early stopping after epoch {}: {}",
                end.epoch, self.stopping
            ));
        }
        if (end.epoch == end.epochs || end.stopped)
            && let Some(bar) = self.current.take()
        {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
