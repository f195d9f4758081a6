//! Small fine-tunes of a bundled CLIP model from a user's CSV of pairs — the browser's and
//! `xtal fine-tune`'s. The structure tower stays locked (as in LiT): the index's structure
//! embeddings and its 2-D map stay valid, so only its text embeddings need recomputing.
//! The text projection and the temperature learn, and the text LayerNorms if asked.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::bundle::RetrievalIndex;
use crate::data::{batches_per_epoch, epoch_batches};
use crate::models::clip::{Clip, TextTokenizer, TokenizedTexts, clip_loss};

use super::ReadError;
use super::checkpoint::CheckpointError;
use super::fit::ranks::{OneRank, RanksError};
use super::fit::{
    FitObserver, FitSettings, MemoryStore, Metrics, StepLoss, TrainStep, fit_async, scalar,
};
use super::optimizer::{ModelOptimizer, OptimizerSettings, OptimizerStateError};
use super::schedule::WarmupCosine;
use super::spec::TrainingSpec;
use super::trainable::{set_trainable, trainable_parameters};

mod pairs;

pub use pairs::{FineTunePairs, parse_pairs_csv};

#[derive(Debug, thiserror::Error)]
pub enum FineTuneError {
    #[error("pairs CSV line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("pairs CSV: {0}")]
    Pairs(String),
    #[error("fine-tune setting {field}: {reason}")]
    Setting { field: &'static str, reason: String },
    #[error("fine-tune: {0}")]
    Run(String),
}

impl From<ReadError> for FineTuneError {
    fn from(e: ReadError) -> Self {
        Self::Run(format!("reading the loss: {e}"))
    }
}

impl From<CheckpointError> for FineTuneError {
    fn from(e: CheckpointError) -> Self {
        Self::Run(e.to_string())
    }
}

impl From<RanksError> for FineTuneError {
    fn from(e: RanksError) -> Self {
        Self::Run(e.to_string())
    }
}

impl From<OptimizerStateError> for FineTuneError {
    fn from(e: OptimizerStateError) -> Self {
        Self::Run(e.to_string())
    }
}

impl From<std::convert::Infallible> for FineTuneError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineTuneSettings {
    /// Optimiser steps (one batch each).
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to a tenth of it over `steps`).
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Also train the text tower's LayerNorms.
    pub layer_norms: bool,
    pub seed: u64,
}

impl Default for FineTuneSettings {
    fn default() -> Self {
        Self {
            steps: 30,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            layer_norms: false,
            seed: 0,
        }
    }
}

impl FineTuneSettings {
    pub fn check(&self) -> Result<(), FineTuneError> {
        let bad = |field, reason: &str| {
            Err(FineTuneError::Setting {
                field,
                reason: reason.into(),
            })
        };
        if !(1..=100_000).contains(&self.steps) {
            return bad("steps", "must be between 1 and 100000");
        }
        if !(2..=4096).contains(&self.batch_size) {
            return bad("batch_size", "must be between 2 and 4096");
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be finite and ≥ 0");
        }
        Ok(())
    }
}

/// Whether the fine-tune trains the parameter at `path`.
fn fine_tuned(path: &str, layer_norms: bool) -> bool {
    path == "logit_scale"
        || path.starts_with("text.projection.")
        || (layer_norms && path.starts_with("text.") && path.contains("norm"))
}

/// A fine-tune: [`FineTune::run`] trains through the one loop ([`fit_async`]), one optimiser
/// step per batch, each loss read back asynchronously so that a browser can run it.
pub struct FineTune<B: AutodiffBackend> {
    model: Option<Clip<B>>,
    optimizer: ModelOptimizer<B, Clip<B>>,
    step: FineTuneStep,
}

/// The fine-tune's part of training: batches of pairs until `settings.steps` steps are taken,
/// the CLIP loss of a batch, no validation (the loss over the pairs is read before and after).
struct FineTuneStep {
    pairs: FineTunePairs,
    /// `[pairs, embed_dim]` structure embeddings of `IndexText` pairs (empty otherwise).
    targets: Vec<f32>,
    tokens: PairTokens,
    settings: FineTuneSettings,
}

/// The pairs' texts as the bundle's tokenizer reads them, once.
struct PairTokens {
    /// `IndexText`'s texts or `TextText`'s first texts.
    first: TokenizedTexts,
    /// `TextText`'s second texts.
    second: Option<TokenizedTexts>,
}

impl PairTokens {
    fn new(pairs: &FineTunePairs, tokenizer: &TextTokenizer) -> Result<Self, FineTuneError> {
        let encode = |texts: &[String]| {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            tokenizer
                .encode_all(&texts)
                .map_err(|e| FineTuneError::Pairs(e.to_string()))
        };
        Ok(match pairs {
            FineTunePairs::IndexText { texts, .. } => Self {
                first: encode(texts)?,
                second: None,
            },
            FineTunePairs::TextText { first, second } => Self {
                first: encode(first)?,
                second: Some(encode(second)?),
            },
        })
    }
}

