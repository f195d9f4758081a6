//! Where an epoch's batches are loaded: in order on the training thread (in a browser), or
//! natively on a loader thread that keeps the next batches ready — read from memory-mapped
//! storage, scaled, assembled — while the device computes the current one. Either way the
//! batches arrive in the order [`TrainStep::batches`] drew them: the same for the same seed.

use burn::tensor::backend::AutodiffBackend;

use super::TrainStep;

/// Batches a loader thread may hold ready ahead of training.
#[cfg(not(target_family = "wasm"))]
pub const LOADER_DEPTH: usize = 2;

/// One epoch's batches, in order.
pub trait EpochLoader<B: AutodiffBackend, S: TrainStep<B>> {
    /// Starts loading `batches` (item lists) of `epoch`; batches of an earlier epoch not yet
    /// taken are dropped.
    fn start(&mut self, epoch: usize, batches: Vec<Vec<usize>>);
    /// The next batch, or `None` when the epoch's are all taken.
    fn next(&mut self) -> Option<Result<S::Batch, S::Error>>;
}

/// Loads each batch when it is asked for.
pub struct InlineLoader<'s, S> {
    step: &'s S,
    epoch: usize,
    batches: std::vec::IntoIter<Vec<usize>>,
    index: usize,
}

impl<'s, S> InlineLoader<'s, S> {
    pub fn new(step: &'s S) -> Self {
        Self {
            step,
            epoch: 0,
            batches: Vec::new().into_iter(),
            index: 0,
        }
    }
}

impl<B: AutodiffBackend, S: TrainStep<B>> EpochLoader<B, S> for InlineLoader<'_, S> {
    fn start(&mut self, epoch: usize, batches: Vec<Vec<usize>>) {
        (self.epoch, self.batches, self.index) = (epoch, batches.into_iter(), 0);
    }

    fn next(&mut self) -> Option<Result<S::Batch, S::Error>> {
        let items = self.batches.next()?;
        self.index += 1;
        Some(self.step.load(&items, self.epoch, self.index - 1))
    }
}

/// Loads on a thread of `scope`, at most [`LOADER_DEPTH`] batches ahead. The thread stops
/// after a failed batch, and when the loader is dropped or restarted.
#[cfg(not(target_family = "wasm"))]
pub struct ThreadLoader<'scope, 'env, S, T, E> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    step: &'env S,
    ready: Option<std::sync::mpsc::Receiver<Result<T, E>>>,
}

#[cfg(not(target_family = "wasm"))]
impl<'scope, 'env, S, T, E> ThreadLoader<'scope, 'env, S, T, E> {
    pub fn new(scope: &'scope std::thread::Scope<'scope, 'env>, step: &'env S) -> Self {
        Self {
            scope,
            step,
            ready: None,
        }
    }
}

#[cfg(not(target_family = "wasm"))]
impl<'scope, 'env, B, S> EpochLoader<B, S> for ThreadLoader<'scope, 'env, S, S::Batch, S::Error>
where
    B: AutodiffBackend,
    S: TrainStep<B> + Sync,
    S::Batch: Send + 'scope,
    S::Error: Send + 'scope,
{
    fn start(&mut self, epoch: usize, batches: Vec<Vec<usize>>) {
        let (send, ready) = std::sync::mpsc::sync_channel(LOADER_DEPTH);
        // Dropping the previous receiver ends a thread still loading.
        self.ready = Some(ready);
        let step = self.step;
        self.scope.spawn(move || {
            for (k, items) in batches.iter().enumerate() {
                let batch = step.load(items, epoch, k);
                let failed = batch.is_err();
                if send.send(batch).is_err() || failed {
                    break;
                }
            }
        });
    }

    fn next(&mut self) -> Option<Result<S::Batch, S::Error>> {
        self.ready.as_ref()?.recv().ok()
    }
}
