//! The original's `tensor_regression` section: the frozen-embedding regression task, its
//! choices as enums, and the keys of tasks not available, checked by name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::tensor_head::{RegressionLoss, TensorHeadConfig, TensorMode};

use super::SpecError;

/// `tensor_regression.task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorTask {
    Regression,
    /// The original's symmetry-constrained 2-D elastic head (not available).
    #[serde(rename = "elastic_2d_symmetry")]
    Elastic2dSymmetry,
}

/// `tensor_regression.modality`: which CLIP embedding a head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// The structure embedding (the original's name).
    Graph,
    Text,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Graph => "graph",
            Self::Text => "text",
        })
    }
}

/// `tensor_regression.head_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadType {
    /// Hidden layers of `head_hidden_dims` (default 256, 128).
    Mlp,
    /// A single linear layer.
    Linear,
}

/// `tensor_regression.training_phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingPhase {
    /// Heads over frozen CLIP embeddings.
    Phase1,
    /// CLIP fine-tuned jointly (not available).
    Phase2,
}

/// `tensor_regression.loss_fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossName {
    Mse,
    #[serde(alias = "l1")]
    Mae,
    /// With `huber_delta`.
    Huber,
}

/// The original's `tensor_regression` section. Keys of its symmetry-constrained 2-D elastic
/// task and of joint CLIP fine-tuning (phase 2) are accepted and checked, but only the
/// frozen-embedding regression task is available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRegressionSpec {
    pub task: TensorTask,
    pub modality: Modality,
    pub tensor_dim: usize,
    /// Full (the default), 2d or voigt2d.
    pub tensor_mode: Option<TensorMode>,
    /// z-score each component with training-row statistics.
    #[serde(alias = "normalize_tensor")]
    pub normalize: bool,
    /// The CLIP run directory, or a checkpoint file in its `checkpoints/`; `--clip-run`
    /// takes precedence.
    pub clip_checkpoint_path: Option<String>,
    pub log_parity_plot: bool,
    /// Epochs between the original's parity plots during training (xtal draws one, at the
    /// end).
    #[serde(alias = "parity_plot_interval")]
    pub interval: usize,
    /// The original ignored this key.
    pub head_type: HeadType,
    pub head_hidden_dims: Option<Vec<usize>>,
    pub head_dropout: f64,
    pub training_phase: TrainingPhase,
    pub freeze_clip: bool,
    pub clip_loss_weight: f64,
    pub regression_loss_weight: f64,
    pub loss_fn: LossName,
    /// Threshold of the Huber loss, in normalised units.
    pub huber_delta: f64,
    /// Learning rate of the head (default: training.learning_rate).
    pub regression_lr: Option<f64>,
    pub beta_prior: f64,
    pub lambda_sym: f64,
    pub lambda_sym_schedule: Option<Value>,
    pub freeze_alpha_head: bool,
    pub phase1_epochs: usize,
}

impl Default for TensorRegressionSpec {
    fn default() -> Self {
        Self {
            task: TensorTask::Regression,
            modality: Modality::Graph,
            tensor_dim: 9,
            tensor_mode: None,
            normalize: true,
            clip_checkpoint_path: None,
            log_parity_plot: true,
            interval: 10,
            head_type: HeadType::Mlp,
            head_hidden_dims: None,
            head_dropout: 0.1,
            training_phase: TrainingPhase::Phase1,
            freeze_clip: true,
            clip_loss_weight: 0.1,
            regression_loss_weight: 1.0,
            loss_fn: LossName::Mse,
            huber_delta: 1.0,
            regression_lr: None,
            beta_prior: 1.0,
            lambda_sym: 0.1,
            lambda_sym_schedule: None,
            freeze_alpha_head: false,
            phase1_epochs: 30,
        }
    }
}

impl TensorRegressionSpec {
    pub fn mode(&self) -> TensorMode {
        self.tensor_mode.unwrap_or(TensorMode::Full)
    }

    pub fn loss(&self) -> RegressionLoss {
        match self.loss_fn {
            LossName::Mse => RegressionLoss::Mse,
            LossName::Mae => RegressionLoss::Mae,
            LossName::Huber => RegressionLoss::Huber {
                delta: self.huber_delta as f32,
            },
        }
    }

    /// The head over `input_dim`-D embeddings.
    pub fn head_config(&self, input_dim: usize) -> TensorHeadConfig {
        let hidden = match self.head_type {
            HeadType::Linear => Vec::new(),
            HeadType::Mlp => self.head_hidden_dims.clone().unwrap_or(vec![256, 128]),
        };
        TensorHeadConfig::new(input_dim, self.mode().indices().len())
            .with_hidden(hidden)
            .with_dropout(self.head_dropout)
    }

    pub(super) fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field, message: String| Err(SpecError::Invalid { field, message });
        if self.task != TensorTask::Regression {
            return invalid(
                "tensor_regression.task",
                "`elastic_2d_symmetry` is not available in this version; use \"regression\"".into(),
            );
        }
        if !self.freeze_clip || self.training_phase != TrainingPhase::Phase1 {
            return invalid(
                "tensor_regression.freeze_clip",
                "heads train over frozen CLIP embeddings (freeze_clip true, training_phase \"phase1\"); fine-tuning CLIP jointly is not available in this version".into(),
            );
        }
        if self.tensor_dim != 9 {
            return invalid(
                "tensor_regression.tensor_dim",
                "tensors are 3×3 (9 values, row-major)".into(),
            );
        }
        if self
            .head_hidden_dims
            .as_ref()
            .is_some_and(|h| h.contains(&0))
        {
            return invalid(
                "tensor_regression.head_hidden_dims",
                "widths must be positive".into(),
            );
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return invalid("tensor_regression.head_dropout", "must be in [0, 1)".into());
        }
        if !(self.huber_delta.is_finite() && self.huber_delta > 0.0) {
            return invalid("tensor_regression.huber_delta", "must be positive".into());
        }
        if self
            .regression_lr
            .is_some_and(|lr| !(lr.is_finite() && lr > 0.0))
        {
            return invalid(
                "tensor_regression.regression_lr",
                "must be a positive number".into(),
            );
        }
        Ok(())
    }
}
