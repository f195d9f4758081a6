//! A tensor-head run on disk (`run.json`), the CLIP embeddings it reads, and what `train` and
//! `eval` both report: the mean-predictor baseline, the table, the predictions file.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use xtal_core::device::{DeviceSpec, OnDevice, run_on};
use xtal_core::metrics::regression_metrics;
use xtal_core::models::tensor_head::{RegressionLoss, TensorHead, TensorHeadConfig};
use xtal_core::train::model_from_bytes;
use xtal_core::train::spec::Modality;
use xtal_core::train::tensor::{TensorEvaluation, TensorRows, TensorTargets, evaluate_head};

use crate::commands::clip::{EmbedTask, LoadedRun, load_clip_run};
use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::run_dir::RunPaths;

/// `run.json` of a tensor run: which CLIP run and checkpoint feed it, and how targets map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TensorRunInfo {
    pub(crate) family: String,
    pub(crate) clip_run: PathBuf,
    pub(crate) clip_checkpoint: String,
    /// The CLIP checkpoint's epoch when the head was trained (eval warns if it changed).
    pub(crate) clip_epoch: usize,
    pub(crate) data: DataSource,
    pub(crate) modality: Modality,
    pub(crate) head: TensorHeadConfig,
    pub(crate) targets: TensorTargets,
    pub(crate) loss: RegressionLoss,
    pub(crate) batch_size: usize,
}

impl RunPaths for TensorRunInfo {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.clip_run];
        paths.extend(self.data.paths_mut());
        paths
    }
}

/// Rows with a tensor, embedded by the frozen CLIP model, and what was left out.
pub(super) struct EmbeddedRows {
    pub(super) rows: TensorRows,
    pub(super) without_tensor: Vec<String>,
    pub(super) source: DataSource,
    pub(super) clip_epoch: usize,
}

pub(super) fn embed_rows(
    clip_run: &Path,
    clip_checkpoint: &str,
    modality: Modality,
    data: Option<&Path>,
    graph_emb_dir: Option<&Path>,
    device: &DeviceSpec,
) -> anyhow::Result<EmbeddedRows> {
    let LoadedRun {
        run,
        info,
        spec: clip_spec,
        set,
        source,
        ..
    } = load_clip_run(clip_run, data, graph_emb_dir)?;
    let (with, without): (Vec<usize>, Vec<usize>) =
        (0..set.len()).partition(|&i| set.tensors[i].is_some());
    if with.is_empty() {
        return Err(BadInput(format!(
            "{}: no record has a `tensor` (9 values, row-major 3×3)",
            source.jsonl.display()
        ))
        .into());
    }
    let c = run.load_checkpoint(clip_checkpoint)?;
    let (s, t) = run_on(
        device,
        EmbedTask {
            config: &info.model,
            weights: c.model,
            set: &set,
            idx: &with,
            batch_size: clip_spec.training.batch_size,
        },
    )??;
    let inputs = match modality {
        Modality::Text => t,
        Modality::Graph => s,
    };
    Ok(EmbeddedRows {
        rows: TensorRows {
            ids: with.iter().map(|&i| set.ids[i].clone()).collect(),
            dim: inputs.len() / with.len(),
            inputs,
            tensors: with.iter().filter_map(|&i| set.tensors[i]).collect(),
            is_val: with.iter().map(|&i| set.is_val[i]).collect(),
        },
        without_tensor: without.iter().map(|&i| set.ids[i].clone()).collect(),
        source,
        clip_epoch: c.state.epoch,
    })
}

/// MAE and R² of always predicting the training mean: the floor a head must clear.
pub(super) fn baseline(
    rows: &TensorRows,
    idx: &[usize],
    targets: &TensorTargets,
) -> TensorEvaluation {
    let pred: Vec<f64> = idx
        .iter()
        .flat_map(|_| targets.mean.iter().copied())
        .collect();
    let truth = rows.truth(idx, targets.mode);
    TensorEvaluation {
        loss: f64::NAN,
        metrics: regression_metrics(&pred, &truth, targets.mode.component_names()),
    }
}

pub(super) fn print_table(e: &TensorEvaluation, mean_predictor: &TensorEvaluation, title: &str) {
    println!("{title}:");
    println!("  component        MAE         R²   (training-mean predictor: MAE)");
    for (c, b) in e
        .metrics
        .components
        .iter()
        .zip(&mean_predictor.metrics.components)
    {
        println!(
            "  {:<9} {:>11.4} {:>10.4}   ({:.4})",
            c.name, c.mae, c.r2, b.mae
        );
    }
    println!(
        "  mean      {:>11.4} {:>10.4}   ({:.4}); pooled R² {:.4}",
        e.metrics.mae, e.metrics.r2, mean_predictor.metrics.mae, e.metrics.r2_pooled
    );
}

pub(super) fn write_predictions<'a>(
    path: &Path,
    rows: &TensorRows,
    targets: &TensorTargets,
    parts: impl Iterator<Item = (&'a [usize], &'a [f64])>,
) -> anyhow::Result<()> {
    let names = targets.mode.component_names();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string(), "split".to_string()];
    header.extend(names.iter().map(|n| format!("true_{n}")));
    header.extend(names.iter().map(|n| format!("pred_{n}")));
    w.write_record(&header)?;
    for (idx, pred) in parts {
        for (r, &i) in idx.iter().enumerate() {
            let mut record = vec![
                rows.ids[i].clone(),
                if rows.is_val[i] { "val" } else { "train" }.to_string(),
            ];
            record.extend(
                targets
                    .mode
                    .select(&rows.tensors[i])
                    .iter()
                    .map(f64::to_string),
            );
            record.extend(
                pred[r * names.len()..(r + 1) * names.len()]
                    .iter()
                    .map(f64::to_string),
            );
            w.write_record(&record)?;
        }
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::output::write_atomic(path, &bytes)
}

/// Evaluation and de-normalised predictions of the rows `idx` by saved head weights.
pub(super) fn predict_on(
    device: &DeviceSpec,
    info: &TensorRunInfo,
    weights: Vec<u8>,
    rows: &TensorRows,
    idx: &[usize],
) -> anyhow::Result<(TensorEvaluation, Vec<f64>)> {
    run_on(
        device,
        PredictTask {
            info,
            weights,
            rows,
            idx,
        },
    )?
}

struct PredictTask<'a> {
    info: &'a TensorRunInfo,
    weights: Vec<u8>,
    rows: &'a TensorRows,
    idx: &'a [usize],
}

impl OnDevice for PredictTask<'_> {
    type Output = anyhow::Result<(TensorEvaluation, Vec<f64>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let head: TensorHead<B::InnerBackend> =
            model_from_bytes(self.info.head.init(&device), self.weights, &device)?;
        Ok(evaluate_head(
            &head,
            self.rows,
            self.idx,
            &self.info.targets,
            self.info.loss,
            self.info.batch_size,
            &device,
        )?)
    }
}
