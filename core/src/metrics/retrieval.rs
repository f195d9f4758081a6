//! Cross-modal retrieval over a validation set: item i of one side matches item i of the
//! other, or each text matches the structure it describes. Ranks count how many candidates
//! score strictly higher than the match, plus one, so ties never flatter the model.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::train::{ReadError, to_host};

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

/// Similarities computed at once, at most: 8 Mi floats (32 MiB; a few times that with the
/// comparisons and moments taken from them) whatever the number of pairs — at 129k pairs the
/// full matrix would take 67 GB.
pub const BLOCK_ELEMENTS: usize = 1 << 23;

/// Retrieval between paired unit embeddings (`structures[i]` matches `texts[i]`, both
/// `n × d`), computed on their device in blocks of rows of the similarity matrix: exact ranks,
/// with host memory linear in `n`.
pub fn retrieval_metrics<B: Backend>(
    structures: Tensor<B, 2>,
    texts: Tensor<B, 2>,
) -> Result<RetrievalMetrics, ReadError> {
    let owners: Vec<usize> = (0..texts.dims()[0]).collect();
    retrieval_metrics_grouped(structures, texts, &owners)
}

/// Retrieval with one or more texts per structure (`texts[k]` belongs to
/// `structures[owners[k]]`), as image–caption benchmarks count it: every structure is one
/// query, found when the best-ranked of its texts is; every text is one query.
pub fn retrieval_metrics_grouped<B: Backend>(
    structures: Tensor<B, 2>,
    texts: Tensor<B, 2>,
    owners: &[usize],
) -> Result<RetrievalMetrics, ReadError> {
    let n = structures.dims()[0].max(texts.dims()[0]).max(1);
    retrieval_metrics_in_blocks(structures, texts, owners, (BLOCK_ELEMENTS / n).max(1))
}

/// [`retrieval_metrics_grouped`] with `block_rows` rows of the similarity matrix at a time.
pub fn retrieval_metrics_in_blocks<B: Backend>(
    structures: Tensor<B, 2>,
    texts: Tensor<B, 2>,
    owners: &[usize],
    block_rows: usize,
) -> Result<RetrievalMetrics, ReadError> {
    let n = structures.dims()[0];
    assert_eq!(owners.len(), texts.dims()[0], "one owner per text");
    let structure_ids: Vec<usize> = (0..n).collect();
    // Structure queries rank the rows of S·Tᵀ, text queries the rows of T·Sᵀ (its columns).
    let by_structure = rank_in_blocks(&structures, &texts, &structure_ids, owners, block_rows)?;
    // Each text matches exactly one structure: its rows give the matched and unmatched
    // cosines, each pair once.
    let by_text = rank_in_blocks(&texts, &structures, owners, &structure_ids, block_rows)?;
    let (mm, ms) = mean_std(&by_text.matched);
    let (um, us) = by_text.unmatched.mean_std();
    Ok(RetrievalMetrics {
        n,
        structure_to_text: direction(&by_structure.ranks, n),
        text_to_structure: direction(&by_text.ranks, n),
        matched_cosine_mean: mm,
        matched_cosine_std: ms,
        unmatched_cosine_mean: um,
        unmatched_cosine_std: us,
    })
}

/// One direction of retrieval, gathered block by block.
struct Ranked {
    /// 1 + the candidates scoring strictly above the match, per query.
    ranks: Vec<usize>,
    /// The match's similarity, per query.
    matched: Vec<f64>,
    unmatched: ShiftedMoments,
}

/// Sum and sum of squares of values minus a shift near their mean, so that the variance does not
/// come from the difference of two large numbers.
struct ShiftedMoments {
    shift: f64,
    count: f64,
    sum: f64,
    sum_sq: f64,
}

impl ShiftedMoments {
    fn mean_std(&self) -> (f64, f64) {
        if self.count == 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let m = self.sum / self.count;
        let var = (self.sum_sq / self.count - m * m).max(0.0);
        (self.shift + m, var.sqrt())
    }
}

/// Ranks of `queries` against `candidates`, query i matching the candidates `c` with
/// `candidate_group[c] == query_group[i]` (at least one): its rank is 1 + the candidates
/// scoring strictly above its best match. `matched` and `unmatched` assume one match per query.
fn rank_in_blocks<B: Backend>(
    queries: &Tensor<B, 2>,
    candidates: &Tensor<B, 2>,
    query_group: &[usize],
    candidate_group: &[usize],
    block_rows: usize,
) -> Result<Ranked, ReadError> {
    let n = queries.dims()[0];
    let m = candidates.dims()[0];
    let device = queries.device();
    let candidates_t = candidates.clone().transpose();
    let group = |g: &[usize]| {
        let ids: Vec<i64> = g.iter().map(|&x| x as i64).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [g.len()]), &device)
    };
    let candidate_group = group(candidate_group).reshape([1, m]);
    let query_group = group(query_group).reshape([n, 1]);
    let mut out = Ranked {
        ranks: Vec::with_capacity(n),
        matched: Vec::with_capacity(n),
        unmatched: ShiftedMoments {
            shift: 0.0,
            count: (n * m.saturating_sub(1)) as f64,
            sum: 0.0,
            sum_sq: 0.0,
        },
    };
    let mut start = 0;
    while start < n {
        let end = (start + block_rows.max(1)).min(n);
        let b = end - start;
        let sim = queries
            .clone()
            .slice(start..end)
            .matmul(candidates_t.clone());
        let is_match = query_group
            .clone()
            .slice(start..end)
            .expand([b, m])
            .equal(candidate_group.clone().expand([b, m]));
        // The best match's own score, taken from the same product, so that it never outranks
        // itself.
        let own = sim
            .clone()
            .mask_fill(is_match.bool_not(), f32::MIN)
            .max_dim(1);
        let above = sim
            .clone()
            .greater(own.clone().expand([b, m]))
            .float()
            .sum_dim(1);
        if start == 0 {
            out.unmatched.shift = to_host(sim.clone().mean())?[0] as f64;
        }
        let shifted = sim.sub_scalar(out.unmatched.shift);
        let row_sum = to_host(shifted.clone().sum_dim(1))?;
        let row_sum_sq = to_host(shifted.powi_scalar(2).sum_dim(1))?;
        let own = to_host(own)?;
        for (k, above) in to_host(above)?.into_iter().enumerate() {
            out.ranks.push(1 + above as usize);
            let m = own[k] as f64;
            let d = m - out.unmatched.shift;
            out.matched.push(m);
            out.unmatched.sum += row_sum[k] as f64 - d;
            out.unmatched.sum_sq += row_sum_sq[k] as f64 - d * d;
        }
        start = end;
    }
    Ok(out)
}

/// Figures of one direction from its ranks, among `structures` structures (with several texts
/// per structure, a structure's texts are as likely to be in a random top 10 as it is).
fn direction(ranks: &[usize], structures: usize) -> DirectionMetrics {
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
        chance_recall_at_10: (10.0 / structures.max(1) as f64).min(1.0),
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
