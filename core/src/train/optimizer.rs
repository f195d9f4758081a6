//! One optimiser for every model: AdamW with decoupled weight decay (some parameters, such as
//! CLIP's temperature, exempt), gradient accumulation, global-norm clipping and the warm-up +
//! cosine schedule. It never reads a tensor back, so it runs unchanged in a browser.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::fit::ranks::{OneRank, Ranks, RanksError, mean_over_ranks};
use super::schedule::WarmupCosine;

#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSettings {
    pub weight_decay: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    /// Global L2 norm over all gradients (as torch's `clip_grad_norm_`); `None` = no clipping.
    pub clip_norm: Option<f64>,
    /// Micro-batches whose gradients are averaged into one step.
    pub accumulation: usize,
    pub schedule: WarmupCosine,
}

type Adaptor<M, B> = OptimizerAdaptor<AdamW, M, B>;
type AdaptorRecord<M, B> = <Adaptor<M, B> as Optimizer<M, B>>::Record;

pub struct ModelOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    settings: OptimizerSettings,
    decayed: Adaptor<M, B>,
    undecayed: Adaptor<M, B>,
    no_decay: HashSet<ParamId>,
    accumulator: GradientsAccumulator<M>,
    pending: usize,
    /// Optimiser steps taken.
    pub step: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("optimizer state: {0}")]
pub struct OptimizerStateError(String);

impl<B: AutodiffBackend, M: AutodiffModule<B>> ModelOptimizer<B, M> {
    pub fn new(settings: OptimizerSettings, no_decay: impl IntoIterator<Item = ParamId>) -> Self {
        let adamw = |decay: f64| {
            AdamWConfig::new()
                .with_beta_1(settings.beta_1 as f32)
                .with_beta_2(settings.beta_2 as f32)
                .with_epsilon(settings.epsilon as f32)
                .with_weight_decay(decay as f32)
                .init::<B, M>()
        };
        Self {
            decayed: adamw(settings.weight_decay),
            undecayed: adamw(0.0),
            no_decay: no_decay.into_iter().collect(),
            accumulator: GradientsAccumulator::new(),
            pending: 0,
            step: 0,
            settings,
        }
    }

    /// Learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.settings.schedule.lr(self.step)
    }

    /// Adds one micro-batch's gradients; steps once `accumulation` of them are in. Returns the
    /// model (updated or not) and whether it stepped.
    pub fn backward(&mut self, model: M, loss: Tensor<B, 1>) -> (M, bool) {
        match self.backward_across(model, loss, &OneRank) {
            Ok(out) => out,
            Err(e) => unreachable!("one rank has nothing to disagree with: {e}"),
        }
    }

    /// Steps on whatever is accumulated (the end of an epoch); a no-op when nothing is.
    pub fn flush(&mut self, model: M) -> M {
        match self.flush_across(model, &OneRank) {
            Ok(model) => model,
            Err(e) => unreachable!("one rank has nothing to disagree with: {e}"),
        }
    }

    /// [`Self::backward`] in a data-parallel run: the accumulated gradients are averaged over
    /// `ranks` before the step, so every rank takes the same one.
    pub fn backward_across<R: Ranks>(
        &mut self,
        model: M,
        loss: Tensor<B, 1>,
        ranks: &R,
    ) -> Result<(M, bool), RanksError> {
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.accumulator.accumulate(&model, grads);
        self.pending += 1;
        if self.pending >= self.settings.accumulation.max(1) {
            Ok((self.apply(model, ranks)?, true))
        } else {
            Ok((model, false))
        }
    }

    /// [`Self::flush`] in a data-parallel run.
    pub fn flush_across<R: Ranks>(&mut self, model: M, ranks: &R) -> Result<M, RanksError> {
        if self.pending == 0 {
            Ok(model)
        } else {
            self.apply(model, ranks)
        }
    }

    fn apply<R: Ranks>(&mut self, model: M, ranks: &R) -> Result<M, RanksError> {
        let mut grads = self.accumulator.grads();
        mean_over_ranks(&model, &mut grads, ranks)?;
        let count = std::mem::take(&mut self.pending);
        scale_gradients(&model, &mut grads, count, self.settings.clip_norm);
        let mut exempt = GradientsParams::new();
        model.visit(&mut MoveGrads {
            ids: &self.no_decay,
            from: &mut grads,
            to: &mut exempt,
        });
        let lr = self.lr();
        let model = self.decayed.step(lr, model, grads);
        let model = self.undecayed.step(lr, model, exempt);
        self.step += 1;
        Ok(model)
    }

    /// Moments of both AdamW halves and the step count, as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, OptimizerStateError> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let record = (
            self.decayed.to_record(),
            self.undecayed.to_record(),
            self.step,
        );
        Recorder::<B>::record(&recorder, record, ()).map_err(|e| OptimizerStateError(e.to_string()))
    }

    pub fn load_bytes(
        mut self,
        bytes: Vec<u8>,
        device: &B::Device,
    ) -> Result<Self, OptimizerStateError> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let (decayed, undecayed, step): (AdaptorRecord<M, B>, AdaptorRecord<M, B>, usize) =
            Recorder::<B>::load(&recorder, bytes, device)
                .map_err(|e| OptimizerStateError(e.to_string()))?;
        self.decayed = self.decayed.load_record(decayed);
        self.undecayed = self.undecayed.load_record(undecayed);
        self.step = step;
        Ok(self)
    }
}

/// Averages accumulated gradients over `count` micro-batches and clips their global norm:
/// every gradient is multiplied by `min(1, max_norm / ‖g‖) / count`, a tensor computed on the
/// device (no read-back).
fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    count: usize,
    clip_norm: Option<f64>,
) {
    let mean = 1.0 / count.max(1) as f64;
    let factor = match clip_norm {
        Some(max_norm) => {
            let mut sum = SquaredNorm::<B> { grads, total: None };
            model.visit(&mut sum);
            let Some(total) = sum.total else { return };
            let norm = total.sqrt() * mean;
            let clip = (norm + 1e-6).recip().mul_scalar(max_norm).clamp_max(1.0);
            Some(clip.mul_scalar(mean))
        }
        None if count > 1 => None,
        None => return,
    };
    model.visit(&mut ScaleGrads::<B> {
        grads,
        factor,
        mean,
    });
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct ScaleGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    /// `[1]` tensor factor, or `None` for the plain mean.
    factor: Option<Tensor<B::InnerBackend, 1>>,
    mean: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let g = match &self.factor {
                Some(f) => g * f.clone().reshape([1; D]),
                None => g.mul_scalar(self.mean),
            };
            self.grads.register(param.id, g);
        }
    }
}

struct MoveGrads<'a> {
    ids: &'a HashSet<ParamId>,
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MoveGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.ids.contains(&param.id)
            && let Some(g) = self.from.remove::<B::InnerBackend, D>(param.id)
        {
            self.to.register(param.id, g);
        }
    }
}
