//! The training loop every model uses, in core so that it also runs in a browser:
//! [`optimizer`] (AdamW, accumulation, clipping, schedule), [`early_stopping`],
//! [`checkpoint`] (bytes), [`spec`] (the JSON run configuration) and per-family drivers
//! ([`clip`], [`tensor`], [`property`]).

pub mod checkpoint;
pub mod clip;
pub mod early_stopping;
pub mod fine_tune;
pub mod optimizer;
pub mod pca;
pub mod property;
pub mod ridge;
pub mod schedule;
pub mod spec;
pub mod ssl;
pub mod standardize;
pub mod tensor;
pub mod trainable;

pub use checkpoint::{
    CheckpointError, TrainState, model_from_bytes, model_to_bytes, pack_sections, unpack_sections,
};
pub use early_stopping::{EarlyStopping, Mode, Verdict};
pub use fine_tune::{
    FineTune, FineTuneError, FineTunePairs, FineTuneReport, FineTuneSettings, parse_pairs_csv,
};
pub use optimizer::{ModelOptimizer, OptimizerSettings};
pub use schedule::WarmupCosine;
pub use standardize::TargetScale;

use burn::prelude::*;

/// A tensor's values in host memory (a synchronous read: native front ends only).
pub fn to_host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().convert::<f32>().to_vec().unwrap_or_default()
}
