//! Small fine-tunes of a bundled CLIP model from a user's CSV of pairs — the browser's and
//! `xtal fine-tune`'s. The structure tower stays locked (as in LiT): the index's structure
//! embeddings and its 2-D map stay valid, so only its text embeddings need recomputing.
//! The text projection and the temperature learn, and the text LayerNorms if asked.

use std::collections::{HashMap, VecDeque};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::bundle::RetrievalIndex;
use crate::data::epoch_batches;
use crate::models::clip::{ByteTokenizer, Clip, clip_loss};

use super::optimizer::{ModelOptimizer, OptimizerSettings};
use super::schedule::WarmupCosine;
use super::trainable::{set_trainable, trainable_parameters};

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

/// The user's pairs, resolved against the bundle's index.
#[derive(Debug, Clone, PartialEq)]
pub enum FineTunePairs {
    /// Texts paired with index rows: the rows' structure embeddings are the targets.
    IndexText {
        rows: Vec<usize>,
        texts: Vec<String>,
    },
    /// Two texts that should embed alike (e.g. a query and the description it should find).
    TextText {
        first: Vec<String>,
        second: Vec<String>,
    },
}

impl FineTunePairs {
    pub fn len(&self) -> usize {
        match self {
            Self::IndexText { rows, .. } => rows.len(),
            Self::TextText { first, .. } => first.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::IndexText { .. } => "id,text",
            Self::TextText { .. } => "text_a,text_b",
        }
    }
}

/// Reads pairs from CSV with the header `id,text` (ids of the bundle's index) or
/// `text_a,text_b`. Every problem names its line.
pub fn parse_pairs_csv(
    csv_text: &str,
    index: Option<&RetrievalIndex>,
) -> Result<FineTunePairs, FineTuneError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| FineTuneError::Pairs(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let by_id = match header.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["id", "text"] => {
            let index = index.filter(|i| i.structure.is_some()).ok_or_else(|| {
                FineTuneError::Pairs(
                    "id,text pairs need a bundle whose index has structure embeddings".into(),
                )
            })?;
            let rows: HashMap<&str, usize> = index
                .records
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            Some(rows)
        }
        ["text_a", "text_b"] => None,
        _ => {
            return Err(FineTuneError::Pairs(format!(
                "the header must be `id,text` (ids of the bundle's index) or `text_a,text_b`, not `{}`",
                header.join(",")
            )));
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| FineTuneError::Pairs(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        let (first, second) = (field(0), field(1));
        if second.is_empty() {
            return Err(FineTuneError::Line {
                line,
                reason: "the text is empty".into(),
            });
        }
        if let Some(rows) = &by_id {
            let row = rows
                .get(first.as_str())
                .ok_or_else(|| FineTuneError::Line {
                    line,
                    reason: format!("id `{first}` is not in the bundle's index"),
                })?;
            a.push(row.to_string());
        } else if first.is_empty() {
            return Err(FineTuneError::Line {
                line,
                reason: "text_a is empty".into(),
            });
        } else {
            a.push(first);
        }
        b.push(second);
    }
    if a.len() < 2 {
        return Err(FineTuneError::Pairs(format!(
            "{} pair(s); a contrastive fine-tune needs at least 2",
            a.len()
        )));
    }
    Ok(match by_id {
        Some(_) => FineTunePairs::IndexText {
            rows: a.iter().map(|r| r.parse().unwrap_or(0)).collect(),
            texts: b,
        },
        None => FineTunePairs::TextText {
            first: a,
            second: b,
        },
    })
}

/// Whether the fine-tune trains the parameter at `path`.
fn fine_tuned(path: &str, layer_norms: bool) -> bool {
    path == "logit_scale"
        || path.starts_with("text.projection.")
        || (layer_norms && path.starts_with("text.") && path.contains("norm"))
}

/// A fine-tune in progress, one [`FineTune::step`] at a time so that a browser can read each
/// loss asynchronously between steps.
pub struct FineTune<B: AutodiffBackend> {
    model: Option<Clip<B>>,
    optimizer: ModelOptimizer<B, Clip<B>>,
    pairs: FineTunePairs,
    /// `[pairs, embed_dim]` structure embeddings of `IndexText` pairs (empty otherwise).
    targets: Vec<f32>,
    tokenizer: ByteTokenizer,
    settings: FineTuneSettings,
    epoch: usize,
    batches: VecDeque<Vec<usize>>,
    /// Steps taken.
    pub step: usize,
}

impl<B: AutodiffBackend> FineTune<B> {
    pub fn new(
        model: Clip<B>,
        tokenizer: ByteTokenizer,
        pairs: FineTunePairs,
        index: Option<&RetrievalIndex>,
        settings: FineTuneSettings,
    ) -> Result<Self, FineTuneError> {
        settings.check()?;
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
            pairs,
            targets,
            tokenizer,
            settings,
            epoch: 0,
            batches: VecDeque::new(),
            step: 0,
        })
    }

    /// Values the fine-tune changes.
    pub fn trainable_parameters(&self) -> usize {
        self.model.as_ref().map_or(0, trainable_parameters)
    }

    pub fn finished(&self) -> bool {
        self.step >= self.settings.steps
    }

    /// One optimiser step on the next batch; returns that batch's loss before the update.
    pub fn step(&mut self) -> Tensor<B::InnerBackend, 1> {
        if self.batches.is_empty() {
            self.epoch += 1;
            let all: Vec<usize> = (0..self.pairs.len()).collect();
            self.batches = epoch_batches(
                &all,
                self.settings.batch_size,
                self.settings.seed,
                self.epoch,
            )
            .into();
        }
        let idx = self.batches.pop_front().unwrap_or_default();
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let loss = pairs_loss(&model, &self.pairs, &self.targets, &idx, &self.tokenizer);
        let detached = loss.clone().inner();
        self.model = Some(self.optimizer.backward(model, loss).0);
        self.step += 1;
        detached
    }

    /// Loss over every pair (the first 512) in one block, without gradients: comparable
    /// before and after the fine-tune.
    pub fn evaluate(&self) -> Tensor<B::InnerBackend, 1> {
        let model = self.model();
        let idx: Vec<usize> = (0..self.pairs.len().min(512)).collect();
        pairs_loss(&model, &self.pairs, &self.targets, &idx, &self.tokenizer)
    }

    /// Runs every remaining step: the loss over the pairs before and after, each step's loss
    /// to `on_step(step, loss)` (an error from it stops the run). Reads are asynchronous, so
    /// the browser runs this on WebGPU; [`FineTune::run_blocking`] is the native front end's.
    pub async fn run(
        &mut self,
        base_weights_sha256: Option<String>,
        mut on_step: impl FnMut(usize, f64) -> Result<(), String>,
    ) -> Result<FineTuneReport, FineTuneError> {
        let loss_before = read_loss(self.evaluate()).await?;
        let mut losses = Vec::with_capacity(self.settings.steps);
        while !self.finished() {
            let loss = read_loss(self.step()).await?;
            losses.push(loss);
            on_step(self.step, loss).map_err(FineTuneError::Run)?;
        }
        let loss_after = read_loss(self.evaluate()).await?;
        Ok(self.report(loss_before, losses, loss_after, base_weights_sha256))
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
        FineTuneReport {
            pairs_kind: self.pairs.kind().into(),
            pairs: self.pairs.len(),
            settings: self.settings.clone(),
            trainable_parameters: self.trainable_parameters(),
            loss_before,
            loss_after,
            losses,
            base_weights_sha256,
        }
    }

    /// The model as it is now, for inference.
    pub fn model(&self) -> Clip<B::InnerBackend> {
        self.model
            .as_ref()
            .expect("the model is put back after every step")
            .valid()
    }
}

