//! Training tensor-regression heads over frozen CLIP embeddings: target selection and
//! z-scoring (statistics from training rows only — the original used all rows, validation
//! included), a head's step of the shared loop ([`TensorStep`]), prediction and
//! de-normalised metrics.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::metrics::{RegressionMetrics, regression_metrics};
use crate::models::tensor_head::{RegressionLoss, TensorHead, TensorMode};

use super::fit::{Metrics, StepLoss, TrainStep};
use super::standardize::TargetScale;
use super::{ReadError, to_host};

/// How raw tensors become training targets and predictions become tensors again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorTargets {
    pub mode: TensorMode,
    /// Per-component mean and standard deviation of the training rows (0 and 1 when
    /// normalisation is off; a constant component keeps std 1).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl TensorTargets {
    /// Fits the z-score on `train` tensors (`normalize` false: identity).
    pub fn fit(mode: TensorMode, train: &[[f64; 9]], normalize: bool) -> Self {
        let k = mode.indices().len();
        let (mut mean, mut std) = (vec![0.0; k], vec![1.0; k]);
        if normalize && !train.is_empty() {
            let rows: Vec<Vec<f64>> = train.iter().map(|t| mode.select(t)).collect();
            for c in 0..k {
                let scale = TargetScale::fit(rows.iter().map(|r| r[c]));
                (mean[c], std[c]) = (scale.mean, scale.std);
            }
        }
        Self { mode, mean, std }
    }

    pub fn components(&self) -> usize {
        self.mean.len()
    }

    /// Selected, z-scored components of a raw tensor.
    pub fn encode(&self, tensor: &[f64; 9]) -> Vec<f32> {
        self.mode
            .select(tensor)
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(x, (m, s))| ((x - m) / s) as f32)
            .collect()
    }

    /// Row-major normalised predictions `[n, k]` → physical units.
    pub fn decode(&self, normalised: &[f32]) -> Vec<f64> {
        let k = self.components().max(1);
        normalised
            .iter()
            .enumerate()
            .map(|(i, x)| *x as f64 * self.std[i % k] + self.mean[i % k])
            .collect()
    }
}

/// Rows a head trains on: one embedding and one raw tensor each, with a split.
#[derive(Debug, Clone)]
pub struct TensorRows {
    pub ids: Vec<String>,
    /// Row-major `[len, dim]` CLIP embeddings.
    pub inputs: Vec<f32>,
    pub dim: usize,
    pub tensors: Vec<[f64; 9]>,
    pub is_val: Vec<bool>,
}

impl TensorRows {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn indices(&self, validation: bool) -> Vec<usize> {
        crate::data::split_indices(&self.is_val, validation)
    }

    /// Embeddings and normalised targets of the rows `idx` as tensors.
    pub fn batch<B: Backend>(
        &self,
        idx: &[usize],
        targets: &TensorTargets,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        let mut y = Vec::with_capacity(idx.len() * targets.components());
        for &i in idx {
            x.extend_from_slice(&self.inputs[i * self.dim..(i + 1) * self.dim]);
            y.extend(targets.encode(&self.tensors[i]));
        }
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), self.dim]), device),
            Tensor::from_data(
                TensorData::new(y, [idx.len(), targets.components()]),
                device,
            ),
        )
    }

    /// Raw selected components of the rows `idx`, row-major.
    pub fn truth(&self, idx: &[usize], mode: TensorMode) -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| mode.select(&self.tensors[i]))
            .collect()
    }
}

