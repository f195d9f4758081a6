//! `xtal bundle pack --run TENSOR_RUN`: a tensor head travels inside the bundle of the CLIP
//! model whose embeddings it reads (`tensor_head` section, `tensor_head.safetensors`).
//! The CLIP side is packed by `pack.rs` as for a CLIP run.

use std::path::Path;

use burn::prelude::Backend;
use serde_json::{Value, json};
use xtal_core::bundle::PackTensorHead;
use xtal_core::models::tensor_head::TensorHead;
use xtal_core::train::model_from_bytes;

use super::pack::run_summary;
use crate::commands::clip::LoadedRun;
use crate::commands::tensor::run::TensorRunInfo;
use crate::exit::BadInput;
use crate::run_dir::RunDir;

/// A trained head read from its run, before it meets its CLIP model.
pub(super) struct HeadToPack {
    pub(super) info: TensorRunInfo,
    weights: Vec<u8>,
    epoch: usize,
    summary: Value,
}

impl HeadToPack {
    pub(super) fn read(run: &Path, checkpoint: &str) -> anyhow::Result<Self> {
        let dir = RunDir::new(run);
        let info: TensorRunInfo = dir.read_run_json("tensor")?;
        let c = dir.load_checkpoint(checkpoint)?;
        Ok(Self {
            info,
            weights: c.model,
            epoch: c.state.epoch,
            summary: run_summary(&dir),
        })
    }

    /// The head learned from one CLIP checkpoint's embeddings; another would feed it vectors
    /// it never saw, so it is refused rather than packed.
    pub(super) fn check_clip(
        &self,
        clip_run: &Path,
        clip_checkpoint: &str,
        clip_epoch: usize,
        loaded: &LoadedRun,
    ) -> anyhow::Result<()> {
        if clip_epoch != self.info.clip_epoch {
            return Err(BadInput(format!(
                "{} {clip_checkpoint} checkpoint is now epoch {clip_epoch}; the tensor head was trained on epoch {}'s embeddings (retrain it with xtal train tensor before packing)",
                clip_run.display(),
                self.info.clip_epoch
            ))
            .into());
        }
        let dim = loaded.info.model.text.embed_dim;
        if dim != self.info.head.input_dim {
            return Err(BadInput(format!(
                "{}: {dim}-D embeddings, the tensor head reads {}-D",
                clip_run.display(),
                self.info.head.input_dim
            ))
            .into());
        }
        Ok(())
    }

    pub(super) fn model<B: Backend>(&self, device: &B::Device) -> anyhow::Result<TensorHead<B>> {
        Ok(model_from_bytes(
            self.info.head.init(device),
            self.weights.clone(),
            device,
        )?)
    }

    pub(super) fn to_pack<'a, B: Backend>(
        &'a self,
        model: &'a TensorHead<B>,
    ) -> PackTensorHead<'a, B> {
        PackTensorHead {
            model,
            config: &self.info.head,
            targets: self.info.targets.clone(),
            modality: self.info.modality,
        }
    }

    /// The manifest's `source.tensor_head`.
    pub(super) fn source(&self, run: &Path, checkpoint: &str) -> Value {
        json!({
            "run": run.display().to_string(),
            "checkpoint": checkpoint,
            "epoch": self.epoch,
            "clip_epoch": self.info.clip_epoch,
            "validation": self.summary.get("validation").cloned().unwrap_or_default(),
        })
    }

    /// The model card's paragraph on the head.
    pub(super) fn card(&self, run: &Path) -> String {
        let metrics = &self.summary["validation"]["metrics"];
        let metric = |k: &str| {
            metrics[k]
                .as_f64()
                .map_or("?".into(), |v| format!("{v:.4}"))
        };
        format!(
            "## Tensor head\n\n\
             From run `{}` (epoch {}): predicts {} ({} mode) of a 3×3 property tensor from the \
             {} embedding of this model; `xtal predict --bundle` prints them. Validation MAE {} \
             (pooled R² {}).\n",
            run.display(),
            self.epoch,
            self.info.targets.mode.component_names().join(", "),
            self.info.targets.mode.name(),
            self.info.modality,
            metric("mae"),
            metric("r2_pooled"),
        )
    }
}
