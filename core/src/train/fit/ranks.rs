//! Data parallelism as the loop sees it: N ranks (processes or devices) run the same [`fit`]
//! on disjoint parts of every batch and meet in element-wise sums. The engine behind the sums
//! is the front end's (natively burn-collective); core only says what is summed and when:
//!
//! - every global batch (`training.batch_size` items, cut as one process would cut it) is
//!   split into N equal contiguous parts, rank k taking the k-th, so N ranks train like one
//!   process at the same batch size;
//! - gradients are averaged over ranks before each optimiser step ([`mean_over_ranks`]), so
//!   every rank takes the same step;
//! - a family whose loss couples a batch's items (CLIP's contrastive loss) sees the whole
//!   global batch through [`gather_rows`] and [`TrainStep::loss_across`];
//! - after each step every rank checks its parameters are rank 0's, bit for bit
//!   ([`check_identical`]);
//! - rank 0 alone validates, writes and reports; its early-stopping decision is shared.
//!
//! [`fit`]: super::fit
//! [`TrainStep::loss_across`]: super::TrainStep::loss_across

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// A data-parallel run could not go on: the engine failed, the ranks disagree, or the batch
/// cannot be split.
#[derive(Debug, thiserror::Error)]
#[error("data-parallel training: {0}")]
pub struct RanksError(pub String);

/// The ranks of a run. Every rank makes the same calls in the same order.
pub trait Ranks {
    /// This rank, `0..world()`.
    fn rank(&self) -> usize;
    /// How many ranks train together.
    fn world(&self) -> usize;
    /// The element-wise sum of `x` over every rank (same length everywhere); every rank gets
    /// the same values, and a sum in which only one rank is non-zero is exact.
    fn sum<B: Backend>(&self, x: Tensor<B, 1>) -> Result<Tensor<B, 1>, RanksError>;
}

/// A run on one process: sums are the values themselves.
#[derive(Debug, Default, Clone, Copy)]
pub struct OneRank;

impl Ranks for OneRank {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn sum<B: Backend>(&self, x: Tensor<B, 1>) -> Result<Tensor<B, 1>, RanksError> {
        Ok(x)
    }
}

/// This rank's part of a global batch: the `rank`-th of `world` equal contiguous parts.
pub fn shard<R: Ranks>(batch: &[usize], ranks: &R) -> Result<Vec<usize>, RanksError> {
    let world = ranks.world();
    if !batch.len().is_multiple_of(world) {
        return Err(RanksError(format!(
            "a batch of {} items does not split evenly over {world} ranks \
             (training.batch_size must be a multiple of the ranks, and the training set at \
             least that large)",
            batch.len()
        )));
    }
    let part = batch.len() / world;
    let start = ranks.rank() * part;
    Ok(batch[start..start + part].to_vec())
}

/// Every rank's values of `x` (same length everywhere), in rank order: each rank's vector in
/// its own slot of zeros, summed, which is exact.
pub fn gather<B: Backend, R: Ranks>(
    x: Tensor<B, 1>,
    ranks: &R,
) -> Result<Tensor<B, 1>, RanksError> {
    let (world, rank) = (ranks.world(), ranks.rank());
    if world == 1 {
        return Ok(x);
    }
    let n = x.dims()[0];
    let device = x.device();
    let mut parts = Vec::with_capacity(3);
    if rank > 0 {
        parts.push(Tensor::zeros([rank * n], &device));
    }
    parts.push(x);
    if rank + 1 < world {
        parts.push(Tensor::zeros([(world - rank - 1) * n], &device));
    }
    ranks.sum(Tensor::cat(parts, 0))
}

