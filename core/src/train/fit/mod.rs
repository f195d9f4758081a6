//! The training loop every model uses, in the shape of burn's own learner: a model family
//! says what a batch's loss is and what validation measures ([`TrainStep`]); [`fit`] owns
//! the rest — seeding, epoch batches, gradient accumulation and clipping (through the
//! optimiser), the schedule, early stopping, checkpoints behind a [`RunStore`] (a run
//! directory natively, memory in tests and the browser), exact resume, and progress events
//! for the front end ([`FitObserver`]). The same loop trains data-parallel over several
//! ranks ([`ranks`]).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{Value, json};

use crate::data::epoch_batches;

mod loader;
pub mod ranks;

use ranks::{OneRank, Ranks, RanksError};

use super::ReadError;
use super::checkpoint::{Checkpoint, CheckpointError, TrainState, model_to_bytes};
use super::optimizer::{ModelOptimizer, OptimizerStateError};
use super::spec::TrainingSpec;

/// Named figures: validation metrics (`val_loss`, …), a step's loss parts.
pub type Metrics = Vec<(String, f64)>;

/// The loss of one micro-batch, with named parts to log beside it (e.g. per-task losses).
pub struct StepLoss<B: AutodiffBackend> {
    pub loss: Tensor<B, 1>,
    pub parts: Vec<(String, Tensor<B::InnerBackend, 1>)>,
}

impl<B: AutodiffBackend> StepLoss<B> {
    pub fn new(loss: Tensor<B, 1>) -> Self {
        Self {
            loss,
            parts: Vec::new(),
        }
    }
}

/// A model family's part of training: its batches, its loss, its validation.
pub trait TrainStep<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;
    type Error;

    /// The micro-batches of `epoch` over the training items (default: a shuffle seeded by
    /// (seed, epoch), cut into `batch_size` chunks).
    fn batches(&self, epoch: usize, train: &[usize], t: &TrainingSpec) -> Vec<Vec<usize>> {
        epoch_batches(train, t.batch_size, t.seed, epoch)
    }

    /// A micro-batch as read from the data, before it reaches the device.
    type Batch;

    /// Reads the micro-batch `items`, the `batch`-th of `epoch` (for randomness that must
    /// repeat on resume, such as masking). Natively this runs on a loader thread ahead of
    /// training: it must not touch the model or the backend's generator.
    fn load(&self, items: &[usize], epoch: usize, batch: usize)
    -> Result<Self::Batch, Self::Error>;

    /// The loss of a loaded micro-batch.
    fn loss(&self, model: &Self::Model, batch: Self::Batch) -> Result<StepLoss<B>, Self::Error>;

    /// The loss of this rank's part of a global micro-batch in a data-parallel run. The loop
    /// averages the ranks' gradients, so a loss that is a mean over the batch's items (the
    /// default: [`Self::loss`]) trains as one process would on the whole batch. A loss that
    /// couples the items (a contrastive one) sees the other ranks' parts through
    /// [`ranks::gather_rows`].
    fn loss_across<R: Ranks>(
        &self,
        model: &Self::Model,
        batch: Self::Batch,
        _ranks: &R,
    ) -> Result<StepLoss<B>, Self::Error> {
        self.loss(model, batch)
    }

    /// What validation measures, by name (the names early stopping may watch); empty when
    /// the run has no validation.
    fn validate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Result<Metrics, Self::Error>;
}

/// Where a run keeps its checkpoints (`last`, `best`) and metric lines.
pub trait RunStore {
    type Error;
    /// Replaces the checkpoint `which`; an interrupted save leaves the old one.
    fn save_checkpoint(&mut self, which: &str, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Makes `to` the checkpoint `from` is now.
    fn copy_checkpoint(&mut self, from: &str, to: &str) -> Result<(), Self::Error>;
    fn append_metrics(&mut self, lines: &[Value]) -> Result<(), Self::Error>;
    /// Keeps the metric lines of epochs up to `epoch` (a resumed run continues after it).
    fn truncate_metrics(&mut self, epoch: usize) -> Result<(), Self::Error>;
    /// Whether checkpoints are wanted at all: when not, [`fit`] does not serialise the model
    /// (a browser fine-tune, whose result is the model it returns).
    fn keeps_checkpoints(&self) -> bool {
        true
    }
}

/// How an epoch ended, for the front end.
pub struct EpochEnd<'a> {
    pub epoch: usize,
    pub epochs: usize,
    /// The line written to the metrics (train and validation figures, `best`).
    pub line: &'a Value,
    /// The watched metric improved: this epoch's checkpoint is now `best`.
    pub improved: bool,
    /// Early stopping ends the run after this epoch.
    pub stopped: bool,
}