async fn read_loss<B: Backend>(loss: Tensor<B, 1>) -> Result<f64, FineTuneError> {
    let data = loss
        .into_data_async()
        .await
        .map_err(|e| FineTuneError::Run(format!("reading the loss: {e:?}")))?;
    let values: Vec<f32> = data
        .convert::<f32>()
        .into_vec()
        .map_err(|e| FineTuneError::Run(format!("reading the loss: {e}")))?;
    Ok(values.first().copied().unwrap_or(f32::NAN) as f64)
}

/// CLIP loss of the pairs `idx`.
fn pairs_loss<B: Backend>(
    model: &Clip<B>,
    pairs: &FineTunePairs,
    targets: &[f32],
    idx: &[usize],
    tokenizer: &ByteTokenizer,
) -> Tensor<B, 1> {
    let device = model.logit_scale.val().device();
    let embed = |texts: &[String]| {
        let chosen: Vec<&str> = idx.iter().map(|&i| texts[i].as_str()).collect();
        let (ids, pad) = tokenizer.batch::<B>(&chosen, &device);
        model.text.forward(ids, pad)
    };
    let (a, b) = match pairs {
        FineTunePairs::IndexText { texts, .. } => {
            let dim = targets.len() / texts.len().max(1);
            let mut rows = Vec::with_capacity(idx.len() * dim);
            for &i in idx {
                rows.extend_from_slice(&targets[i * dim..(i + 1) * dim]);
            }
            let rows = Tensor::from_data(TensorData::new(rows, [idx.len(), dim]), &device);
            (rows, embed(texts))
        }
        FineTunePairs::TextText { first, second } => (embed(first), embed(second)),
    };
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
mod tests {
    use burn::backend::Autodiff;

    use super::*;
    use crate::bundle::IndexRecords;
    use crate::device::NdArray;
    use crate::models::clip::{ClipConfig, StructureProjectorConfig, TextEncoderConfig};
    use crate::train::to_host;

    type B = Autodiff<NdArray>;

    fn config() -> ClipConfig {
        ClipConfig::new(
            TextEncoderConfig::new()
                .with_width(16)
                .with_layers(2)
                .with_heads(2)
                .with_max_len(32)
                .with_embed_dim(8),
            StructureProjectorConfig::new(6).with_embed_dim(8),
        )
    }

    /// 12 entries whose structure embeddings are random unit vectors.
    fn index() -> RetrievalIndex {
        let n = 12;
        let mut state = 7u64;
        let mut structure: Vec<f32> = (0..n * 8)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        for row in structure.chunks_mut(8) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        RetrievalIndex {
            records: IndexRecords {
                ids: (0..n).map(|i| format!("m-{i}")).collect(),
                formulas: vec![None; n],
                descriptions: (0..n).map(|i| format!("material {i}")).collect(),
            },
            dim: 8,
            structure: Some(structure),
            text: None,
            map: None,
        }
    }

    fn pairs_csv() -> String {
        let mut csv = String::from("id,text\n");
        for (i, word) in [
            "oxide",
            "metal",
            "perovskite",
            "layered",
            "cubic",
            "spinel",
            "garnet",
            "zeolite",
            "alloy",
            "halide",
            "nitride",
            "boride",
        ]
        .iter()
        .enumerate()
        {
            csv.push_str(&format!("m-{i},a {word} crystal\n"));
        }
        csv
    }

    /// Projection `w·e + e`, the temperature, and with LayerNorms `2·2w` per layer + `2w`.
    #[test]
    fn trainable_values_are_the_projection_temperature_and_norms() {
        let device = Default::default();
        let (w, e, layers) = (16, 8, 2);
        for (norms, want) in [
            (false, w * e + e + 1),
            (true, w * e + e + 1 + layers * 4 * w + 2 * w),
        ] {
            let model = config().init::<B>(&device);
            let model = set_trainable(model, |p| fine_tuned(p, norms));
            assert_eq!(trainable_parameters(&model), want, "layer_norms = {norms}");
        }
    }

    #[test]
    fn pairs_csv_problems_name_their_line() {
        let index = index();
        let err = |csv: &str| parse_pairs_csv(csv, Some(&index)).unwrap_err().to_string();
        assert!(err("id,text\nm-1,a\nm-99,b\n").contains("line 3: id `m-99`"));
        assert!(err("name,text\nm-1,a\n").contains("`id,text`"));
        assert!(err("id,text\nm-1,a\n").contains("at least 2"));
        assert!(err("id,text\nm-1,a\nm-2,\n").contains("line 3: the text is empty"));
        assert!(parse_pairs_csv("id,text\nm-1,a\nm-2,b\n", None).is_err());
        let texts = parse_pairs_csv("text_a,text_b\nx,y\n\"a, b\",c\n", None).unwrap();
        assert_eq!(
            texts,
            FineTunePairs::TextText {
                first: vec!["x".into(), "a, b".into()],
                second: vec!["y".into(), "c".into()],
            }
        );
    }

    /// 40 steps lower the loss over the pairs, change the projection and leave the structure
    /// tower and the text Transformer exactly as they were.
    #[test]
    fn fine_tune_lowers_the_loss_and_changes_only_trainable_values() {
        let device = Default::default();
        let index = index();
        let model = config().init::<B>(&device);
        let before = model.valid();
        let pairs = parse_pairs_csv(&pairs_csv(), Some(&index)).unwrap();
        let settings = FineTuneSettings {
            steps: 40,
            batch_size: 6,
            learning_rate: 0.02,
            ..Default::default()
        };
        let tokenizer = config().text.tokenizer();
        let mut tune = FineTune::new(model, tokenizer, pairs, Some(&index), settings).unwrap();
        let loss_before = to_host(tune.evaluate()).unwrap()[0];
        while !tune.finished() {
            assert!(to_host(tune.step()).unwrap()[0].is_finite());
        }
        let loss_after = to_host(tune.evaluate()).unwrap()[0];
        assert!(
            loss_after < loss_before - 0.1,
            "{loss_before} → {loss_after}"
        );
        let after = tune.model();
        let x = Tensor::<NdArray, 2>::ones([2, 6], &device);
        let same = |a: Tensor<NdArray, 2>, b: Tensor<NdArray, 2>| {
            to_host(a).unwrap() == to_host(b).unwrap()
        };
        assert!(same(
            before.structure.forward(x.clone()),
            after.structure.forward(x)
        ));
        let (ids, pad) = tokenizer.batch::<NdArray>(&["a zeolite crystal"], &device);
        assert!(!same(
            before.text.forward(ids.clone(), pad.clone()),
            after.text.forward(ids, pad)
        ));
        // Exactly the projection (weight and bias) and the temperature changed.
        let (p0, p1) = (parameters(&before), parameters(&after));
        let changed: usize = p0
            .iter()
            .zip(&p1)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.len())
            .sum();
        assert_eq!(changed, 16 * 8 + 8 + 1);
    }

    fn parameters(model: &Clip<NdArray>) -> Vec<Vec<f32>> {
        struct All(Vec<Vec<f32>>);
        impl burn::module::ModuleVisitor<NdArray> for All {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<NdArray, D>>) {
                self.0.push(to_host(p.val()).unwrap());
            }
        }
        let mut all = All(Vec::new());
        model.visit(&mut all);
        all.0
    }
}
