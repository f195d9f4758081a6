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
/// (every rank visits the same parameters in the same order).
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
    };
    model.visit(&mut flat);
    if flat.parts.is_empty() {
        return Ok(());
    }
    let mean = ranks.sum(Tensor::cat(flat.parts, 0))? / world as f64;
    model.visit(&mut Unflatten::<B> {
        grads,
        flat: mean,
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
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let n = g.shape().num_elements();
            self.parts.push(g.reshape([n]));
        }
    }
}

struct Unflatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let shape = g.shape();
            let n = shape.num_elements();
            let part = self.flat.clone().narrow(0, self.offset, n);
            self.offset += n;
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