/// The rows of every rank's `x` (`[b, d]`, same shape everywhere) as one `[world·b, d]`
/// matrix in rank order, for a loss over the global batch. Other ranks' rows are constants;
/// this rank's rows keep their gradient, scaled by `world` so that the gradient average over
/// ranks ([`mean_over_ranks`]) is the one-process gradient of the global loss: rank k's loss
/// is the global loss, and only its own rows carry gradient to its encoders.
pub fn gather_rows<B: AutodiffBackend, R: Ranks>(
    x: Tensor<B, 2>,
    ranks: &R,
) -> Result<Tensor<B, 2>, RanksError> {
    let (world, rank) = (ranks.world(), ranks.rank());
    if world == 1 {
        return Ok(x);
    }
    let [b, d] = x.dims();
    let all = gather(x.clone().inner().reshape([b * d]), ranks)?.reshape([world * b, d]);
    let all = Tensor::<B, 2>::from_inner(all);
    // Same values (x − x is exactly 0), gradient times `world`.
    let fixed = x.clone().detach();
    let live = fixed.clone() + (x - fixed) * world as f64;
    let mut parts = Vec::with_capacity(3);
    if rank > 0 {
        parts.push(all.clone().narrow(0, 0, rank * b));
    }
    parts.push(live);
    if rank + 1 < world {
        parts.push(all.narrow(0, (rank + 1) * b, (world - rank - 1) * b));
    }
    Ok(Tensor::cat(parts, 0))
}

/// Replaces every gradient in `grads` by its mean over ranks, in one sum over all of them
/// (every rank visits the same parameters in the same order). A trainable parameter without a
/// gradient on this rank (its branch unused by this rank's part of the batch) sends zeros, so
/// that every rank sends the same layout; one presence flag per parameter is summed with
/// them, and a parameter that no rank has a gradient for stays without one, as in one process.
pub fn mean_over_ranks<B: AutodiffBackend, M: AutodiffModule<B>, R: Ranks>(
    model: &M,
    grads: &mut GradientsParams,
    ranks: &R,
) -> Result<(), RanksError> {
    let world = ranks.world();
    if world == 1 {
        return Ok(());
    }
    let mut flat = Flatten::<B> {
        grads,
        parts: Vec::new(),
        present: Vec::new(),
    };
    model.visit(&mut flat);
    let Flatten { parts, present, .. } = flat;
    let Some(device) = parts.first().map(Tensor::device) else {
        return Ok(());
    };
    let count = present.len();
    let flags = Tensor::from_data(
        TensorData::new(
            present.iter().map(|&p| p as u8 as f32).collect::<Vec<_>>(),
            [count],
        ),
        &device,
    );
    let sum = ranks.sum(Tensor::cat(parts.into_iter().chain([flags]).collect(), 0))?;
    let values = sum.dims()[0] - count;
    let anywhere = crate::train::to_host(sum.clone().narrow(0, values, count))
        .map_err(|e| RanksError(format!("reading the summed gradients back: {e}")))?
        .into_iter()
        .map(|n| n > 0.5)
        .collect();
    model.visit(&mut Unflatten::<B> {
        grads,
        mean: sum.narrow(0, 0, values) / world as f64,
        anywhere,
        param: 0,
        offset: 0,
    });
    Ok(())
}

/// Checks that every rank's parameters are rank 0's, bit for bit: rank 0's values are
/// gathered (exact), each rank compares them with its own, and the verdicts are shared so that
/// every rank stops together.
pub async fn check_identical<B: Backend, M: Module<B>, R: Ranks>(
    model: &M,
    ranks: &R,
    step: usize,
) -> Result<(), RanksError> {
    if ranks.world() == 1 {
        return Ok(());
    }
    let mut flat = Values::<B> { parts: Vec::new() };
    model.visit(&mut flat);
    if flat.parts.is_empty() {
        return Ok(());
    }
    let own = Tensor::cat(flat.parts, 0);
    let lead = if ranks.rank() == 0 {
        own.clone()
    } else {
        own.zeros_like()
    };
    let lead = ranks.sum(lead)?;
    // NaN is unequal to itself: parameters that are NaN on both sides agree.
    let both_nan = own.clone().is_nan().bool_and(lead.clone().is_nan());
    let differs = own
        .not_equal(lead)
        .bool_and(both_nan.bool_not())
        .any()
        .float()
        .reshape([1]);
    let verdicts = gather(differs, ranks)?;
    let verdicts = read(verdicts).await?;
    match verdicts.iter().position(|&v| v != 0.0) {
        None => Ok(()),
        Some(k) => Err(RanksError(format!(
            "{}, rank {k}'s parameters differ from rank 0's",
            if step == 0 {
                "before the first optimiser step".to_string()
            } else {
                format!("after optimiser step {step}")
            }
        ))),
    }
}

