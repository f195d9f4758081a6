//! Experiment tracking: what a run records in `metrics.jsonl` mirrored, as it is written, to
//! TensorBoard event files (`RUN/tensorboard/`) and to an MLflow tracking server; at the end
//! the run's plots go to both and its best checkpoint and records to MLflow as artifacts.
//!
//! Names: a step line's figures are `step/<key>` (e.g. `step/loss`, `step/lr`), an epoch
//! line's `epoch/<key>` (e.g. `epoch/val_loss`, `epoch/val_r10_g2t`), all at the optimiser
//! step the line carries.

mod mlflow;
mod tensorboard;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args as ClapArgs;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use mlflow::{Metric, MlflowRun};
use tensorboard::EventFile;

#[derive(ClapArgs, Debug, Clone, Default)]
pub struct TrackingArgs {
    /// Also write TensorBoard event files to RUN/tensorboard (`tensorboard --logdir RUN`).
    #[arg(long)]
    pub tensorboard: bool,
    /// Also log to an MLflow tracking server (http://HOST:PORT): parameters, metrics as they
    /// are written, then plots, records and the best checkpoint as artifacts.
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// MLflow experiment of the run (created when missing).
    #[arg(long, value_name = "NAME", default_value = "xtal")]
    pub mlflow_experiment: String,
}

/// Which MLflow run a run directory logs to (`RUN/mlflow.json`), so that `--resume`
/// continues it.
#[derive(Serialize, Deserialize)]
struct MlflowRecord {
    tracking_uri: String,
    experiment_id: String,
    run_id: String,
}

/// The trackers of one run directory.
pub struct Trackers {
    dir: PathBuf,
    board: Option<EventFile>,
    mlflow: Option<MlflowRun>,
    /// The MLflow server failed during the run: training goes on, said once.
    mlflow_failed: bool,
    /// The latest optimiser step recorded (plots are shown at it).
    last_step: i64,
    ended: bool,
}

