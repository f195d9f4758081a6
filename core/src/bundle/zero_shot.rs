//! Zero-shot scoring: how well each of several phrases describes one structure, as CLIP
//! scores a class prompt — the cosine of the unit embeddings, and a softmax over the phrases
//! at the model's temperature. The CLI (`xtal zero-shot`) and the page give the same numbers.

use serde::Serialize;

use super::index::dot;
use crate::models::clip::MAX_LOGIT_SCALE;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseScore {
    pub phrase: String,
    /// Cosine of the structure's and the phrase's unit embeddings.
    pub score: f32,
    /// Softmax over the phrases of `score × temperature scale`.
    pub probability: f64,
}

/// The factor logits are scaled by: `exp(logit_scale)`, clamped as in training.
pub fn temperature_scale(logit_scale: f32) -> f64 {
    (logit_scale.min(MAX_LOGIT_SCALE) as f64).exp()
}

/// Scores each phrase (`texts`: their unit embeddings, row after row) against the structure's
/// unit embedding; best first.
pub fn zero_shot(
    structure: &[f32],
    phrases: &[String],
    texts: &[f32],
    scale: f64,
) -> Vec<PhraseScore> {
    let d = structure.len().max(1);
    let scores: Vec<f32> = texts.chunks(d).map(|t| dot(t, structure)).collect();
    let logits: Vec<f64> = scores.iter().map(|s| *s as f64 * scale).collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    let mut rows: Vec<PhraseScore> = phrases
        .iter()
        .zip(&scores)
        .zip(&logits)
        .map(|((phrase, &score), l)| PhraseScore {
            phrase: phrase.clone(),
            score,
            probability: (l - max).exp() / total,
        })
        .collect();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    rows
}
