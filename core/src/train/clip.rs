//! Training and evaluating structure–text CLIP on a [`PairSet`]: batching, one epoch of
//! optimisation, and validation metrics computed on the device in blocks.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::data::PairSet;
use crate::featurize::GraphBatch;
use crate::metrics::{RetrievalMetrics, retrieval_metrics, retrieval_metrics_grouped};
use crate::models::clip::{Clip, MAX_LOGIT_SCALE, StructureBatch, TokenizedTexts};

use super::fit::ranks::{OneRank, Ranks, gather_rows};
use super::fit::{Metrics, StepLoss, TrainStep};
use super::{ReadError, to_host};

/// The structures of a batch as read from the data, before they reach the device.
pub enum LoadedStructures {
    /// Row-major structure vectors, read and scaled.
    Vectors(Vec<f32>),
    Graphs(GraphBatch),
}

impl LoadedStructures {
    /// The structures of the items `idx` of `set`: their vectors, or their graphs as one batch.
    pub fn read(set: &PairSet, idx: &[usize]) -> Self {
        match (&set.graphs, &set.element_table) {
            // Every element was looked up in the table when the set was assembled.
            (Some(graphs), Some(table)) => Self::Graphs(
                graphs
                    .batch(idx, table)
                    .expect("graph elements are in the table"),
            ),
            _ => Self::Vectors(set.features_of(idx)),
        }
    }

    pub fn to_device<B: Backend>(self, dim: usize, device: &B::Device) -> StructureBatch<B> {
        match self {
            Self::Vectors(v) => StructureBatch::vectors(v, dim, device),
            Self::Graphs(g) => StructureBatch::Graphs(g.to_tensors(device)),
        }
    }
}

/// The structures of the items `idx`: their vectors, or their graphs as one batch.
pub fn structure_batch<B: Backend>(
    set: &PairSet,
    idx: &[usize],
    device: &B::Device,
) -> StructureBatch<B> {
    LoadedStructures::read(set, idx).to_device(set.feature_dim, device)
}

/// Structures, and token ids and padding mask of the first text, of the items `idx`; `tokens`
/// holds every text of the set tokenized in order ([`crate::data::ItemTexts::all`]).
pub fn clip_batch<B: Backend>(
    set: &PairSet,
    idx: &[usize],
    tokens: &TokenizedTexts,
    device: &B::Device,
) -> (StructureBatch<B>, Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let first: Vec<usize> = idx.iter().map(|&i| set.texts.first_index(i)).collect();
    let (ids, pad) = tokens.batch(&first, device);
    (structure_batch(set, idx, device), ids, pad)
}

/// CLIP's part of [`super::fit`]: the contrastive loss of a batch of pairs of `set`, and
/// retrieval over the validation pairs `val` (none: no validation). A structure with several
/// texts is paired with one of them, drawn anew each epoch from `text_seed`.
pub struct ClipStep<'a, B: Backend> {
    pub set: &'a PairSet,
    /// Every text of the set, tokenized in order.
    pub tokens: &'a TokenizedTexts,
    pub text_seed: u64,
    pub val: &'a [usize],
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: AutodiffBackend> TrainStep<B> for ClipStep<'_, B> {
    type Model = Clip<B>;
    type Error = ReadError;
    /// The items' drawn texts and their structures, read (and scaled) on the loader thread.
    type Batch = (Vec<usize>, LoadedStructures);

    fn load(
        &self,
        items: &[usize],
        epoch: usize,
        _batch: usize,
    ) -> Result<(Vec<usize>, LoadedStructures), ReadError> {
        Ok((
            self.set.texts.draw(items, self.text_seed, epoch),
            LoadedStructures::read(self.set, items),
        ))
    }

    fn loss(
        &self,
        model: &Clip<B>,
        batch: (Vec<usize>, LoadedStructures),
    ) -> Result<StepLoss<B>, ReadError> {
        // One rank's gather is the batch itself.
        self.loss_across(model, batch, &OneRank)
    }

    /// The contrastive loss over the global batch: every rank's embeddings are gathered, so
    /// each pair has the whole global batch's negatives, as in one process.
    fn loss_across<R: Ranks>(
        &self,
        model: &Clip<B>,
        (texts, structures): (Vec<usize>, LoadedStructures),
        ranks: &R,
    ) -> Result<StepLoss<B>, ReadError> {
        let structure = structures.to_device(self.set.feature_dim, &self.device);
        let (ids, pad) = self.tokens.batch(&texts, &self.device);
        let s = model.encode_structures(structure);
        let t = model.text.forward(ids, pad);
        let gathered = gather_rows(s, ranks).and_then(|s| Ok((s, gather_rows(t, ranks)?)));
        let (s, t) = gathered.map_err(|e| ReadError(e.to_string()))?;
        Ok(StepLoss::new(model.loss(s, t)))
    }

    fn validate(&self, model: &Clip<B::InnerBackend>) -> Result<Metrics, ReadError> {
        if self.val.is_empty() {
            return Ok(Vec::new());
        }
        let e = evaluate_clip(
            model,
            self.set,
            self.val,
            self.tokens,
            self.batch_size,
            &self.device,
        )?;
        Ok(e.metrics())
    }
}