impl FineTuneStep {
    fn batches_per_epoch(&self) -> usize {
        batches_per_epoch(self.pairs.len(), self.settings.batch_size).max(1)
    }

    /// The loop's settings: enough epochs for `steps` batches, nothing logged or watched.
    fn training(&self) -> TrainingSpec {
        TrainingSpec {
            epochs: self.settings.steps.div_ceil(self.batches_per_epoch()),
            batch_size: self.settings.batch_size,
            seed: self.settings.seed,
            grad_accum_steps: 1,
            log_interval: usize::MAX,
            early_stopping: false,
            ..TrainingSpec::default()
        }
    }
}

impl<B: AutodiffBackend> TrainStep<B> for FineTuneStep {
    type Model = Clip<B>;
    type Error = FineTuneError;
    type Batch = Vec<usize>;

    /// The epoch's shuffled batches, the last epoch cut at `steps` in all.
    fn batches(&self, epoch: usize, train: &[usize], t: &TrainingSpec) -> Vec<Vec<usize>> {
        let done = (epoch - 1) * self.batches_per_epoch();
        let mut batches = epoch_batches(train, t.batch_size, t.seed, epoch);
        batches.truncate(self.settings.steps.saturating_sub(done));
        batches
    }

    fn load(
        &self,
        items: &[usize],
        _epoch: usize,
        _batch: usize,
    ) -> Result<Vec<usize>, FineTuneError> {
        Ok(items.to_vec())
    }

    fn loss(&self, model: &Clip<B>, items: Vec<usize>) -> Result<StepLoss<B>, FineTuneError> {
        Ok(StepLoss::new(pairs_loss(
            model,
            &self.tokens,
            &self.targets,
            &items,
        )))
    }

    fn validate(&self, _model: &Clip<B::InnerBackend>) -> Result<Metrics, FineTuneError> {
        Ok(Metrics::new())
    }
}

/// Each step's loss, to the front end's callback.
struct StepLosses<F> {
    losses: Vec<f64>,
    on_step: F,
}

impl<M, F: FnMut(usize, f64) -> Result<(), String>> FitObserver<M> for StepLosses<F> {
    type Error = FineTuneError;

    fn step(&mut self, loss: f64, _lr: f64) -> Result<(), FineTuneError> {
        self.losses.push(loss);
        (self.on_step)(self.losses.len(), loss).map_err(FineTuneError::Run)
    }
}

impl<B: AutodiffBackend> FineTune<B> {
    pub fn new(
        model: Clip<B>,
        tokenizer: TextTokenizer,
        pairs: FineTunePairs,
        index: Option<&RetrievalIndex>,
        settings: FineTuneSettings,
    ) -> Result<Self, FineTuneError> {
        settings.check()?;
        let tokens = PairTokens::new(&pairs, &tokenizer)?;
        let targets = match &pairs {
            FineTunePairs::IndexText { rows, .. } => {
                let (index, rows_f32) = index
                    .and_then(|i| i.structure.as_deref().map(|s| (i, s)))
                    .ok_or_else(|| {
                        FineTuneError::Pairs(
                            "id,text pairs need an index with structure embeddings".into(),
                        )
                    })?;
                let mut values = Vec::with_capacity(rows.len() * index.dim);
                for &r in rows {
                    values.extend_from_slice(&rows_f32[r * index.dim..(r + 1) * index.dim]);
                }
                values
            }
            FineTunePairs::TextText { .. } => Vec::new(),
        };
        let layer_norms = settings.layer_norms;
        let model = set_trainable(model, |path| fine_tuned(path, layer_norms));
        let optimizer = ModelOptimizer::new(
            OptimizerSettings {
                weight_decay: settings.weight_decay,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                clip_norm: Some(1.0),
                accumulation: 1,
                schedule: WarmupCosine {
                    base_lr: settings.learning_rate,
                    min_lr: settings.learning_rate * 0.1,
                    warmup_steps: 0,
                    total_steps: settings.steps,
                },
            },
            [model.logit_scale.id],
        );
        Ok(Self {
            model: Some(model),
            optimizer,
            step: FineTuneStep {
                pairs,
                targets,
                tokens,
                settings,
            },
        })
    }

    /// Values the fine-tune changes.
    pub fn trainable_parameters(&self) -> usize {
        self.model.as_ref().map_or(0, trainable_parameters)
    }

    /// Loss over every pair (the first 512) in one block, without gradients: comparable
    /// before and after the fine-tune.
    pub fn evaluate(&self) -> Result<Tensor<B::InnerBackend, 1>, FineTuneError> {
        let model = self.model()?;
        let s = &self.step;
        let idx: Vec<usize> = (0..s.pairs.len().min(512)).collect();
        Ok(pairs_loss(&model, &s.tokens, &s.targets, &idx))
    }