/// Rank 0's `flags`, on every rank.
pub async fn from_lead<R: Ranks, B: Backend>(
    flags: &[bool],
    ranks: &R,
    device: &B::Device,
) -> Result<Vec<bool>, RanksError> {
    if ranks.world() == 1 {
        return Ok(flags.to_vec());
    }
    let lead = ranks.rank() == 0;
    let values: Vec<f32> = flags.iter().map(|&f| (lead && f) as u8 as f32).collect();
    let n = values.len();
    let shared = ranks.sum(Tensor::<B, 1>::from_data(
        TensorData::new(values, [n]),
        device,
    ))?;
    Ok(read(shared).await?.iter().map(|&v| v != 0.0).collect())
}

async fn read<B: Backend>(x: Tensor<B, 1>) -> Result<Vec<f32>, RanksError> {
    x.into_data_async()
        .await
        .map_err(|e| RanksError(format!("reading a sum back: {e:?}")))?
        .convert::<f32>()
        .into_vec()
        .map_err(|e| RanksError(format!("reading a sum back: {e}")))
}

struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    /// Per trainable parameter: whether this rank has its gradient.
    present: Vec<bool>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let g = self.grads.get::<B::InnerBackend, D>(param.id);
        self.present.push(g.is_some());
        let g = g.unwrap_or_else(|| value.inner().zeros_like());
        let n = g.shape().num_elements();
        self.parts.push(g.reshape([n]));
    }
}

struct Unflatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    mean: Tensor<B::InnerBackend, 1>,
    /// Per trainable parameter: whether any rank had its gradient.
    anywhere: Vec<bool>,
    param: usize,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let shape = value.shape();
        let n = shape.num_elements();
        let part = self.mean.clone().narrow(0, self.offset, n);
        self.offset += n;
        let anywhere = self.anywhere[self.param];
        self.param += 1;
        self.grads.remove::<B::InnerBackend, D>(param.id);
        if anywhere {
            let part: Tensor<B::InnerBackend, D> = part.reshape(shape);
            self.grads.register(param.id, part);
        }
    }
}