/// Unit embeddings of the texts `texts` (indices into the set's texts), in batches.
pub fn embed_texts<B: Backend>(
    model: &Clip<B>,
    texts: &[usize],
    tokens: &TokenizedTexts,
    batch_size: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let out = texts
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let (ids, pad) = tokens.batch(chunk, device);
            model.text.forward(ids, pad)
        })
        .collect();
    Tensor::cat(out, 0)
}

/// Unit embeddings of both sides (each structure's first text) for the items `idx`, in
/// batches, without gradients.
pub fn embed_pairs<B: Backend>(
    model: &Clip<B>,
    set: &PairSet,
    idx: &[usize],
    tokens: &TokenizedTexts,
    batch_size: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let (mut s, mut t) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(batch_size.max(1)) {
        let (structure, ids, pad) = clip_batch::<B>(set, chunk, tokens, device);
        s.push(model.encode_structures(structure));
        t.push(model.text.forward(ids, pad));
    }
    (Tensor::cat(s, 0), Tensor::cat(t, 0))
}

/// Validation figures: the original's per-batch loss and in-batch top-1 accuracies (for
/// comparison with it; each structure with its first text) and retrieval over the whole
/// validation set (each structure once, with every text it has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipEvaluation {
    pub loss: f64,
    /// In-batch top-1, structure → text ("graph to text" in the original).
    pub acc_g2t: f64,
    pub acc_t2g: f64,
    pub retrieval: RetrievalMetrics,
    pub logit_scale: f64,
}

