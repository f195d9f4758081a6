//! The retrieval index a bundle may carry: one record per material (id, formula,
//! description) with its structure and/or text embedding and optional 2-D map coordinates,
//! searched by exact cosine similarity.

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use super::BundleError;
use super::arrays::{Array, Arrays, write_arrays};
use super::manifest::{INDEX_EMBEDDINGS, INDEX_RECORDS, IndexSection};

/// Which embeddings of the index a query is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Structure,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRecords {
    pub ids: Vec<String>,
    pub formulas: Vec<Option<String>>,
    pub descriptions: Vec<String>,
    /// Each entry's structure as a P1 CIF, for pictures and 3-D views of hits (none where the
    /// dataset had no structure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structures: Option<Vec<Option<String>>>,
}

/// Embeddings are unit rows, `[len, dim]` row-major, in f32 whatever the stored dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalIndex {
    pub records: IndexRecords,
    pub dim: usize,
    pub structure: Option<Vec<f32>>,
    pub text: Option<Vec<f32>>,
    /// `[len, 2]`.
    pub map: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub rank: usize,
    /// Row of the index.
    pub row: usize,
    /// Cosine similarity.
    pub score: f32,
}

impl RetrievalIndex {
    pub fn len(&self) -> usize {
        self.records.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.ids.is_empty()
    }

    /// The rows with a description, in order: the entries a text embedding exists for.
    pub fn described(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&r| !self.records.descriptions[r].is_empty())
            .collect()
    }

    /// The descriptions of the [`Self::described`] rows, in order: what to embed for
    /// [`Self::with_text_embeddings`].
    pub fn described_texts(&self) -> Vec<&str> {
        self.described()
            .into_iter()
            .map(|r| self.records.descriptions[r].as_str())
            .collect()
    }

    /// This index with new text embeddings: `embedded` holds the [`Self::described`] rows'
    /// (`[rows, dim]`, in that order); the other rows are zero.
    pub fn with_text_embeddings(&self, embedded: &[f32]) -> Result<Self, BundleError> {
        let described = self.described();
        if embedded.len() != described.len() * self.dim {
            return Err(BundleError::Input(format!(
                "{} text embedding values for {} described entries of width {}",
                embedded.len(),
                described.len(),
                self.dim
            )));
        }
        let mut text = vec![0f32; self.len() * self.dim];
        for (&row, e) in described.iter().zip(embedded.chunks_exact(self.dim)) {
            text[row * self.dim..(row + 1) * self.dim].copy_from_slice(e);
        }
        Ok(Self {
            text: Some(text),
            ..self.clone()
        })
    }

    pub fn embeddings(&self, side: Side) -> Option<&[f32]> {
        match side {
            Side::Structure => self.structure.as_deref(),
            Side::Text => self.text.as_deref(),
        }
    }

    /// The `k` rows most similar to `query` (any length; compared by cosine), best first,
    /// ties broken by row so that every platform ranks alike.
    pub fn search(&self, query: &[f32], k: usize, side: Side) -> Result<Vec<Hit>, BundleError> {
        let rows = self
            .embeddings(side)
            .ok_or_else(|| BundleError::Input(format!("the index has no {side:?} embeddings")))?;
        if query.len() != self.dim {
            return Err(BundleError::Input(format!(
                "query has {} values, the index {}",
                query.len(),
                self.dim
            )));
        }
        let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(BundleError::Input("query is zero or not finite".into()));
        }
        // An entry without a description (an index of every structure, most without text)
        // has no text embedding: it is never a text hit.
        let textless = |row: usize| side == Side::Text && self.records.descriptions[row].is_empty();
        let scores: Vec<f32> = rows
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(row, r)| {
                if textless(row) {
                    f32::NEG_INFINITY
                } else {
                    dot(r, query) / norm
                }
            })
            .collect();
        let mut hits = top_k(&scores, k);
        hits.retain(|h| h.score.is_finite());
        Ok(hits)
    }

    /// A hit as JSON: rank, row, id, formula, score, description.
    pub fn hit_json(&self, hit: &Hit) -> serde_json::Value {
        let r = &self.records;
        serde_json::json!({
            "rank": hit.rank,
            "row": hit.row,
            "id": r.ids[hit.row],
            "formula": r.formulas[hit.row],
            "score": hit.score,
            "description": r.descriptions[hit.row],
        })
    }

    /// Where a query lands on the 2-D map: the mean of its `hits`' map positions weighted by
    /// `exp(20 · score)` (t-SNE has no transform for new points, so neighbours place it).
    pub fn map_position(&self, hits: &[Hit]) -> Option<[f32; 2]> {
        let map = self.map.as_ref()?;
        let best = hits.first()?.score;
        let (mut x, mut y, mut total) = (0.0f32, 0.0f32, 0.0f32);
        for h in hits {
            let w = (20.0 * (h.score - best)).exp();
            x += w * map[2 * h.row];
            y += w * map[2 * h.row + 1];
            total += w;
        }
        (total > 0.0).then(|| [x / total, y / total])
    }

    pub fn to_entries(&self, f16: bool) -> Result<(Vec<u8>, Vec<u8>), BundleError> {
        let records =
            serde_json::to_vec(&self.records).map_err(|e| BundleError::Write(e.to_string()))?;
        let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
        let n = self.len();
        let mut arrays = Vec::new();
        let mut push = |name: &str, cols: usize, v: &Option<Vec<f32>>| {
            if let Some(v) = v {
                let values = v.iter().map(|x| *x as f64).collect();
                arrays.push(Array::new(name, dtype, vec![n, cols], values));
            }
        };
        push("structure", self.dim, &self.structure);
        push("text", self.dim, &self.text);
        push("map", 2, &self.map);
        Ok((records, write_arrays(&arrays)?))
    }

    pub fn from_entries(
        section: &IndexSection,
        dim: usize,
        records: &[u8],
        embeddings: &[u8],
    ) -> Result<Self, BundleError> {
        let records: IndexRecords =
            serde_json::from_slice(records).map_err(|e| BundleError::Entry {
                name: INDEX_RECORDS.into(),
                reason: e.to_string(),
            })?;
        let n = section.entries;
        let structures = records.structures.as_ref().map_or(n, Vec::len);
        if records.ids.len() != n
            || records.formulas.len() != n
            || records.descriptions.len() != n
            || structures != n
        {
            return Err(BundleError::Entry {
                name: INDEX_RECORDS.into(),
                reason: format!(
                    "ids, formulas, descriptions and structures must each have the manifest's {n} entries"
                ),
            });
        }
        let arrays = Arrays::parse(embeddings, INDEX_EMBEDDINGS)?;
        let read =
            |name: &str, cols: usize, present: bool| -> Result<Option<Vec<f32>>, BundleError> {
                if !present {
                    return Ok(None);
                }
                let (v, _) = arrays.read(name, &[Some(n), Some(cols)])?;
                Ok(Some(v.into_iter().map(|x| x as f32).collect()))
            };
        let mut index = Self {
            records,
            dim,
            structure: read("structure", dim, section.structure)?,
            text: read("text", dim, section.text)?,
            map: read("map", 2, section.map)?,
        };
        // f16 storage leaves rows a little off unit length; cosines stay exact this way.
        for rows in [&mut index.structure, &mut index.text]
            .into_iter()
            .flatten()
        {
            normalize_rows(rows, dim);
        }
        Ok(index)
    }
}