/// What a front end sees of training: progress, and each finished epoch with its model.
pub trait FitObserver<M> {
    type Error;
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// A micro-batch's loss (before its update) and the learning rate it was taken at; an
    /// error stops the run (e.g. a browser's step callback threw).
    fn step(&mut self, _loss: f64, _lr: f64) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The epoch's optimisation is done and validation follows; `line` may take figures of
    /// the front end's (e.g. the seconds it took).
    fn epoch_trained(&mut self, _line: &mut Value) {}
    /// The epoch is recorded and checkpointed; `model` is its weights for inference.
    fn epoch_end(&mut self, _end: &EpochEnd, _model: &M) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The observer that sees nothing.
impl<M> FitObserver<M> for () {
    type Error = std::convert::Infallible;
}

/// What [`fit`] needs besides the model: the training settings, the items, where the run
/// starts (a fresh [`TrainingSpec::fresh_state`] or a checkpoint's state), an epoch to
/// stop after (tests of resume) and the ranks training together ([`OneRank`] alone).
pub struct FitSettings<'a, R: Ranks = OneRank> {
    pub training: &'a TrainingSpec,
    pub train: &'a [usize],
    pub state: TrainState,
    pub stop_after: Option<usize>,
    pub ranks: &'a R,
}

/// What a front end's error type `E` takes in from a [`fit`]: the step's, the store's and the
/// observer's errors, and device reads and checkpoint encoding that failed.
pub trait FitError<StepError, StoreError, ObserverError>:
    From<StepError>
    + From<StoreError>
    + From<ObserverError>
    + From<ReadError>
    + From<CheckpointError>
    + From<OptimizerStateError>
    + From<RanksError>
{
}

impl<E, StepError, StoreError, ObserverError> FitError<StepError, StoreError, ObserverError> for E where
    E: From<StepError>
        + From<StoreError>
        + From<ObserverError>
        + From<ReadError>
        + From<CheckpointError>
        + From<OptimizerStateError>
        + From<RanksError>
{
}

/// A finished (or stopped) [`fit`].
pub struct Fitted<M> {
    pub model: M,
    pub state: TrainState,
    /// The last epoch of this call whose watched metric improved, with its validation.
    pub best: Option<(usize, Metrics)>,
    /// Training items seen by this call.
    pub items_seen: usize,
}

/// Trains `model` from `settings.state` to `training.epochs` (or early stopping). After each
/// epoch: validation, the metrics line, early stopping on `training.early_stopping_metric`,
/// `last` saved and copied to `best` when the metric improved (or when nothing is watched).
/// A run resumed from its `last` checkpoint continues exactly: every random stream is a
/// function of (seed, epoch). Errors come back as the front end's `E`, each with its kind.
///
/// Batches are loaded on a thread ahead of training, in their order.
#[cfg(not(target_family = "wasm"))]
pub fn fit<B, S, St, O, E, R>(
    step: &S,
    model: S::Model,
    optimizer: &mut ModelOptimizer<B, S::Model>,
    settings: FitSettings<R>,
    store: &mut St,
    observer: &mut O,
    device: &B::Device,
) -> Result<Fitted<S::Model>, E>
where
    B: AutodiffBackend,
    S: TrainStep<B> + Sync,
    S::Batch: Send,
    S::Error: Send,
    St: RunStore,
    O: FitObserver<<S::Model as AutodiffModule<B>>::InnerModule>,
    E: FitError<S::Error, St::Error, O::Error>,
    R: Ranks,
{
    std::thread::scope(|scope| {
        let mut loader = loader::ThreadLoader::new(scope, step);
        futures_lite::future::block_on(fit_with(
            step,
            model,
            optimizer,
            settings,
            store,
            observer,
            device,
            &mut loader,
        ))
    })
}

/// [`fit`], reading losses back asynchronously: a browser cannot wait for WebGPU. Validation
/// and checkpoints read synchronously, so in a browser the step has no validation and the
/// store keeps no checkpoints ([`RunStore::keeps_checkpoints`]). Batches are loaded when
/// they are due.
pub async fn fit_async<B, S, St, O, E, R>(
    step: &S,
    model: S::Model,
    optimizer: &mut ModelOptimizer<B, S::Model>,
    settings: FitSettings<'_, R>,
    store: &mut St,
    observer: &mut O,
    device: &B::Device,
) -> Result<Fitted<S::Model>, E>
where
    B: AutodiffBackend,
    S: TrainStep<B>,
    St: RunStore,
    O: FitObserver<<S::Model as AutodiffModule<B>>::InnerModule>,
    E: FitError<S::Error, St::Error, O::Error>,
    R: Ranks,
{
    let mut loader = loader::InlineLoader::new(step);
    fit_with(
        step,
        model,
        optimizer,
        settings,
        store,
        observer,
        device,
        &mut loader,
    )
    .await
}

