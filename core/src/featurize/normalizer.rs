//! Per-row min–max scaling of FTCP tensors, as the original system scaled each FTCP row to
//! [0, 1] over all samples and columns — fitted on training rows only, saved beside the data.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowMinMax {
    pub rows: usize,
    pub cols: usize,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

impl RowMinMax {
    /// Fits on row-major `rows × cols` tensors. None when there are no samples.
    pub fn fit<'a, T: Copy + Into<f64> + 'a>(
        rows: usize,
        cols: usize,
        samples: impl IntoIterator<Item = &'a [T]>,
    ) -> Option<Self> {
        let mut fitted: Option<Self> = None;
        for s in samples {
            fitted
                .get_or_insert_with(|| Self::empty(rows, cols))
                .update(s);
        }
        fitted
    }

    /// No samples yet: every row's range is empty (min +∞, max −∞) until `update`.
    fn empty(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            min: vec![f64::INFINITY; rows],
            max: vec![f64::NEG_INFINITY; rows],
        }
    }

    /// Takes one more training sample into the fit (a streaming pass over the data).
    pub fn update<T: Copy + Into<f64>>(&mut self, sample: &[T]) {
        for r in 0..self.rows {
            for v in &sample[r * self.cols..(r + 1) * self.cols] {
                let v: f64 = (*v).into();
                self.min[r] = self.min[r].min(v);
                self.max[r] = self.max[r].max(v);
            }
        }
    }

    /// The fit over both sets of samples (shards fitted apart, then joined). Minima and
    /// maxima join exactly, so the result does not depend on how the data was split.
    pub fn merge(&mut self, other: &Self) {
        for r in 0..self.rows.min(other.rows) {
            self.min[r] = self.min[r].min(other.min[r]);
            self.max[r] = self.max[r].max(other.max[r]);
        }
    }

    /// Scales in place; a row that was constant in training is shifted only (scale 1, as sklearn).
    pub fn transform(&self, data: &mut [f64]) {
        for r in 0..self.rows {
            for v in &mut data[r * self.cols..(r + 1) * self.cols] {
                *v = self.scale(r, *v);
            }
        }
    }

    /// One value of row `r`, scaled as `transform` scales it.
    pub fn scale(&self, r: usize, v: f64) -> f64 {
        let range = self.max[r] - self.min[r];
        let scale = if range == 0.0 { 1.0 } else { 1.0 / range };
        (v - self.min[r]) * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_scale_to_unit_range_on_training_data() {
        let a = [0.0, 2.0, 5.0, 5.0];
        let b = [4.0, 1.0, 5.0, 5.0];
        let n = RowMinMax::fit(2, 2, [&a[..], &b[..]]).unwrap();
        let mut x = b;
        n.transform(&mut x);
        assert_eq!(x, [1.0, 0.25, 0.0, 0.0]);
        assert!(RowMinMax::fit::<f64>(2, 2, std::iter::empty()).is_none());
        // Fitting shards apart and merging equals fitting everything at once.
        let mut first = RowMinMax::fit(2, 2, [&a[..]]).unwrap();
        first.merge(&RowMinMax::fit(2, 2, [&b[..]]).unwrap());
        assert_eq!(first, n);
    }
}
