//! Training, in core so that it also runs in a browser: [`fit`] (the one loop every model
//! trains through, with its [`fit::TrainStep`] per family), [`optimizer`] (AdamW,
//! accumulation, clipping, schedule), [`early_stopping`], [`checkpoint`] (bytes), [`spec`]
//! (the JSON run configuration) and each family's steps and evaluation ([`clip`], [`ssl`],
//! [`tensor`], [`property`]; [`fine_tune`] is the browser's step-by-step CLIP fine-tune).

pub mod checkpoint;
pub mod clip;
pub mod early_stopping;
pub mod fine_tune;
pub mod fit;
pub mod optimizer;
pub mod pca;
pub mod property;
pub mod ridge;
pub mod schedule;
pub mod spec;
pub mod ssl;
pub mod ssl_probes;
pub mod standardize;
pub mod tensor;
pub mod trainable;

pub use checkpoint::{
    Checkpoint, CheckpointError, TrainState, model_from_bytes, model_to_bytes, pack_sections,
    unpack_sections,
};
pub use early_stopping::{EarlyStopping, Mode, Verdict};
/// Held while seeding the backend's one global generator and drawing from it (model
/// initialisation, dropout): ranks that are threads of one process (one per device), and unit
/// tests running in parallel, would otherwise interleave their draws.
pub(crate) fn backend_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `init(device)` with the backend's generator seeded with `seed` and every parameter drawn
/// before it returns (burn draws a parameter lazily, at its first use), while no other thread
/// of this process draws: each rank of a run on several devices of one process then starts
/// from the parameters a process of its own would draw.
pub fn seeded_init<B: Backend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    init: impl FnOnce(&B::Device) -> M,
) -> M {
    struct Draw;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Draw {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    let _alone = backend_rng_lock();
    B::seed(device, seed);
    let model = init(device);
    model.visit(&mut Draw);
    model
}

pub use fine_tune::{
    FineTune, FineTuneError, FineTunePairs, FineTuneReport, FineTuneSettings, parse_pairs_csv,
};
#[cfg(not(target_family = "wasm"))]
pub use fit::fit;
pub use fit::ranks::{OneRank, Ranks, RanksError};
pub use fit::{
    EpochEnd, FitError, FitObserver, FitSettings, Fitted, MemoryStore, Metrics, RunStore, StepLoss,
    TrainStep, fit_async,
};
pub use optimizer::{ModelOptimizer, OptimizerSettings};
pub use schedule::WarmupCosine;
pub use standardize::TargetScale;

use burn::prelude::*;

/// A tensor whose values could not be read back from its device.
#[derive(Debug, thiserror::Error)]
#[error("reading a tensor back from the device failed: {0}")]
pub struct ReadError(String);

/// A tensor's values in host memory (a synchronous read: native front ends only). A failed
/// read is an error, never an empty vector that later code would take for data.
pub fn to_host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Vec<f32>, ReadError> {
    let data = x.try_into_data().map_err(|e| ReadError(e.to_string()))?;
    data.convert::<f32>()
        .into_vec()
        .map_err(|e| ReadError(e.to_string()))
}
