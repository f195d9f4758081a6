//! Mean and standard deviation of one column of training values, for z-scoring targets and
//! features (population variance; a constant column keeps std 1).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
}

impl TargetScale {
    pub fn fit(values: impl IntoIterator<Item = f64>) -> Self {
        let values: Vec<f64> = values.into_iter().collect();
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self::from_moments(mean, var)
    }

    /// From a column's mean and population variance (a constant column keeps std 1).
    pub fn from_moments(mean: f64, var: f64) -> Self {
        let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
        Self { mean, std }
    }

    pub fn apply(&self, x: f64) -> f64 {
        (x - self.mean) / self.std
    }

    pub fn invert(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
}