    /// Runs the fine-tune: the loss over the pairs before and after, each step's loss to
    /// `on_step(step, loss)` (an error from it stops the run). Reads are asynchronous, so
    /// the browser runs this on WebGPU; [`FineTune::run_blocking`] is the native front end's.
    pub async fn run(
        &mut self,
        base_weights_sha256: Option<String>,
        on_step: impl FnMut(usize, f64) -> Result<(), String>,
    ) -> Result<FineTuneReport, FineTuneError> {
        let loss_before = scalar(self.evaluate()?).await?;
        let model = self
            .model
            .take()
            .ok_or_else(|| FineTuneError::Run("this fine-tune has already run".into()))?;
        let device = model.logit_scale.val().device();
        let training = self.step.training();
        let all: Vec<usize> = (0..self.step.pairs.len()).collect();
        let mut observer = StepLosses {
            losses: Vec::with_capacity(self.step.settings.steps),
            on_step,
        };
        let fitted = fit_async::<B, _, _, _, FineTuneError, _>(
            &self.step,
            model,
            &mut self.optimizer,
            FitSettings {
                training: &training,
                train: &all,
                state: training.fresh_state(),
                stop_after: None,
                ranks: &OneRank,
            },
            &mut MemoryStore::metrics_only(),
            &mut observer,
            &device,
        )
        .await?;
        self.model = Some(fitted.model);
        let loss_after = scalar(self.evaluate()?).await?;
        Ok(self.report(
            loss_before,
            observer.losses,
            loss_after,
            base_weights_sha256,
        ))
    }

    /// [`FineTune::run`], waiting for each read (native targets).
    #[cfg(not(target_family = "wasm"))]
    pub fn run_blocking(
        &mut self,
        base_weights_sha256: Option<String>,
        on_step: impl FnMut(usize, f64) -> Result<(), String>,
    ) -> Result<FineTuneReport, FineTuneError> {
        futures_lite::future::block_on(self.run(base_weights_sha256, on_step))
    }

    /// The report of this fine-tune, given the losses the front end read back.
    fn report(
        &self,
        loss_before: f64,
        losses: Vec<f64>,
        loss_after: f64,
        base_weights_sha256: Option<String>,
    ) -> FineTuneReport {
        let s = &self.step;
        FineTuneReport {
            pairs_kind: s.pairs.kind().into(),
            pairs: s.pairs.len(),
            settings: s.settings.clone(),
            trainable_parameters: self.trainable_parameters(),
            loss_before,
            loss_after,
            losses,
            base_weights_sha256,
        }
    }

    /// The model as it is now, for inference; gone when a run failed (the loop had it).
    pub fn model(&self) -> Result<Clip<B::InnerBackend>, FineTuneError> {
        self.model
            .as_ref()
            .map(AutodiffModule::valid)
            .ok_or_else(|| {
                FineTuneError::Run(
                    "a run of this fine-tune failed and took its model with it".into(),
                )
            })
    }
}

/// CLIP loss of the pairs `idx`: texts against their index rows' structure embeddings
/// (`targets`), or first texts against second texts.
fn pairs_loss<B: Backend>(
    model: &Clip<B>,
    tokens: &PairTokens,
    targets: &[f32],
    idx: &[usize],
) -> Tensor<B, 1> {
    let device = model.logit_scale.val().device();
    let embed = |texts: &TokenizedTexts| {
        let (ids, pad) = texts.batch::<B>(idx, &device);
        model.text.forward(ids, pad)
    };
    let a = match &tokens.second {
        Some(_) => embed(&tokens.first),
        None => {
            let dim = targets.len() / tokens.first.len().max(1);
            let mut rows = Vec::with_capacity(idx.len() * dim);
            for &i in idx {
                rows.extend_from_slice(&targets[i * dim..(i + 1) * dim]);
            }
            Tensor::from_data(TensorData::new(rows, [idx.len(), dim]), &device)
        }
    };
    let b = embed(tokens.second.as_ref().unwrap_or(&tokens.first));
    clip_loss(a, b, model.logit_scale.val())
}

/// What a finished fine-tune did: stored in the new bundle's manifest (`source`) and card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneReport {
    /// `id,text` or `text_a,text_b`.
    pub pairs_kind: String,
    pub pairs: usize,
    pub settings: FineTuneSettings,
    pub trainable_parameters: usize,
    /// Loss over every pair (the first 512) before and after.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Each step's batch loss.
    pub losses: Vec<f64>,
    /// sha256 of the weights of the bundle it started from.
    pub base_weights_sha256: Option<String>,
}

impl FineTuneReport {
    /// The model card's section about this fine-tune.
    pub fn card_section(&self, front_end: &str) -> String {
        let s = &self.settings;
        format!(
            "## Fine-tuned ({front_end})\n\n\
             {} `{}` pairs, {} steps (batch {}, learning rate {:e}, weight decay {}), \
             {} trainable values (text projection, temperature{}); structure tower locked.\n\
             Loss over the pairs: {:.4} before, {:.4} after.\n",
            self.pairs,
            self.pairs_kind,
            s.steps,
            s.batch_size,
            s.learning_rate,
            s.weight_decay,
            self.trainable_parameters,
            if s.layer_norms {
                ", text LayerNorms"
            } else {
                ""
            },
            self.loss_before,
            self.loss_after,
        )
    }
}

#[cfg(test)]
mod tests;