struct Values<B: Backend> {
    parts: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Values<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        let n = v.shape().num_elements();
        self.parts.push(v.reshape([n]));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier, Mutex};

    use burn::backend::Autodiff;
    use burn::nn::{Linear, LinearConfig};

    use super::*;
    use crate::device::NdArray;
    use crate::train::to_host;

    type B = Autodiff<NdArray>;

    /// Ranks as threads of one process: each sum meets the others at a barrier. A rank that
    /// sends a different length is an error, as it would be for a real engine.
    struct ThreadRanks {
        rank: usize,
        world: usize,
        barrier: Arc<Barrier>,
        slots: Arc<Mutex<Vec<Vec<f32>>>>,
    }

    impl Ranks for ThreadRanks {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.world
        }
        fn sum<Bk: Backend>(&self, x: Tensor<Bk, 1>) -> Result<Tensor<Bk, 1>, RanksError> {
            let own = to_host(x.clone()).map_err(|e| RanksError(e.to_string()))?;
            self.slots.lock().unwrap()[self.rank] = own;
            self.barrier.wait();
            let all = self.slots.lock().unwrap().clone();
            // Everyone has read before anyone writes the next sum.
            self.barrier.wait();
            let n = all[0].len();
            if let Some(other) = all.iter().find(|v| v.len() != n) {
                return Err(RanksError(format!(
                    "ranks sent {n} and {} values",
                    other.len()
                )));
            }
            let sum: Vec<f32> = (0..n).map(|i| all.iter().map(|v| v[i]).sum()).collect();
            Ok(Tensor::from_data(TensorData::new(sum, [n]), &x.device()))
        }
    }

    #[derive(Module, Debug)]
    struct Branches<B: Backend> {
        shared: Linear<B>,
        /// Used by rank 0's items only.
        rare: Linear<B>,
        /// Used by nobody.
        unused: Linear<B>,
        /// Used by everyone, not trained.
        frozen: Linear<B>,
    }

    fn loss(model: &Branches<B>, rank: usize) -> Tensor<B, 1> {
        let device = Default::default();
        let x = Tensor::<B, 2>::from_data(
            [[0.3 + rank as f32, -1.2], [0.7, 0.4 * rank as f32]],
            &device,
        );
        let mut y = model.shared.forward(x.clone()) + model.frozen.forward(x.clone());
        if rank == 0 {
            y = y + model.rare.forward(x).powi_scalar(2);
        }
        y.sum()
    }

    fn grad(grads: &GradientsParams, param: &Param<Tensor<B, 2>>) -> Option<Vec<f32>> {
        grads
            .get::<NdArray, 2>(param.id)
            .map(|g| to_host(g).unwrap())
    }

    /// What each rank's optimiser receives: (shared, rare, unused, frozen) weight gradients.
    type Received = [Option<Vec<f32>>; 4];

    fn received(model: &Branches<B>, grads: &GradientsParams) -> Received {
        [
            grad(grads, &model.shared.weight),
            grad(grads, &model.rare.weight),
            grad(grads, &model.unused.weight),
            grad(grads, &model.frozen.weight),
        ]
    }

    #[test]
    fn a_gradient_missing_on_one_rank_is_averaged_as_one_process_would() {
        let device = Default::default();
        let linear = || LinearConfig::new(2, 3).init::<B>(&device);
        let mut model = Branches {
            shared: linear(),
            rare: linear(),
            unused: linear(),
            frozen: linear(),
        };
        model.frozen = model.frozen.no_grad();

        // One process: the mean of the two ranks' losses over the global batch.
        let whole = (loss(&model, 0) + loss(&model, 1)) / 2.0;
        let expected = received(
            &model,
            &GradientsParams::from_grads(whole.backward(), &model),
        );
        assert!(expected[1].is_some() && expected[2].is_none() && expected[3].is_none());

        let world = 2;
        let barrier = Arc::new(Barrier::new(world));
        let slots = Arc::new(Mutex::new(vec![Vec::new(); world]));
        let ranks: Vec<Received> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let ranks = ThreadRanks {
                        rank,
                        world,
                        barrier: barrier.clone(),
                        slots: slots.clone(),
                    };
                    let model = model.clone();
                    s.spawn(move || {
                        let mut grads =
                            GradientsParams::from_grads(loss(&model, rank).backward(), &model);
                        mean_over_ranks(&model, &mut grads, &ranks).unwrap();
                        received(&model, &grads)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, got) in ranks.iter().enumerate() {
            for (which, (g, e)) in ["shared", "rare", "unused", "frozen"]
                .iter()
                .zip(got.iter().zip(&expected))
            {
                match (g, e) {
                    (None, None) => {}
                    (Some(g), Some(e)) => {
                        for (a, b) in g.iter().zip(e) {
                            assert!(
                                (a - b).abs() <= 1e-6,
                                "rank {rank}, {which}: {g:?} vs {e:?}"
                            );
                        }
                    }
                    _ => panic!("rank {rank}, {which}: gradient {g:?}, one process {e:?}"),
                }
            }
        }
    }
}