fn normalize_rows(rows: &mut [f32], dim: usize) {
    for r in rows.chunks_exact_mut(dim) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|x| *x /= n);
        }
    }
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Indices of the `k` largest scores, best first (ties: lower row first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<Hit> {
    let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then_with(|| a.cmp(b));
    let mut rows: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(rows.len());
    if k == 0 {
        return Vec::new();
    }
    if k < rows.len() {
        rows.select_nth_unstable_by(k - 1, better);
        rows.truncate(k);
    }
    rows.sort_by(better);
    rows.into_iter()
        .enumerate()
        .map(|(rank, row)| Hit {
            rank: rank + 1,
            row,
            score: scores[row],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_a_stable_partial_sort() {
        let s = [0.1, 0.9, 0.5, 0.9, -1.0, 0.7];
        let hits: Vec<usize> = top_k(&s, 4).iter().map(|h| h.row).collect();
        assert_eq!(hits, [1, 3, 5, 2]);
        assert_eq!(top_k(&s, 10).len(), 6);
        assert!(top_k(&s, 0).is_empty());
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
    }

    #[test]
    fn entries_without_text_are_structure_hits_only() {
        let index = RetrievalIndex {
            records: IndexRecords {
                ids: ["a", "b", "c"].map(String::from).to_vec(),
                formulas: vec![None; 3],
                descriptions: ["one", "", "three"].map(String::from).to_vec(),
                structures: None,
            },
            dim: 2,
            structure: Some(vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0]),
            text: None,
            map: None,
        };
        assert_eq!(index.described(), [0, 2]);
        assert!(index.with_text_embeddings(&[1.0, 0.0]).is_err());
        let index = index.with_text_embeddings(&[1.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(index.text.as_deref().unwrap()[2..4], [0.0, 0.0]);
        // "b" is the nearest structure to (0.6, 0.8) and has no text: no text hit.
        let q = [0.6, 0.8];
        let rows = |side| -> Vec<usize> {
            index
                .search(&q, 3, side)
                .unwrap()
                .iter()
                .map(|h| h.row)
                .collect()
        };
        assert_eq!(rows(Side::Structure), [1, 2, 0]);
        assert_eq!(rows(Side::Text), [2, 0]);
    }
}
