//! Training a structure encoder to predict one scalar property (e.g. band gap): rows of
//! graphs and targets with a split, z-scored targets (training rows' statistics), L1 loss
//! (the metric reported is the MAE), and a composition-only ridge baseline on the same split.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::data::StructureGraphs;
use crate::featurize::{CrystalGraph, ELEMENT_FEATURES, ElementTable, GraphBatch, GraphError};
use crate::models::property::PropertyModel;
use crate::structure::elements::NUM_ELEMENTS;

use super::fit::{Metrics, StepLoss, TrainStep};
use super::ridge::{RidgeError, Scaling, fit_ridge};
use super::standardize::TargetScale;
use super::{ReadError, to_host};

/// Structures with a target value each, and a split.
#[derive(Debug, Clone)]
pub struct PropertyRows {
    pub ids: Vec<String>,
    pub graphs: StructureGraphs,
    pub targets: Vec<f64>,
    pub is_val: Vec<bool>,
    pub table: ElementTable,
}

impl PropertyRows {
    /// Every row's `composition_features`, in row order.
    pub fn compositions(&self) -> Vec<Vec<f64>> {
        self.graphs
            .iter()
            .map(|g| composition_features(&g, &self.table))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn indices(&self, validation: bool) -> Vec<usize> {
        crate::data::split_indices(&self.is_val, validation)
    }

    /// The graphs of the rows `idx` as one batch.
    pub fn graphs<B: Backend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> Result<crate::featurize::GraphTensors<B>, GraphError> {
        Ok(self.graphs.batch(idx, &self.table)?.to_tensors(device))
    }

    pub fn scale(&self) -> TargetScale {
        TargetScale::fit(self.indices(false).iter().map(|&i| self.targets[i]))
    }
}

/// A property model's part of [`super::fit`]: the L1 loss of a batch of graphs against the
/// standardised target, and the validation MAE (`val_mae`, in the target's units) over `val`.
pub struct PropertyStep<'a, B: Backend> {
    pub rows: &'a PropertyRows,
    pub scale: TargetScale,
    pub val: &'a [usize],
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: AutodiffBackend> TrainStep<B> for PropertyStep<'_, B> {
    type Model = PropertyModel<B>;
    type Error = PredictError;
    /// The items and their graphs, read on the loader thread.
    type Batch = (Vec<usize>, GraphBatch);

    fn load(
        &self,
        items: &[usize],
        _epoch: usize,
        _batch: usize,
    ) -> Result<(Vec<usize>, GraphBatch), PredictError> {
        Ok((
            items.to_vec(),
            self.rows.graphs.batch(items, &self.rows.table)?,
        ))
    }

    fn loss(
        &self,
        model: &PropertyModel<B>,
        (items, graphs): (Vec<usize>, GraphBatch),
    ) -> Result<StepLoss<B>, PredictError> {
        let graph = graphs.to_tensors::<B>(&self.device);
        let y: Vec<f32> = items
            .iter()
            .map(|&i| self.scale.apply(self.rows.targets[i]) as f32)
            .collect();
        let y = Tensor::<B, 1>::from_data(TensorData::new(y, [items.len()]), &self.device);
        Ok(StepLoss::new((model.forward(&graph) - y).abs().mean()))
    }

    fn validate(&self, model: &PropertyModel<B::InnerBackend>) -> Result<Metrics, PredictError> {
        if self.val.is_empty() {
            return Ok(Vec::new());
        }
        let pred = predict_property(
            model,
            self.rows,
            self.val,
            self.batch_size,
            self.scale,
            &self.device,
        )?;
        let truth: Vec<f64> = self.val.iter().map(|&i| self.rows.targets[i]).collect();
        Ok(vec![(
            "val_mae".to_string(),
            mean_absolute_error(&pred, &truth),
        )])
    }
}

/// Why predictions could not be made: a structure without a graph, or a failed read.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Predictions in the target's units for the rows `idx` (a synchronous read: native only).
pub fn predict_property<B: Backend>(
    model: &PropertyModel<B>,
    rows: &PropertyRows,
    idx: &[usize],
    batch_size: usize,
    scale: TargetScale,
    device: &B::Device,
) -> Result<Vec<f64>, PredictError> {
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(batch_size.max(1)) {
        let y = to_host(model.forward(&rows.graphs::<B>(chunk, device)?))?;
        out.extend(y.iter().map(|v| scale.invert(*v as f64)));
    }
    Ok(out)
}

pub fn mean_absolute_error(pred: &[f64], truth: &[f64]) -> f64 {
    pred.iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / truth.len().max(1) as f64
}

/// A structure's composition alone: element fractions and the fraction-weighted mean of the
/// element-table vectors (no positions, no bonds).
pub fn composition_features(graph: &CrystalGraph, table: &ElementTable) -> Vec<f64> {
    let mut x = vec![0.0; NUM_ELEMENTS + ELEMENT_FEATURES];
    let w = 1.0 / graph.num_nodes().max(1) as f64;
    for &z in &graph.atomic_numbers {
        x[z as usize - 1] += w;
        if let Ok(props) = table.features(z) {
            for (k, p) in props.iter().enumerate() {
                x[NUM_ELEMENTS + k] += w * *p as f64;
            }
        }
    }
    x
}

/// The composition-only baseline: ridge regression (`alpha` on the standardised features,
/// intercept unpenalised) fitted on the training rows, predicting the rows `predict`.
pub fn composition_baseline(
    rows: &PropertyRows,
    alpha: f64,
    predict: &[usize],
) -> Result<Vec<f64>, RidgeError> {
    let features = rows.compositions();
    let train = rows.indices(false);
    let x: Vec<&[f64]> = train.iter().map(|&i| features[i].as_slice()).collect();
    let y: Vec<f64> = train.iter().map(|&i| rows.targets[i]).collect();
    let model = fit_ridge(&x, &y, alpha, Scaling::Standardize)?;
    Ok(predict
        .iter()
        .map(|&i| model.predict(&features[i]))
        .collect())
}
