//! Linear probes: ridge regression on scaled features (intercept unpenalised), its
//! regularisation chosen by k-fold cross-validation, and minimum-norm least squares — the
//! composition baseline of property training and the probes that judge learned features.
//!
//! One symmetric eigendecomposition per fit serves every alpha. With more features than rows
//! (flat FTCP: 25,200 columns) it is of the rows' Gram matrix `Z Zᵀ` (the dual form), so
//! nothing of size features² is ever formed.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use super::standardize::TargetScale;

/// Eigenvalues below this fraction of the largest count as zero (least squares' pseudo-inverse).
const RANK_TOLERANCE: f64 = 1e-10;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RidgeError {
    #[error("linear probe: {0}")]
    Shape(String),
    #[error("linear probe: feature {column} of row {row} is NaN or infinite")]
    NotFinite { row: usize, column: usize },
}

/// How a probe scales its feature columns (on the training rows) before the penalty applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Zero mean and unit variance: learned features, whose columns have arbitrary scales.
    Standardize,
    /// Centred only: features that carry their own normalisation (FTCP's row min–max), where
    /// z-scoring lifts near-constant columns to the weight of informative ones.
    Center,
    /// Columns before `from` centred and scaled together to a mean variance of 1, the rest
    /// standardised (FTCP beside learned features).
    StandardizeFrom(usize),
}

impl Scaling {
    /// Each column's statistics on the training `rows`.
    fn columns(self, rows: &[&[f64]], d: usize) -> Vec<TargetScale> {
        // Mean and variance of every column in row-major passes (a pass per column strides
        // across rows 25,200 values apart for flat FTCP), in `TargetScale::fit`'s order.
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r.iter()) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for r in rows {
            for ((s, v), m) in var.iter_mut().zip(r.iter()).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        var.iter_mut().for_each(|s| *s /= n);
        let centred = match self {
            Scaling::Standardize => 0,
            Scaling::Center => d,
            Scaling::StandardizeFrom(from) => from.min(d),
        };
        // Beside standardised columns, the centred group shares one factor that brings its
        // mean column variance to 1, so neither group is favoured by the penalty for its units
        // while the group keeps its own relative column scales.
        let group_std = match self {
            Scaling::StandardizeFrom(_) if centred > 0 => {
                let mean_var = var[..centred].iter().sum::<f64>() / centred as f64;
                if mean_var > 1e-24 {
                    mean_var.sqrt()
                } else {
                    1.0
                }
            }
            _ => 1.0,
        };
        mean.into_iter()
            .zip(var)
            .enumerate()
            .map(|(k, (mean, var))| {
                if k < centred {
                    TargetScale {
                        mean,
                        std: group_std,
                    }
                } else {
                    TargetScale::from_moments(mean, var)
                }
            })
            .collect()
    }
}

/// A fitted linear model on scaled features.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// The training rows' column statistics the features are scaled with.
    pub columns: Vec<TargetScale>,
    /// Weights of the scaled features.
    pub weights: Vec<f64>,
    /// The training targets' mean.
    pub intercept: f64,
    /// The ridge penalty (0: minimum-norm least squares).
    pub alpha: f64,
}

impl LinearModel {
    pub fn predict(&self, x: &[f64]) -> f64 {
        // No `contributions` vector: cross-validation predicts every held-out row per alpha.
        self.intercept
            + x.iter()
                .zip(&self.columns)
                .zip(&self.weights)
                .map(|((v, c), w)| w * c.apply(*v))
                .sum::<f64>()
    }

    /// Exact SHAP values of the prediction for `x`: with a linear model and features taken as
    /// independent, feature j contributes `w_j (z_j − E[z_j])`, and E[z_j] = 0 over the
    /// training rows. They sum to the prediction minus the mean training prediction.
    pub fn contributions(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(&self.columns)
            .zip(&self.weights)
            .map(|((v, c), w)| w * c.apply(*v))
            .collect()
    }
}

/// Scaled rows and centred targets, with one eigendecomposition that gives the solution for
/// any alpha.
struct Solver {
    columns: Vec<TargetScale>,
    z: DMatrix<f64>,
    y_mean: f64,
    eigen: SymmetricEigen<f64, nalgebra::Dyn>,
    /// `Qᵀ Zᵀ y` (primal) or `Qᵀ y` (dual).
    projected: DVector<f64>,
    dual: bool,
}

impl Solver {
    fn new(rows: &[&[f64]], y: &[f64], scaling: Scaling) -> Result<Self, RidgeError> {
        let (n, d) = check(rows, y)?;
        let columns = scaling.columns(rows, d);
        let z = DMatrix::from_fn(n, d, |r, c| columns[c].apply(rows[r][c]));
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let yc = DVector::from_iterator(n, y.iter().map(|v| v - y_mean));
        let dual = d > n;
        let (gram, rhs) = if dual {
            (&z * z.transpose(), yc)
        } else {
            (z.transpose() * &z, z.tr_mul(&yc))
        };
        let eigen = SymmetricEigen::new(gram);
        let projected = eigen.eigenvectors.transpose() * rhs;
        Ok(Self {
            columns,
            z,
            y_mean,
            eigen,
            projected,
            dual,
        })
    }

