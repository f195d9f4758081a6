//! The `training` section: optimiser, schedule, validation and early stopping, and the
//! metric names early stopping may watch.

use serde::{Deserialize, Serialize};

use crate::train::checkpoint::TrainState;
use crate::train::early_stopping::{EarlyStopping, Mode};
use crate::train::optimizer::OptimizerSettings;
use crate::train::schedule::WarmupCosine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSpec {
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub epochs: usize,
    /// Accepted for compatibility; data loading here has no worker processes.
    pub num_workers: usize,
    /// Device when `--device` is not given: cpu, wgpu[:N], cuda[:N].
    pub device: Option<String>,
    /// Optimiser steps between `metrics.jsonl` step lines.
    pub log_interval: usize,
    pub use_validation: bool,
    pub val_split: f64,
    pub val_seed: u64,
    pub early_stopping: bool,
    pub early_stopping_patience: usize,
    pub early_stopping_metric: String,
    /// min or max; by default the metric's natural direction (min for losses and ranks).
    pub early_stopping_mode: Option<Mode>,
    pub early_stopping_min_delta: f64,
    /// Accepted for compatibility (a warning): xtal logs to `metrics.jsonl`, and with
    /// `--tensorboard` / `--mlflow URI` to TensorBoard files or an MLflow server.
    pub use_wandb: bool,
    pub wandb_project: Option<String>,
    pub wandb_entity: Option<String>,
    pub wandb_run_name: Option<String>,
    pub wandb_tags: Option<Vec<String>>,
    pub visualize_during_training: bool,
    pub visualize_interval: usize,
    pub visualize_n_samples: usize,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Linear warm-up length as a fraction of all optimiser steps.
    pub warmup_fraction: f64,
    /// Final learning rate of the cosine decay, as a fraction of `learning_rate`.
    pub min_lr_ratio: f64,
    /// Global gradient-norm limit; 0 turns clipping off.
    pub grad_clip_norm: f64,
    pub grad_accum_steps: usize,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            batch_size: 64,
            learning_rate: 2e-4,
            weight_decay: 0.01,
            epochs: 2,
            num_workers: 4,
            device: None,
            log_interval: 50,
            use_validation: true,
            val_split: 0.1,
            val_seed: 42,
            early_stopping: false,
            early_stopping_patience: 5,
            early_stopping_metric: "val_loss".into(),
            early_stopping_mode: None,
            early_stopping_min_delta: 0.0,
            use_wandb: false,
            wandb_project: None,
            wandb_entity: None,
            wandb_run_name: None,
            wandb_tags: None,
            visualize_during_training: false,
            visualize_interval: 10,
            visualize_n_samples: 800,
            seed: 42,
            warmup_fraction: 0.05,
            min_lr_ratio: 0.0,
            grad_clip_norm: 1.0,
            grad_accum_steps: 1,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
        }
    }
}

/// Metric names a run records per epoch; early stopping may watch any of them.
pub const TRACKED_METRICS: &[(&str, Mode)] = &[
    ("train_loss", Mode::Min),
    ("val_loss", Mode::Min),
    ("val_acc_g2t", Mode::Max),
    ("val_acc_t2g", Mode::Max),
    ("val_r1_g2t", Mode::Max),
    ("val_r5_g2t", Mode::Max),
    ("val_r10_g2t", Mode::Max),
    ("val_mrr_g2t", Mode::Max),
    ("val_median_rank_g2t", Mode::Min),
    ("val_r1_t2g", Mode::Max),
    ("val_r5_t2g", Mode::Max),
    ("val_r10_t2g", Mode::Max),
    ("val_mrr_t2g", Mode::Max),
    ("val_median_rank_t2g", Mode::Min),
    ("val_matched_cosine", Mode::Max),
];

/// What a tensor-regression run records per epoch (MAE and R² on de-normalised values).
pub const TENSOR_METRICS: &[(&str, Mode)] = &[
    ("train_loss", Mode::Min),
    ("val_loss", Mode::Min),
    ("val_mae", Mode::Min),
    ("val_r2", Mode::Max),
    ("val_r2_pooled", Mode::Max),
];

impl TrainingSpec {
    /// The state of a run before its first epoch (early stopping watching the configured
    /// metric in its direction).
    pub fn fresh_state(&self) -> TrainState {
        TrainState {
            epoch: 0,
            step: 0,
            seed: self.seed,
            early_stopping: Some(EarlyStopping::new(
                &self.early_stopping_metric,
                self.early_stopping_direction(),
                self.early_stopping_patience,
                self.early_stopping_min_delta,
            )),
            stopped: false,
        }
    }

    /// AdamW, clipping, accumulation and warm-up + cosine for a run over `train_rows`
    /// training items at peak rate `base_lr`.
    pub fn optimizer_settings(&self, base_lr: f64, train_rows: usize) -> OptimizerSettings {
        let steps_per_epoch = crate::data::batches_per_epoch(train_rows, self.batch_size)
            .div_ceil(self.grad_accum_steps.max(1));
        let total_steps = steps_per_epoch * self.epochs;
        OptimizerSettings {
            weight_decay: self.weight_decay,
            beta_1: self.adam_beta1,
            beta_2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            clip_norm: (self.grad_clip_norm > 0.0).then_some(self.grad_clip_norm),
            accumulation: self.grad_accum_steps,
            schedule: WarmupCosine {
                base_lr,
                min_lr: base_lr * self.min_lr_ratio,
                warmup_steps: (total_steps as f64 * self.warmup_fraction).round() as usize,
                total_steps,
            },
        }
    }

    /// The direction in which `early_stopping_metric` improves.
    pub fn early_stopping_direction(&self) -> Mode {
        self.early_stopping_mode.unwrap_or_else(|| {
            TRACKED_METRICS
                .iter()
                .chain(TENSOR_METRICS)
                .find(|(n, _)| *n == self.early_stopping_metric)
                .map_or(Mode::Min, |(_, m)| *m)
        })
    }
}
