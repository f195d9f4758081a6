//! Principal components of training rows (centred, not scaled — as scikit-learn's `PCA`),
//! from the smaller of the two Gram matrices: with more columns than rows (flat FTCP has
//! 25,200) the n × n matrix X Xᵀ gives the same components as the d × d covariance.

use nalgebra::{DMatrix, SymmetricEigen};

use super::ridge::RidgeError;

#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    pub mean: Vec<f64>,
    /// `k` unit rows of length d, by decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component (denominator n − 1).
    pub explained_variance: Vec<f64>,
    /// The share of the total variance each component holds.
    pub explained_variance_ratio: Vec<f64>,
}

impl Pca {
    /// Coordinates of `x` along the components (for many rows, one `transform_rows` call:
    /// each call gathers the components into one matrix).
    pub fn transform(&self, x: &[f64]) -> Vec<f64> {
        self.transform_rows(&[x]).pop().unwrap_or_default()
    }

    /// Coordinates of each row along the components, as one matrix product: projecting
    /// a thousand 25,200-wide rows onto ~800 components row by row took longer than the fit.
    pub fn transform_rows(&self, rows: &[&[f64]]) -> Vec<Vec<f64>> {
        let (d, k) = (self.mean.len(), self.components.len());
        let centred = DMatrix::from_fn(d, rows.len(), |j, i| rows[i][j] - self.mean[j]);
        let basis = DMatrix::from_fn(k, d, |c, j| self.components[c][j]);
        let coordinates = basis * centred;
        coordinates
            .column_iter()
            .map(|c| c.iter().copied().collect())
            .collect()
    }
}

/// The first `k` components of `rows` (fewer when the rows span fewer dimensions: at most
/// n − 1, and only those with variance above round-off).
pub fn fit_pca(rows: &[&[f64]], k: usize) -> Result<Pca, RidgeError> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
        return Err(RidgeError::Shape(format!(
            "PCA needs at least 2 rows of equal, non-zero length ({n} rows)"
        )));
    }
    for (i, r) in rows.iter().enumerate() {
        if let Some(column) = r.iter().position(|v| !v.is_finite()) {
            return Err(RidgeError::NotFinite { row: i, column });
        }
    }
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r.iter()) {
            *m += v / n as f64;
        }
    }
    let x = DMatrix::from_fn(n, d, |i, j| rows[i][j] - mean[j]);
    let total: f64 = x.iter().map(|v| v * v).sum::<f64>() / (n - 1) as f64;
    let (values, vectors) = if d > n {
        let eigen = SymmetricEigen::new(&x * x.transpose());
        // Component = Xᵀ u / √λ for each eigenpair (λ, u) of X Xᵀ.
        let v = x.transpose() * &eigen.eigenvectors;
        (eigen.eigenvalues, v)
    } else {
        let eigen = SymmetricEigen::new(x.transpose() * &x);
        (eigen.eigenvalues, eigen.eigenvectors)
    };
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let largest = values.iter().cloned().fold(0.0, f64::max);
    let mut pca = Pca {
        mean,
        components: Vec::new(),
        explained_variance: Vec::new(),
        explained_variance_ratio: Vec::new(),
    };
    for &i in order.iter().take(k.min(n - 1)) {
        if values[i] <= largest * 1e-12 {
            break;
        }
        let column = vectors.column(i);
        let length = column.norm();
        // A fixed sign (the largest |loading| positive), so that fits are reproducible.
        let pivot = column
            .iter()
            .cloned()
            .fold(0.0, |a: f64, b| if b.abs() > a.abs() { b } else { a });
        let sign = if pivot < 0.0 { -1.0 } else { 1.0 };
        pca.components
            .push(column.iter().map(|v| sign * v / length).collect());
        let variance = values[i] / (n - 1) as f64;
        pca.explained_variance.push(variance);
        pca.explained_variance_ratio
            .push(variance / total.max(f64::MIN_POSITIVE));
    }
    Ok(pca)
}