/// The loop of [`fit`] and [`fit_async`], its batches from `loader`. In a data-parallel run
/// only rank 0 validates, reports to `observer` and writes to `store`.
#[allow(clippy::too_many_arguments)]
async fn fit_with<B, S, St, O, E, L, R>(
    step: &S,
    mut model: S::Model,
    optimizer: &mut ModelOptimizer<B, S::Model>,
    settings: FitSettings<'_, R>,
    store: &mut St,
    observer: &mut O,
    device: &B::Device,
    loader: &mut L,
) -> Result<Fitted<S::Model>, E>
where
    B: AutodiffBackend,
    S: TrainStep<B>,
    St: RunStore,
    O: FitObserver<<S::Model as AutodiffModule<B>>::InnerModule>,
    E: FitError<S::Error, St::Error, O::Error>,
    L: loader::EpochLoader<B, S>,
    R: Ranks,
{
    let t = settings.training;
    let ranks = settings.ranks;
    let (world, lead) = (ranks.world(), ranks.rank() == 0);
    let mut state = settings.state;
    if lead {
        store.truncate_metrics(state.epoch)?;
    }
    // Every rank starts from rank 0's parameters (same seed, same checkpoint), or none trains.
    ranks::check_identical(&model.valid(), ranks, state.step).await?;
    let (mut best, mut items_seen) = (None, 0);
    for epoch in state.epoch + 1..=t.epochs {
        if state.stopped {
            break;
        }
        // Dropout draws from the backend generator: re-seeded per epoch so that a resumed
        // run sees the same stream (each rank its own).
        B::seed(
            device,
            t.seed
                .wrapping_add(epoch as u64)
                .wrapping_add((ranks.rank() as u64) << 32),
        );
        let mut batches = step.batches(epoch, settings.train, t);
        // Items of the global batches: the throughput a front end reports.
        let items: usize = batches.iter().map(Vec::len).sum();
        if world > 1 {
            batches = batches
                .iter()
                .map(|b| ranks::shard(b, ranks))
                .collect::<Result<_, _>>()?;
        }
        let count = batches.len();
        if lead {
            observer.epoch_start(epoch, t.epochs, count);
        }
        let mut steps = EpochSteps::new(epoch, optimizer.step, t, count);
        let mut part_sums: Vec<(String, f64)> = Vec::new();
        loader.start(epoch, batches);
        for _ in 0..count {
            let batch = loader
                .next()
                .ok_or_else(|| ReadError("the batch loader stopped".into()))??;
            let out = if world > 1 {
                step.loss_across(&model, batch, ranks)?
            } else {
                step.loss(&model, batch)?
            };
            let lr = optimizer.lr();
            // The loss and its parts, read back together (averaged over ranks: the global
            // batch's figures).
            let names: Vec<String> = out.parts.iter().map(|(n, _)| n.clone()).collect();
            let mut figures = vec![out.loss.clone().inner()];
            figures.extend(out.parts.into_iter().map(|(_, p)| p));
            let figures = Tensor::cat(figures, 0);
            // The update is queued before the loss is read, so the device is not left idle
            // waiting for the host.
            let stepped;
            (model, stepped) = optimizer.backward_across(model, out.loss, ranks)?;
            if stepped {
                ranks::check_identical(&model.valid(), ranks, optimizer.step).await?;
            }
            let figures = if world > 1 {
                ranks.sum(figures)? / world as f64
            } else {
                figures
            };
            let figures = read_all(figures).await?;
            for (i, (name, value)) in names.into_iter().zip(&figures[1..]).enumerate() {
                match part_sums.get_mut(i) {
                    Some((_, sum)) => *sum += value,
                    None => part_sums.push((name, *value)),
                }
            }
            steps.record(figures[0], lr);
            if lead {
                observer.step(figures[0], lr)?;
            }
        }
        let before_flush = optimizer.step;
        model = optimizer.flush_across(model, ranks)?;
        if optimizer.step != before_flush {
            ranks::check_identical(&model.valid(), ranks, optimizer.step).await?;
        }
        items_seen += items;
        let mut line = json!({
            "kind": "epoch", "epoch": epoch, "step": optimizer.step,
            "train_loss": steps.mean_loss(), "lr": optimizer.lr(),
        });
        for (name, sum) in &part_sums {
            line[format!("train_{name}")] = json!(sum / count.max(1) as f64);
        }
        if !lead {
            // Rank 0 validates and writes; its early-stopping verdict is every rank's.
            state.epoch = epoch;
            state.step = optimizer.step;
            state.stopped =
                ranks::from_lead::<R, B::InnerBackend>(&[false], ranks, device).await?[0];
            if settings.stop_after == Some(epoch) {
                break;
            }
            continue;
        }
        observer.epoch_trained(&mut line);
        let valid = model.valid();
        let metrics = step.validate(&valid)?;
        for (name, value) in &metrics {
            line[name.as_str()] = json!(value);
        }
        let improved =
            end_epoch::<B, _, _, E>(store, t, &mut state, steps, &mut line, &model, optimizer)?;
        ranks::from_lead::<R, B::InnerBackend>(&[state.stopped], ranks, device).await?;
        if improved {
            best = Some((epoch, metrics));
        }
        observer.epoch_end(
            &EpochEnd {
                epoch,
                epochs: t.epochs,
                line: &line,
                improved,
                stopped: state.stopped,
            },
            &valid,
        )?;
        if settings.stop_after == Some(epoch) {
            break;
        }
    }
    Ok(Fitted {
        model,
        state,
        best,
        items_seen,
    })
}