    fn solve(&self, alpha: f64) -> LinearModel {
        let values = &self.eigen.eigenvalues;
        let largest = values.iter().copied().fold(0.0, f64::max);
        let scaled = DVector::from_iterator(
            values.len(),
            values.iter().zip(self.projected.iter()).map(|(l, p)| {
                if alpha > 0.0 {
                    p / (l.max(0.0) + alpha)
                } else if *l > RANK_TOLERANCE * largest {
                    p / l
                } else {
                    0.0
                }
            }),
        );
        let solution = &self.eigen.eigenvectors * scaled;
        // `tr_mul`: Zᵀ·s without a transposed copy of Z (25,200 × n for flat FTCP) per alpha.
        let weights = if self.dual {
            self.z.tr_mul(&solution)
        } else {
            solution
        };
        LinearModel {
            columns: self.columns.clone(),
            weights: weights.iter().copied().collect(),
            intercept: self.y_mean,
            alpha,
        }
    }
}

fn check(rows: &[&[f64]], y: &[f64]) -> Result<(usize, usize), RidgeError> {
    let n = rows.len();
    if n < 2 || y.len() != n {
        return Err(RidgeError::Shape(format!(
            "{n} rows and {} targets; needs at least 2 of each, as many targets as rows",
            y.len()
        )));
    }
    let d = rows[0].len();
    for (i, r) in rows.iter().enumerate() {
        if r.len() != d {
            return Err(RidgeError::Shape(format!(
                "row {i} has {} features, row 0 has {d}",
                r.len()
            )));
        }
        if let Some(column) = r.iter().position(|v| !v.is_finite()) {
            return Err(RidgeError::NotFinite { row: i, column });
        }
    }
    if let Some(row) = y.iter().position(|v| !v.is_finite()) {
        return Err(RidgeError::Shape(format!(
            "target {row} is NaN or infinite"
        )));
    }
    Ok((n, d))
}

/// Ridge with penalty `alpha` (> 0) on the training `rows`.
pub fn fit_ridge(
    rows: &[&[f64]],
    y: &[f64],
    alpha: f64,
    scaling: Scaling,
) -> Result<LinearModel, RidgeError> {
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(RidgeError::Shape(format!(
            "alpha {alpha} must be positive and finite"
        )));
    }
    Ok(Solver::new(rows, y, scaling)?.solve(alpha))
}

/// Minimum-norm least squares (the limit of ridge as alpha → 0).
pub fn fit_least_squares(
    rows: &[&[f64]],
    y: &[f64],
    scaling: Scaling,
) -> Result<LinearModel, RidgeError> {
    Ok(Solver::new(rows, y, scaling)?.solve(0.0))
}

/// Mean validation MSE of each alpha over `folds` contiguous folds.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    pub alphas: Vec<f64>,
    pub mse: Vec<f64>,
}

impl CrossValidation {
    /// The alpha with the lowest mean validation MSE (the first on a tie).
    pub fn best_alpha(&self) -> f64 {
        let best =
            (0..self.alphas.len()).fold(0, |b, k| if self.mse[k] < self.mse[b] { k } else { b });
        self.alphas[best]
    }
}

/// Every ridge solution on one set of training rows from a single eigendecomposition: the
/// chosen alpha and least squares (alpha 0) without decomposing twice.
pub struct RidgePath(Solver);

impl RidgePath {
    pub fn new(rows: &[&[f64]], y: &[f64], scaling: Scaling) -> Result<Self, RidgeError> {
        Ok(Self(Solver::new(rows, y, scaling)?))
    }

    /// The model at `alpha` (0: minimum-norm least squares).
    pub fn at(&self, alpha: f64) -> Result<LinearModel, RidgeError> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(RidgeError::Shape(format!(
                "alpha {alpha} must be non-negative and finite"
            )));
        }
        Ok(self.0.solve(alpha))
    }
}