/// A head's part of [`super::fit`]: the regression loss of a batch in normalised units, and
/// validation in physical units (MAE, R², each component's) over `val`.
pub struct TensorStep<'a, B: Backend> {
    pub rows: &'a TensorRows,
    pub targets: &'a TensorTargets,
    pub loss: RegressionLoss,
    pub val: &'a [usize],
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: AutodiffBackend> TrainStep<B> for TensorStep<'_, B> {
    type Model = TensorHead<B>;
    type Error = ReadError;
    type Batch = Vec<usize>;

    fn load(&self, items: &[usize], _epoch: usize, _batch: usize) -> Result<Vec<usize>, ReadError> {
        Ok(items.to_vec())
    }

    fn loss(&self, head: &TensorHead<B>, items: Vec<usize>) -> Result<StepLoss<B>, ReadError> {
        let (x, y) = self.rows.batch::<B>(&items, self.targets, &self.device);
        Ok(StepLoss::new(self.loss.forward(head.forward(x), y)))
    }

    fn validate(&self, head: &TensorHead<B::InnerBackend>) -> Result<Metrics, ReadError> {
        if self.val.is_empty() {
            return Ok(Vec::new());
        }
        let (e, _) = evaluate_head(
            head,
            self.rows,
            self.val,
            self.targets,
            self.loss,
            self.batch_size,
            &self.device,
        )?;
        let m = &e.metrics;
        let mut metrics = vec![
            ("val_loss".to_string(), e.loss),
            ("val_mae".to_string(), m.mae),
            ("val_r2".to_string(), m.r2),
            ("val_r2_pooled".to_string(), m.r2_pooled),
        ];
        for c in &m.components {
            metrics.push((format!("val_mae_{}", c.name), c.mae));
            metrics.push((format!("val_r2_{}", c.name), c.r2));
        }
        Ok(metrics)
    }
}

/// Normalised predictions `[idx.len(), k]` and the loss against the targets, in batches.
pub fn predict_tensors<B: Backend>(
    head: &TensorHead<B>,
    rows: &TensorRows,
    idx: &[usize],
    targets: &TensorTargets,
    loss: RegressionLoss,
    batch_size: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let (mut preds, mut losses) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(batch_size.max(1)) {
        let (x, y) = rows.batch::<B>(chunk, targets, device);
        let p = head.forward(x);
        losses.push(loss.forward(p.clone(), y) * chunk.len() as f64);
        preds.push(p);
    }
    let total = Tensor::cat(losses, 0).sum() / idx.len().max(1) as f64;
    (Tensor::cat(preds, 0), total)
}

/// What a head scored on some rows, in physical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEvaluation {
    /// The training loss on these rows (normalised space).
    pub loss: f64,
    pub metrics: RegressionMetrics,
}

/// Predicts the rows `idx` and scores them (reads the predictions back, like
/// `evaluate_clip`); returns the de-normalised predictions too.
pub fn evaluate_head<B: Backend>(
    head: &TensorHead<B>,
    rows: &TensorRows,
    idx: &[usize],
    targets: &TensorTargets,
    loss: RegressionLoss,
    batch_size: usize,
    device: &B::Device,
) -> Result<(TensorEvaluation, Vec<f64>), ReadError> {
    let (pred, loss) = predict_tensors(head, rows, idx, targets, loss, batch_size, device);
    let loss = to_host(loss)?.first().copied().unwrap_or(f32::NAN) as f64;
    Ok(evaluate_predictions(
        rows,
        idx,
        targets,
        &to_host(pred)?,
        loss,
    ))
}

/// Metrics from host-side normalised predictions of the rows `idx`; returns the
/// de-normalised predictions too.
pub fn evaluate_predictions(
    rows: &TensorRows,
    idx: &[usize],
    targets: &TensorTargets,
    normalised: &[f32],
    loss: f64,
) -> (TensorEvaluation, Vec<f64>) {
    let pred = targets.decode(normalised);
    let truth = rows.truth(idx, targets.mode);
    let metrics = regression_metrics(&pred, &truth, targets.mode.component_names());
    (TensorEvaluation { loss, metrics }, pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_train_only_statistics() {
        let train = [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            [3.0, 2.0, 3.0, 4.0, 9.0, 6.0, 7.0, 8.0, 1.0],
        ];
        let t = TensorTargets::fit(TensorMode::Voigt2d, &train, true);
        assert_eq!(t.mean, vec![2.0, 7.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(t.std, vec![1.0, 2.0, 1.0, 4.0, 1.0, 1.0]); // constants keep 1
        let z = t.encode(&train[1]);
        let back = t.decode(&z);
        assert_eq!(back, TensorMode::Voigt2d.select(&train[1]));
    }
}
