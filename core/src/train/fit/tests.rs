use burn::backend::Autodiff;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};

use super::ranks::OneRank;
use super::*;
use crate::device::NdArray;
use crate::train::{model_from_bytes, to_host};

type B = Autodiff<NdArray>;

#[derive(Module, Debug)]
struct Toy<B: Backend> {
    linear: Linear<B>,
    dropout: Dropout,
}

/// Regression of y = 2·x0 − x1 on 40 points, 10 of them for validation.
struct ToyStep {
    x: Vec<[f32; 2]>,
    /// The threads batches were loaded on.
    loaded_on: std::sync::Mutex<Vec<std::thread::ThreadId>>,
    /// (epoch, batch) whose loading fails.
    unreadable: Option<(usize, usize)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ToyError(String);

impl From<ReadError> for ToyError {
    fn from(e: ReadError) -> Self {
        Self(e.to_string())
    }
}
impl From<CheckpointError> for ToyError {
    fn from(e: CheckpointError) -> Self {
        Self(e.to_string())
    }
}
impl From<RanksError> for ToyError {
    fn from(e: RanksError) -> Self {
        Self(e.to_string())
    }
}
impl From<OptimizerStateError> for ToyError {
    fn from(e: OptimizerStateError) -> Self {
        Self(e.to_string())
    }
}
impl From<std::convert::Infallible> for ToyError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl ToyStep {
    fn mse<Bk: Backend>(&self, model: &Toy<Bk>, items: &[usize]) -> Tensor<Bk, 1> {
        let device = model.linear.weight.val().device();
        let x: Vec<f32> = items.iter().flat_map(|&i| self.x[i]).collect();
        let y: Vec<f32> = items
            .iter()
            .map(|&i| 2.0 * self.x[i][0] - self.x[i][1])
            .collect();
        let x = Tensor::<Bk, 2>::from_data(TensorData::new(x, [items.len(), 2]), &device);
        let y = Tensor::<Bk, 2>::from_data(TensorData::new(y, [items.len(), 1]), &device);
        let p = model.linear.forward(model.dropout.forward(x));
        (p - y).powi_scalar(2).mean()
    }
}

impl TrainStep<B> for ToyStep {
    type Model = Toy<B>;
    type Error = ToyError;
    type Batch = Vec<usize>;

    fn load(&self, items: &[usize], epoch: usize, batch: usize) -> Result<Vec<usize>, ToyError> {
        self.loaded_on
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        if self.unreadable == Some((epoch, batch)) {
            return Err(ToyError(format!(
                "batch {batch} of epoch {epoch} is unreadable"
            )));
        }
        Ok(items.to_vec())
    }

    fn loss(&self, model: &Toy<B>, items: Vec<usize>) -> Result<StepLoss<B>, ToyError> {
        let loss = self.mse(model, &items);
        let half = loss.clone().inner() * 0.5;
        Ok(StepLoss {
            loss,
            parts: vec![("half".into(), half)],
        })
    }