/// The validation MSE of each of `alphas` over `folds` contiguous folds. Scaling is refitted
/// inside each fold, so no fold sees its validation rows' statistics.
pub fn cross_validate(
    rows: &[&[f64]],
    y: &[f64],
    alphas: &[f64],
    folds: usize,
    scaling: Scaling,
) -> Result<CrossValidation, RidgeError> {
    let (n, _) = check(rows, y)?;
    if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(RidgeError::Shape(
            "alphas must be positive and finite".into(),
        ));
    }
    if folds < 2 || folds > n / 2 {
        return Err(RidgeError::Shape(format!(
            "{folds} folds for {n} rows: needs 2 … rows/2"
        )));
    }
    let mut mse = vec![0.0; alphas.len()];
    for f in 0..folds {
        // scikit-learn's KFold: the first n % folds folds hold one row more.
        let (base, extra) = (n / folds, n % folds);
        let start = f * base + f.min(extra);
        let end = start + base + usize::from(f < extra);
        let train: Vec<usize> = (0..n).filter(|i| !(start..end).contains(i)).collect();
        let solver = Solver::new(
            &train.iter().map(|&i| rows[i]).collect::<Vec<_>>(),
            &train.iter().map(|&i| y[i]).collect::<Vec<_>>(),
            scaling,
        )?;
        for (k, &alpha) in alphas.iter().enumerate() {
            let model = solver.solve(alpha);
            let err: f64 = (start..end)
                .map(|i| (model.predict(rows[i]) - y[i]).powi(2))
                .sum::<f64>()
                / (end - start) as f64;
            mse[k] += err / folds as f64;
        }
    }
    Ok(CrossValidation {
        alphas: alphas.to_vec(),
        mse,
    })
}

/// Ridge with the alpha of `alphas` whose mean validation MSE over `folds` contiguous folds
/// is lowest (the first on a tie), refitted on every row.
pub fn fit_ridge_cv(
    rows: &[&[f64]],
    y: &[f64],
    alphas: &[f64],
    folds: usize,
    scaling: Scaling,
) -> Result<(LinearModel, CrossValidation), RidgeError> {
    let cv = cross_validate(rows, y, alphas, folds, scaling)?;
    let model = fit_ridge(rows, y, cv.best_alpha(), scaling)?;
    Ok((model, cv))
}

/// Log-spaced alphas from 10^lo to 10^hi, `per_decade` per factor of ten.
pub fn log_alphas(lo: i32, hi: i32, per_decade: usize) -> Vec<f64> {
    let steps = (hi - lo) as usize * per_decade;
    (0..=steps)
        .map(|i| 10f64.powf(lo as f64 + i as f64 / per_decade as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_solves_its_normal_equations_in_both_forms_and_least_squares_interpolates() {
        // 6 rows, 3 features (primal) and the same rows with 9 features (dual).
        let rows: Vec<Vec<f64>> = (0..6)
            .map(|i| {
                let t = i as f64;
                vec![
                    t,
                    (t * 0.7).sin(),
                    (t * 1.3).cos(),
                    t * t,
                    1.0 / (t + 1.0),
                    t.sqrt(),
                ]
            })
            .collect();
        let y: Vec<f64> = (0..6)
            .map(|i| 2.0 * i as f64 - 1.0 + (i as f64).sin())
            .collect();
        // The same problems solved directly: (ZᵀZ + αI) w = Zᵀ y, for 6 rows × 3 features
        // (primal) and 4 rows × 6 features (dual).
        for (n, d) in [(6, 3), (4, 6)] {
            let x: Vec<&[f64]> = rows[..n].iter().map(|r| &r[..d]).collect();
            let a = fit_ridge(&x, &y[..n], 0.5, Scaling::Standardize).unwrap();
            let z = DMatrix::from_fn(n, d, |r, c| a.columns[c].apply(x[r][c]));
            let yc = DVector::from_iterator(n, y[..n].iter().map(|v| v - a.intercept));
            let w = (z.transpose() * &z + DMatrix::identity(d, d) * 0.5)
                .cholesky()
                .unwrap()
                .solve(&(z.transpose() * yc));
            for (g, want) in a.weights.iter().zip(w.iter()) {
                assert!((g - want).abs() < 1e-10, "{n}×{d}: {g} vs {want}");
            }
        }
        // More features than rows: least squares fits the training rows exactly.
        let wide: Vec<&[f64]> = rows.iter().map(|r| &r[..]).collect();
        let ls = fit_least_squares(&wide[..4], &y[..4], Scaling::Standardize).unwrap();
        for (r, t) in wide[..4].iter().zip(&y[..4]) {
            assert!((ls.predict(r) - t).abs() < 1e-8);
        }
        let sum: f64 = ls.contributions(wide[0]).iter().sum();
        assert!((ls.intercept + sum - ls.predict(wide[0])).abs() < 1e-12);
    }

    #[test]
    fn bad_shapes_are_named() {
        let rows: Vec<&[f64]> = vec![&[1.0, 2.0], &[3.0]];
        assert!(fit_ridge(&rows, &[1.0, 2.0], 1.0, Scaling::Standardize).is_err());
        let rows: Vec<&[f64]> = vec![&[1.0, f64::NAN], &[3.0, 4.0]];
        assert_eq!(
            fit_ridge(&rows, &[1.0, 2.0], 1.0, Scaling::Standardize).unwrap_err(),
            RidgeError::NotFinite { row: 0, column: 1 }
        );
    }
}