/// The first value of `x`, read back without blocking.
pub(crate) async fn scalar<B: Backend>(x: Tensor<B, 1>) -> Result<f64, ReadError> {
    Ok(read_all(x).await?.first().copied().unwrap_or(f64::NAN))
}

/// The values of `x`, read back without blocking.
async fn read_all<B: Backend>(x: Tensor<B, 1>) -> Result<Vec<f64>, ReadError> {
    let data = x
        .into_data_async()
        .await
        .map_err(|e| ReadError(format!("{e:?}")))?;
    let values: Vec<f32> = data
        .convert::<f32>()
        .into_vec()
        .map_err(|e| ReadError(e.to_string()))?;
    Ok(values.into_iter().map(f64::from).collect())
}

/// Ends an epoch: early stopping watches `line[early_stopping_metric]`; the step lines and
/// `line` (marked `best` when it improved) go to the metrics; `last` is saved and becomes
/// `best` when the metric improved or when nothing is watched. Returns whether it improved.
fn end_epoch<B, M, St, E>(
    store: &mut St,
    t: &TrainingSpec,
    state: &mut TrainState,
    steps: EpochSteps,
    line: &mut Value,
    model: &M,
    optimizer: &ModelOptimizer<B, M>,
) -> Result<bool, E>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    St: RunStore,
    E: From<St::Error> + From<CheckpointError> + From<OptimizerStateError>,
{
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
    line["best"] = json!(improved);
    let mut lines = steps.lines;
    lines.push(line.clone());
    store.append_metrics(&lines)?;
    if !store.keeps_checkpoints() {
        return Ok(improved);
    }
    let checkpoint = Checkpoint {
        state: state.clone(),
        model: model_to_bytes(model)?,
        optimizer: optimizer.to_bytes()?,
    };
    store.save_checkpoint("last", &checkpoint.to_bytes()?)?;
    if improved || watched.is_none() {
        store.copy_checkpoint("last", "best")?;
    }
    Ok(improved)
}

/// One epoch's micro-batch losses and the step lines due every `log_interval` optimiser
/// steps.
struct EpochSteps {
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
    fn new(epoch: usize, step_before: usize, t: &TrainingSpec, batches: usize) -> Self {
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

    fn record(&mut self, loss: f64, lr: f64) {
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
    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.micro.max(1) as f64
    }
}

/// A run kept in memory: tests, and fine-tunes, whose result is the model [`fit`] returns
/// ([`MemoryStore::metrics_only`]).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub checkpoints: std::collections::BTreeMap<String, Vec<u8>>,
    pub metrics: Vec<Value>,
    /// No checkpoints are made: the model is never serialised.
    pub metrics_only: bool,
}

impl MemoryStore {
    pub fn metrics_only() -> Self {
        Self {
            metrics_only: true,
            ..Self::default()
        }
    }
}

impl RunStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn save_checkpoint(&mut self, which: &str, bytes: &[u8]) -> Result<(), Self::Error> {
        self.checkpoints.insert(which.into(), bytes.to_vec());
        Ok(())
    }

    fn copy_checkpoint(&mut self, from: &str, to: &str) -> Result<(), Self::Error> {
        if let Some(bytes) = self.checkpoints.get(from).cloned() {
            self.checkpoints.insert(to.into(), bytes);
        }
        Ok(())
    }

    fn append_metrics(&mut self, lines: &[Value]) -> Result<(), Self::Error> {
        self.metrics.extend_from_slice(lines);
        Ok(())
    }

    fn truncate_metrics(&mut self, epoch: usize) -> Result<(), Self::Error> {
        self.metrics
            .retain(|l| l["epoch"].as_u64().is_some_and(|e| e as usize <= epoch));
        Ok(())
    }

    fn keeps_checkpoints(&self) -> bool {
        !self.metrics_only
    }
}

#[cfg(test)]
mod tests;