impl Trackers {
    /// Starts tracking the run in `dir` (which exists): `params` (nested JSON, e.g. the
    /// configuration) become MLflow parameters with dotted keys. With `resume`, the MLflow
    /// run this directory logged to before is continued.
    pub fn start(
        dir: &Path,
        args: &TrackingArgs,
        params: &Value,
        resume: bool,
    ) -> anyhow::Result<Option<Self>> {
        if !args.tensorboard && args.mlflow.is_none() {
            return Ok(None);
        }
        let board = if args.tensorboard {
            Some(EventFile::create(&dir.join("tensorboard"))?)
        } else {
            None
        };
        let record_path = dir.join("mlflow.json");
        let mlflow = match &args.mlflow {
            None => None,
            Some(uri) => {
                let earlier: Option<MlflowRecord> = resume
                    .then(|| std::fs::read_to_string(&record_path).ok())
                    .flatten()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .filter(|r: &MlflowRecord| r.tracking_uri == *uri);
                let name = run_name(dir);
                let run = MlflowRun::start(
                    uri,
                    &args.mlflow_experiment,
                    &name,
                    earlier.as_ref().map(|r| r.run_id.as_str()),
                )?;
                if earlier.is_none() {
                    let mut flat = Vec::new();
                    flatten("", params, &mut flat);
                    run.log_params(&flat)
                        .map_err(|e| crate::exit::BadInput(format!("--mlflow {uri}: {e}")))?;
                }
                let record = MlflowRecord {
                    tracking_uri: uri.clone(),
                    experiment_id: run.experiment_id.clone(),
                    run_id: run.run_id.clone(),
                };
                crate::output::write_atomic(
                    &record_path,
                    serde_json::to_string_pretty(&record)?.as_bytes(),
                )?;
                eprintln!(
                    "mlflow: run {} in experiment {} at {uri}",
                    run.run_id, run.experiment_id
                );
                Some(run)
            }
        };
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            board,
            mlflow,
            mlflow_failed: false,
            last_step: 0,
            ended: false,
        }))
    }

    /// Mirrors metric lines (as written to `metrics.jsonl`).
    pub fn record(&mut self, lines: &[Value]) -> anyhow::Result<()> {
        let mut metrics = Vec::new();
        for line in lines {
            let (Some(kind), Some(step)) = (
                line.get("kind").and_then(Value::as_str),
                line.get("step").and_then(Value::as_i64),
            ) else {
                continue;
            };
            let Some(fields) = line.as_object() else {
                continue;
            };
            self.last_step = self.last_step.max(step);
            let scalars: Vec<(String, f64)> = fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "kind" | "step"))
                .filter_map(|(k, v)| Some((format!("{kind}/{k}"), v.as_f64()?)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if let Some(board) = &mut self.board {
                board.scalars(step, &scalars)?;
            }
            metrics.extend(
                scalars
                    .into_iter()
                    .map(|(key, value)| Metric { key, value, step }),
            );
        }
        if let Some(run) = &self.mlflow {
            let sent = run.log_metrics(&metrics);
            self.mlflow_trouble(sent);
        }
        Ok(())
    }

    /// A resumed run rewrites its records from `step` on (those after its checkpoint).
    /// MLflow keeps a metric's every value, so values an interrupted run logged past its
    /// checkpoint stay in its history there.
    pub fn restart(&mut self, step: i64) -> anyhow::Result<()> {
        match &mut self.board {
            Some(board) => board.restart(step),
            None => Ok(()),
        }
    }

    /// Says once that the MLflow server failed, then stops logging to it: the run itself
    /// goes on (everything is in RUN/metrics.jsonl).
    fn mlflow_trouble(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            eprintln!("warning: mlflow: {e}; logging to MLflow stops, the run goes on");
            self.mlflow_failed = true;
            self.mlflow = None;
        }
    }

    /// The run finished: its plots (PNG) go to TensorBoard's images and, with its records and
    /// best checkpoint, to MLflow's artifacts; the MLflow run ends as FINISHED.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let step = self.last_step;
        let plots = files_under(&self.dir.join("plots"));
        if let Some(board) = &mut self.board {
            for (rel, path) in plots.iter().filter(|(r, _)| r.ends_with(".png")) {
                let png = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let tag = rel.trim_end_matches(".png");
                board.png(step, tag, &png)?;
            }
        }
        if let Some(run) = &self.mlflow {
            let records = [
                "config.json",
                "run.json",
                "summary.json",
                "data_report.json",
            ]
            .into_iter()
            .chain(["metrics.jsonl", "checkpoints/best.ckpt"])
            .map(|name| (name.to_string(), self.dir.join(name)))
            .filter(|(_, p)| p.is_file());
            let mut sent = Ok(());
            for (rel, path) in records.chain(plots) {
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                sent = run.upload(&rel, &bytes);
                if sent.is_err() {
                    break;
                }
            }
            let sent = sent.and_then(|()| run.end("FINISHED"));
            self.mlflow_trouble(sent);
        }
        self.ended = true;
        Ok(())
    }
}

impl Drop for Trackers {
    /// A run that ended with an error: its MLflow run is marked FAILED.
    fn drop(&mut self) {
        if !self.ended
            && let Some(run) = &self.mlflow
        {
            let _ = run.end("FAILED");
        }
    }
}

/// MLflow's run name: the run directory's name (an SSL block's: `RUN/blockN_name`).
fn run_name(dir: &Path) -> String {
    let Ok(dir) = std::path::absolute(dir) else {
        return "xtal".into();
    };
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match (name(&dir), dir.parent()) {
        (Some(n), Some(parent)) if parent.join("ssl.json").is_file() => {
            format!("{}/{n}", name(parent).unwrap_or_default())
        }
        (Some(n), _) => n,
        (None, _) => "xtal".into(),
    }
}

/// `{"a": {"b": 1}}` → `a.b = 1`; arrays and strings as their text; nulls left out.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Files under `root`, as (path relative to the run directory, path), sorted.
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(rel) = root
                .parent()
                .and_then(|run| path.strip_prefix(run).ok())
                .and_then(|r| r.to_str())
            {
                out.push((rel.replace('\\', "/"), path));
            }
        }
    }
    out.sort();
    out
}
