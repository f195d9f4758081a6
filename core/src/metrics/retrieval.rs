//! Cross-modal retrieval over a validation set: item i of one side matches item i of the
//! other. Ranks count how many candidates score strictly higher than the match, plus one, so
//! ties never flatter the model.

use serde::{Deserialize, Serialize};

/// One direction (queries from one side, candidates from the other).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionMetrics {
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
    pub median_rank: f64,
    /// Recall@10 of a random ranking: 10 / N.
    pub chance_recall_at_10: f64,
}

/// Both directions plus cosine statistics of matched and unmatched pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    pub n: usize,
    /// Structure query → text candidates (rows of the similarity matrix).
    pub structure_to_text: DirectionMetrics,
    /// Text query → structure candidates (columns).
    pub text_to_structure: DirectionMetrics,
    pub matched_cosine_mean: f64,
    pub matched_cosine_std: f64,
    pub unmatched_cosine_mean: f64,
    pub unmatched_cosine_std: f64,
}

/// Metrics of a row-major `n × n` similarity matrix (`sim[i][j]`: structure i vs text j).
pub fn retrieval_metrics(sim: &[f32], n: usize) -> RetrievalMetrics {
    assert_eq!(sim.len(), n * n, "similarity matrix must be n × n");
    let at = |i: usize, j: usize| sim[i * n + j] as f64;
    let ranks_rows: Vec<usize> = (0..n)
        .map(|i| 1 + (0..n).filter(|&j| at(i, j) > at(i, i)).count())
        .collect();
    let ranks_cols: Vec<usize> = (0..n)
        .map(|j| 1 + (0..n).filter(|&i| at(i, j) > at(j, j)).count())
        .collect();
    let (mut matched, mut unmatched) = (Vec::with_capacity(n), Vec::with_capacity(n * n));
    for i in 0..n {
        for j in 0..n {
            if i == j {
                matched.push(at(i, j))
            } else {
                unmatched.push(at(i, j))
            }
        }
    }
    let (mm, ms) = mean_std(&matched);
    let (um, us) = mean_std(&unmatched);
    RetrievalMetrics {
        n,
        structure_to_text: direction(&ranks_rows),
        text_to_structure: direction(&ranks_cols),
        matched_cosine_mean: mm,
        matched_cosine_std: ms,
        unmatched_cosine_mean: um,
        unmatched_cosine_std: us,
    }
}

fn direction(ranks: &[usize]) -> DirectionMetrics {
    let n = ranks.len().max(1) as f64;
    let recall = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let median = match sorted.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => sorted[l / 2] as f64,
        l => (sorted[l / 2 - 1] + sorted[l / 2]) as f64 / 2.0,
    };
    DirectionMetrics {
        recall_at_1: recall(1),
        recall_at_5: recall(5),
        recall_at_10: recall(10),
        mrr: ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n,
        median_rank: median,
        chance_recall_at_10: (10.0 / n).min(1.0),
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}