impl ClipEvaluation {
    /// The figures by the names a run records each epoch (see `spec::TRACKED_METRICS`).
    pub fn metrics(&self) -> Metrics {
        let r = &self.retrieval;
        let (g, t) = (&r.structure_to_text, &r.text_to_structure);
        [
            ("val_loss", self.loss),
            ("val_acc_g2t", self.acc_g2t),
            ("val_acc_t2g", self.acc_t2g),
            ("val_r1_g2t", g.recall_at_1),
            ("val_r5_g2t", g.recall_at_5),
            ("val_r10_g2t", g.recall_at_10),
            ("val_mrr_g2t", g.mrr),
            ("val_median_rank_g2t", g.median_rank),
            ("val_r1_t2g", t.recall_at_1),
            ("val_r5_t2g", t.recall_at_5),
            ("val_r10_t2g", t.recall_at_10),
            ("val_mrr_t2g", t.mrr),
            ("val_median_rank_t2g", t.median_rank),
            ("val_matched_cosine", r.matched_cosine_mean),
            ("val_logit_scale", self.logit_scale),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

/// The original's validation figures: contrastive loss and in-batch top-1 accuracies averaged
/// over consecutive batches, each from its own `m × m` cosines (`sim[i * m + j]`: structure i,
/// text j).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InBatchFigures {
    pub loss: f64,
    pub acc_g2t: f64,
    pub acc_t2g: f64,
}

pub fn in_batch_figures(batches: &[Vec<f32>], logit_scale: f64) -> InBatchFigures {
    let scale = logit_scale.min(MAX_LOGIT_SCALE as f64).exp();
    let (mut loss, mut acc_g2t, mut acc_t2g) = (0.0, 0.0, 0.0);
    for sim in batches {
        let m = sim.len().isqrt();
        let at = |i: usize, j: usize| scale * sim[i * m + j] as f64;
        let (mut rows, mut cols, mut hit_r, mut hit_c) = (0.0, 0.0, 0usize, 0usize);
        for i in 0..m {
            let row: Vec<f64> = (0..m).map(|j| at(i, j)).collect();
            let col: Vec<f64> = (0..m).map(|j| at(j, i)).collect();
            rows += log_sum_exp(&row) - at(i, i);
            cols += log_sum_exp(&col) - at(i, i);
            hit_r += usize::from(argmax(&row) == i);
            hit_c += usize::from(argmax(&col) == i);
        }
        let m = m.max(1) as f64;
        loss += (rows + cols) / (2.0 * m);
        acc_g2t += hit_r as f64 / m;
        acc_t2g += hit_c as f64 / m;
    }
    let b = batches.len().max(1) as f64;
    InBatchFigures {
        loss: loss / b,
        acc_g2t: acc_g2t / b,
        acc_t2g: acc_t2g / b,
    }
}

/// Embeds the items `idx` and evaluates them on their device: only each batch's own
/// similarities and per-query counts come back to the host, never the `n × n` matrix.
pub fn evaluate_clip<B: Backend>(
    model: &Clip<B>,
    set: &PairSet,
    idx: &[usize],
    tokens: &TokenizedTexts,
    batch_size: usize,
    device: &B::Device,
) -> Result<ClipEvaluation, ReadError> {
    // With several texts per structure, every text is embedded once: the loss takes each
    // structure's first text from them and retrieval ranks them all.
    let every_text = set.texts.has_several().then(|| set.texts.of_items(idx));
    let (s, t, every_text) = match every_text {
        Some((texts, owners)) => {
            let s = Tensor::cat(
                idx.chunks(batch_size.max(1))
                    .map(|chunk| model.encode_structures(structure_batch(set, chunk, device)))
                    .collect(),
                0,
            );
            let every = embed_texts(model, &texts, tokens, batch_size, device);
            // `of_items` lists each structure's texts together, its first text first.
            let first: Vec<i64> = (0..owners.len())
                .filter(|&k| k == 0 || owners[k] != owners[k - 1])
                .map(|k| k as i64)
                .collect();
            let n = first.len();
            let first = Tensor::<B, 1, Int>::from_data(TensorData::new(first, [n]), device);
            let t = every.clone().select(0, first);
            (s, t, Some((every, owners)))
        }
        None => {
            let (s, t) = embed_pairs(model, set, idx, tokens, batch_size, device);
            (s, t, None)
        }
    };
    let mut batches = Vec::new();
    let mut start = 0;
    while start < idx.len() {
        let end = (start + batch_size.max(1)).min(idx.len());
        let own_s = s.clone().slice(start..end);
        let own_t = t.clone().slice(start..end);
        batches.push(to_host(own_s.matmul(own_t.transpose()))?);
        start = end;
    }
    let scale = to_host(model.logit_scale.val())?;
    let logit_scale = scale.first().copied().unwrap_or(0.0) as f64;
    let figures = in_batch_figures(&batches, logit_scale);
    let retrieval = match every_text {
        Some((every, owners)) => retrieval_metrics_grouped(s, every, &owners)?,
        None => retrieval_metrics(s, t)?,
    };
    Ok(ClipEvaluation {
        loss: figures.loss,
        acc_g2t: figures.acc_g2t,
        acc_t2g: figures.acc_t2g,
        retrieval,
        logit_scale,
    })
}

fn log_sum_exp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// First index of the maximum (ties go to the lower index, as torch.argmax).
fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}