    fn validate(&self, model: &Toy<NdArray>) -> Result<Metrics, ToyError> {
        let loss = self.mse(model, &(30..40).collect::<Vec<_>>());
        Ok(vec![("val_loss".into(), to_host(loss)?[0] as f64)])
    }
}

fn setup() -> (ToyStep, TrainingSpec, Vec<usize>) {
    let x = (0..40)
        .map(|i| [(i as f32 * 0.37).sin(), (i as f32 * 0.11).cos()])
        .collect();
    let training = TrainingSpec {
        epochs: 6,
        batch_size: 8,
        learning_rate: 0.05,
        grad_accum_steps: 2,
        log_interval: 1,
        ..TrainingSpec::default()
    };
    let step = ToyStep {
        x,
        loaded_on: Default::default(),
        unreadable: None,
    };
    (step, training, (0..30).collect())
}

fn init(t: &TrainingSpec) -> Toy<B> {
    let device = Default::default();
    B::seed(&device, t.seed);
    Toy {
        linear: LinearConfig::new(2, 1).init(&device),
        dropout: DropoutConfig::new(0.1).init(),
    }
}

fn run(
    epochs: usize,
    stop_after: Option<usize>,
    resume: Option<&MemoryStore>,
) -> (MemoryStore, TrainState) {
    let (step, mut t, train) = setup();
    t.epochs = epochs;
    let device = Default::default();
    let settings = t.optimizer_settings(t.learning_rate, train.len());
    let mut model = init(&t);
    let mut optimizer = ModelOptimizer::<B, Toy<B>>::new(settings, []);
    let mut state = t.fresh_state();
    let mut store = MemoryStore::default();
    if let Some(previous) = resume {
        store = previous.clone();
        let c = Checkpoint::from_bytes(&store.checkpoints["last"]).unwrap();
        model = model_from_bytes(model, c.model, &device).unwrap();
        optimizer = optimizer.load_bytes(c.optimizer, &device).unwrap();
        state = c.state;
    }
    let fitted = fit::<_, _, _, _, ToyError, _>(
        &step,
        model,
        &mut optimizer,
        FitSettings {
            training: &t,
            train: &train,
            state,
            stop_after,
            ranks: &OneRank,
        },
        &mut store,
        &mut (),
        &device,
    )
    .unwrap();
    (store, fitted.state)
}

/// A checkpoint's state and weights, by value.
fn saved(bytes: &[u8]) -> (TrainState, Vec<f32>) {
    let (_, t, _) = setup();
    let device = Default::default();
    let c = Checkpoint::from_bytes(bytes).unwrap();
    let model = model_from_bytes(init(&t), c.model, &device).unwrap();
    let weights = [model.linear.weight.val().flatten::<1>(0, 1)]
        .into_iter()
        .chain(model.linear.bias.as_ref().map(|b| b.val()))
        .flat_map(|p| to_host(p).unwrap())
        .collect();
    (c.state, weights)
}

#[test]
fn a_resumed_fit_continues_exactly() {
    let _rng = crate::train::backend_rng_lock();
    let (whole, state) = run(6, None, None);
    assert_eq!(state.epoch, 6);
    // Two micro-batches per step, 30 items in batches of 8: 4 micro-batches, 2 steps.
    assert_eq!(state.step, 12);
    let (stopped, _) = run(6, Some(2), None);
    let (resumed, _) = run(6, None, Some(&stopped));
    assert_eq!(whole.metrics, resumed.metrics);
    // Parameter ids are drawn anew by each initialisation: compare what they name.
    assert_eq!(
        saved(&whole.checkpoints["last"]),
        saved(&resumed.checkpoints["last"])
    );
    // The AdamW moments too: one more epoch from either checkpoint is the same epoch.
    let (more_whole, _) = run(7, None, Some(&whole));
    let (more_resumed, _) = run(7, None, Some(&resumed));
    assert_eq!(more_whole.metrics, more_resumed.metrics);
    assert_eq!(
        saved(&more_whole.checkpoints["last"]),
        saved(&more_resumed.checkpoints["last"])
    );
    let epochs: Vec<&Value> = whole
        .metrics
        .iter()
        .filter(|l| l["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 6);
    assert!(epochs[5]["val_loss"].as_f64().unwrap() < epochs[0]["val_loss"].as_f64().unwrap());
    // The part is averaged over the epoch's micro-batches like the loss it halves.
    for e in &epochs {
        let (loss, half) = (
            e["train_loss"].as_f64().unwrap(),
            e["train_half"].as_f64().unwrap(),
        );
        assert!((half - loss / 2.0).abs() < 1e-6, "{e}");
    }
    // `best` is the checkpoint of the lowest validation loss.
    let best_epoch = epochs
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .partial_cmp(&b["val_loss"].as_f64())
                .unwrap()
        })
        .unwrap()["epoch"]
        .as_u64()
        .unwrap() as usize;
    let best = Checkpoint::from_bytes(&whole.checkpoints["best"]).unwrap();
    assert_eq!(best.state.epoch, best_epoch);
}

#[test]
fn early_stopping_ends_the_run_and_a_resume_does_not_restart_it() {
    let _rng = crate::train::backend_rng_lock();
    let (step, mut t, train) = setup();
    t.early_stopping = true;
    t.early_stopping_patience = 1;
    // A vanishing learning rate never improves by min_delta after the first epoch.
    t.early_stopping_min_delta = 1e-3;
    t.learning_rate = 1e-12;
    let device = Default::default();
    let mut optimizer =
        ModelOptimizer::<B, Toy<B>>::new(t.optimizer_settings(t.learning_rate, 30), []);
    let mut store = MemoryStore::default();
    let fitted = fit::<_, _, _, _, ToyError, _>(
        &step,
        init(&t),
        &mut optimizer,
        FitSettings {
            training: &t,
            train: &train,
            state: t.fresh_state(),
            stop_after: None,
            ranks: &OneRank,
        },
        &mut store,
        &mut (),
        &device,
    )
    .unwrap();
    assert!(fitted.state.stopped);
    assert!(fitted.state.epoch < 6, "{}", fitted.state.epoch);
    let again = fit::<_, _, _, _, ToyError, _>(
        &step,
        fitted.model,
        &mut optimizer,
        FitSettings {
            training: &t,
            train: &train,
            state: fitted.state.clone(),
            stop_after: None,
            ranks: &OneRank,
        },
        &mut store,
        &mut (),
        &device,
    )
    .unwrap();
    assert_eq!(again.state, fitted.state);
}

/// The same run with batches loaded on a loader thread ([`fit`]) and when due on the
/// training thread ([`fit_async`], as in a browser).
fn loaded_both_ways(
    unreadable: Option<(usize, usize)>,
) -> [(Result<MemoryStore, String>, usize); 2] {
    [true, false].map(|threaded| {
        let (mut step, t, train) = setup();
        step.unreadable = unreadable;
        let device = Default::default();
        let mut optimizer =
            ModelOptimizer::<B, Toy<B>>::new(t.optimizer_settings(t.learning_rate, 30), []);
        let mut store = MemoryStore::default();
        let settings = FitSettings {
            training: &t,
            train: &train,
            state: t.fresh_state(),
            stop_after: None,
            ranks: &OneRank,
        };
        let model = init(&t);
        let fitted = if threaded {
            fit::<_, _, _, _, ToyError, _>(
                &step,
                model,
                &mut optimizer,
                settings,
                &mut store,
                &mut (),
                &device,
            )
        } else {
            futures_lite::future::block_on(fit_async::<_, _, _, _, ToyError, _>(
                &step,
                model,
                &mut optimizer,
                settings,
                &mut store,
                &mut (),
                &device,
            ))
        };
        let here = std::thread::current().id();
        let elsewhere = step
            .loaded_on
            .lock()
            .unwrap()
            .iter()
            .filter(|id| **id != here)
            .count();
        (fitted.map(|_| store).map_err(|e| e.to_string()), elsewhere)
    })
}

#[test]
fn batches_loaded_ahead_on_a_thread_train_as_batches_loaded_when_due() {
    let _rng = crate::train::backend_rng_lock();
    let [(threaded, elsewhere), (inline, inline_elsewhere)] = loaded_both_ways(None);
    let (threaded, inline) = (threaded.unwrap(), inline.unwrap());
    // Every batch of the 6 epochs loaded off the training thread, or every one on it.
    let batches = 6 * crate::data::batches_per_epoch(30, 8);
    assert_eq!((elsewhere, inline_elsewhere), (batches, 0));
    assert_eq!(threaded.metrics, inline.metrics);
    assert_eq!(
        saved(&threaded.checkpoints["last"]),
        saved(&inline.checkpoints["last"])
    );
}

#[test]
fn a_batch_that_cannot_be_loaded_stops_the_run_with_its_error() {
    let _rng = crate::train::backend_rng_lock();
    for (outcome, _) in loaded_both_ways(Some((2, 1))) {
        let e = outcome.unwrap_err();
        assert_eq!(e, "batch 1 of epoch 2 is unreadable");
    }
}
