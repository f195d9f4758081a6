//! Per-component regression metrics on de-normalised values: MAE and the coefficient of
//! determination R² (as scikit-learn's `r2_score(multioutput="raw_values")`), plus the
//! original system's pooled R² over all flattened components, for comparison with it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentMetrics {
    pub name: String,
    pub mae: f64,
    pub r2: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub n: usize,
    pub components: Vec<ComponentMetrics>,
    /// Mean of the component MAEs.
    pub mae: f64,
    /// Mean of the component R² (scikit-learn's "uniform_average").
    pub r2: f64,
    /// R² of all components flattened into one vector (what the original logged).
    pub r2_pooled: f64,
}

/// `pred` and `truth` are row-major `[n, names.len()]`.
pub fn regression_metrics(pred: &[f64], truth: &[f64], names: &[&str]) -> RegressionMetrics {
    let k = names.len().max(1);
    let n = truth.len() / k;
    let column = |v: &[f64], c: usize| -> Vec<f64> { (0..n).map(|i| v[i * k + c]).collect() };
    let components: Vec<ComponentMetrics> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let (p, t) = (column(pred, c), column(truth, c));
            ComponentMetrics {
                name: name.to_string(),
                mae: p.iter().zip(&t).map(|(a, b)| (a - b).abs()).sum::<f64>() / n.max(1) as f64,
                r2: r2(&p, &t),
            }
        })
        .collect();
    let mean = |f: fn(&ComponentMetrics) -> f64| {
        components.iter().map(f).sum::<f64>() / components.len().max(1) as f64
    };
    RegressionMetrics {
        n,
        mae: mean(|c| c.mae),
        r2: mean(|c| c.r2),
        r2_pooled: r2(&pred[..n * k], &truth[..n * k]),
        components,
    }
}

/// 1 − SS_res / SS_tot; for a constant truth, 1 when predicted exactly and 0 otherwise
/// (scikit-learn's `force_finite`).
fn r2(pred: &[f64], truth: &[f64]) -> f64 {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    let ss_res: f64 = pred.iter().zip(truth).map(|(p, t)| (t - p).powi(2)).sum();
    match (ss_tot == 0.0, ss_res == 0.0) {
        (false, _) => 1.0 - ss_res / ss_tot,
        (true, true) => 1.0,
        (true, false) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_mean_predictions() {
        let truth = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        let m = regression_metrics(&truth, &truth, &["a", "b"]);
        assert_eq!((m.r2, m.mae, m.n), (1.0, 0.0, 3));
        let mean = [2.0, 20.0, 2.0, 20.0, 2.0, 20.0];
        let m = regression_metrics(&mean, &truth, &["a", "b"]);
        assert!(m.components.iter().all(|c| c.r2.abs() < 1e-12));
        assert!((m.components[1].mae - 20.0 / 3.0).abs() < 1e-12);
    }
}
