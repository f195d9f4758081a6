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
use serde::{Deserialize, Serialize};
use xtal_core::models::clip::ClipConfig;
use xtal_core::train::{TrainState, pack_sections, unpack_sections};

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

    /// An existing run's `run.json`.
    pub fn info(&self) -> anyhow::Result<RunInfo> {
        let p = self.file("run.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BadInput(format!("{}: not a run directory ({e})", p.display())))?;
        serde_json::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", p.display())).into())
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
