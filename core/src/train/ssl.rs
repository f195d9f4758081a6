//! Training the FTCP self-supervised blocks: the rows (raw FTCP tensors, their training-row
//! scaling, crystal systems, split), one epoch of one block on the shared optimiser, the
//! validation losses per pretext task (with a fixed masking, so epochs compare), and
//! feature extraction from unmasked inputs in row order.
//!
//! The losses are read back synchronously: SSL pretraining is a native workload.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::optimizer::ModelOptimizer;
use super::to_host;
use crate::data::SeededRng;
use crate::featurize::{FtcpConfig, RowMinMax};
use crate::models::ftcp_ssl::{BlockBatch, BlockKind, FtcpSample, SslBlock};
use crate::structure::CrystalSystem;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SslError {
    #[error("FTCP data holds {values} values, not a multiple of {rows} × {cols}")]
    Shape {
        values: usize,
        rows: usize,
        cols: usize,
    },
    #[error("{what}: {found} entries for {rows} FTCP tensors")]
    Length {
        what: &'static str,
        found: usize,
        rows: usize,
    },
    #[error("FTCP tensor {row} (id {id}) holds a non-finite value at row {r}, column {c}")]
    NonFinite {
        row: usize,
        id: String,
        r: usize,
        c: usize,
    },
    #[error("the normaliser is for {n_rows} × {n_cols} tensors, the data is {rows} × {cols}")]
    Normalizer {
        n_rows: usize,
        n_cols: usize,
        rows: usize,
        cols: usize,
    },
}

/// The materials the blocks train on, in input order.
#[derive(Debug, Clone)]
pub struct SslData {
    pub ids: Vec<String>,
    pub layout: FtcpConfig,
    /// `len × rows × cols`, raw as stored.
    pub raw: Vec<f32>,
    pub normalizer: RowMinMax,
    pub crystal_systems: Vec<Option<CrystalSystem>>,
    pub is_val: Vec<bool>,
    /// Occupied sites per row, counted once: Blocks 3 and 4 bucket every epoch by them.
    site_counts: Vec<usize>,
}

impl SslData {
    /// Checks shapes and values; the normaliser must come from training rows.
    pub fn new(
        ids: Vec<String>,
        layout: FtcpConfig,
        raw: Vec<f32>,
        normalizer: RowMinMax,
        crystal_systems: Vec<Option<CrystalSystem>>,
        is_val: Vec<bool>,
    ) -> Result<Self, SslError> {
        let (rows, cols) = (layout.rows(), layout.cols());
        let per = rows * cols;
        if per == 0 || !raw.len().is_multiple_of(per) {
            return Err(SslError::Shape {
                values: raw.len(),
                rows,
                cols,
            });
        }
        if normalizer.rows != rows || normalizer.cols != cols {
            return Err(SslError::Normalizer {
                n_rows: normalizer.rows,
                n_cols: normalizer.cols,
                rows,
                cols,
            });
        }
        let n = raw.len() / per;
        for (what, found) in [
            ("ids", ids.len()),
            ("crystal systems", crystal_systems.len()),
            ("split", is_val.len()),
        ] {
            if found != n {
                return Err(SslError::Length {
                    what,
                    found,
                    rows: n,
                });
            }
        }
        if let Some(k) = raw.iter().position(|v| !v.is_finite()) {
            let row = k / per;
            return Err(SslError::NonFinite {
                row,
                id: ids[row].clone(),
                r: (k % per) / cols,
                c: k % cols,
            });
        }
        let mut data = Self {
            ids,
            layout,
            raw,
            normalizer,
            crystal_systems,
            is_val,
            site_counts: Vec::new(),
        };
        data.site_counts = (0..n)
            .map(|i| data.sample(i).occupied_sites().len())
            .collect();
        Ok(data)
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

    /// An epoch's `batches` as block `kind` trains on them: Blocks 3 and 4 pad a batch to its
    /// largest cell (pairs of sites cost its square), so their rows go in batches of similar
    /// site counts, windows of 16 batches at a time.
    pub fn block_batches(
        &self,
        kind: BlockKind,
        batches: Vec<Vec<usize>>,
        seed: u64,
    ) -> Vec<Vec<usize>> {
        match kind {
            BlockKind::Sites | BlockKind::Occupancy => {
                crate::data::bucket_by_size(batches, |i| self.site_counts[i], 16, seed)
            }
            _ => batches,
        }
    }

    pub fn sample(&self, i: usize) -> FtcpSample<'_> {
        let per = self.layout.rows() * self.layout.cols();
        FtcpSample {
            raw: &self.raw[i * per..(i + 1) * per],
            normalizer: &self.normalizer,
            layout: &self.layout,
            crystal_system: self.crystal_systems[i],
        }
    }

    /// The rows `idx` as a batch for `kind`, masked with `rng` (none: unmasked).
    pub fn batch<B: Backend>(
        &self,
        kind: BlockKind,
        idx: &[usize],
        rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> BlockBatch<B> {
        let samples: Vec<FtcpSample> = idx.iter().map(|&i| self.sample(i)).collect();
        BlockBatch::build(kind, &samples, rng, device)
    }
}

/// Pretext losses, each task's and their weighted total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskLosses {
    pub total: f64,
    pub tasks: Vec<(String, f64)>,
}

/// The loss weights of `kind`'s tasks, with `overrides` (task name → weight) applied.
pub fn task_weights(kind: BlockKind, overrides: &[(String, f64)]) -> Vec<(String, f64)> {
    kind.tasks()
        .iter()
        .map(|(name, w)| {
            let w = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map_or(*w, |(_, o)| *o);
            (name.to_string(), w)
        })
        .collect()
}

/// The masking stream of one batch: a function of (seed, epoch, batch) only, so a resumed
/// run masks as the uninterrupted one would.
fn mask_rng(seed: u64, epoch: usize, batch: usize) -> SeededRng {
    SeededRng::new(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (batch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// One epoch of one block; `on_step` sees each batch's losses and the learning rate.
#[allow(clippy::too_many_arguments)]
pub fn train_ssl_epoch<B: AutodiffBackend>(
    mut model: SslBlock<B>,
    optimizer: &mut ModelOptimizer<B, SslBlock<B>>,
    data: &SslData,
    batches: &[Vec<usize>],
    weights: &[(String, f64)],
    seed: u64,
    epoch: usize,
    device: &B::Device,
    mut on_step: impl FnMut(&TaskLosses, f64),
) -> SslBlock<B> {
    let kind = model.kind();
    for (k, idx) in batches.iter().enumerate() {
        let mut rng = mask_rng(seed, epoch, k);
        let batch = data.batch::<B>(kind, idx, Some(&mut rng), device);
        let losses = model.pretext(&batch);
        let total = losses.weighted(weights);
        let read = TaskLosses {
            total: scalar(total.clone().inner()),
            tasks: losses
                .tasks
                .iter()
                .map(|(n, l)| (n.to_string(), scalar(l.clone().inner())))
                .collect(),
        };
        on_step(&read, optimizer.lr());
        model = optimizer.backward(model, total).0;
    }
    optimizer.flush(model)
}

fn scalar<B: Backend>(x: Tensor<B, 1>) -> f64 {
    to_host(x).first().copied().unwrap_or(f32::NAN) as f64
}

/// Mean pretext losses over the rows `idx` (batch-size weighted), with a masking that depends
/// only on `seed`: the same for every epoch.
pub fn evaluate_ssl<B: Backend>(
    model: &SslBlock<B>,
    data: &SslData,
    idx: &[usize],
    weights: &[(String, f64)],
    batch_size: usize,
    seed: u64,
    device: &B::Device,
) -> TaskLosses {
    let kind = model.kind();
    let mut sums: Vec<(String, f64)> = kind
        .tasks()
        .iter()
        .map(|(n, _)| (n.to_string(), 0.0))
        .collect();
    let mut total = 0.0;
    for (k, chunk) in idx.chunks(batch_size.max(1)).enumerate() {
        let mut rng = mask_rng(seed, 0, k);
        let batch = data.batch::<B>(kind, chunk, Some(&mut rng), device);
        let losses = model.pretext(&batch);
        let share = chunk.len() as f64 / idx.len().max(1) as f64;
        total += scalar(losses.weighted(weights)) * share;
        for ((_, sum), (_, l)) in sums.iter_mut().zip(&losses.tasks) {
            *sum += scalar(l.clone()) * share;
        }
    }
    TaskLosses { total, tasks: sums }
}

/// The block's features of the rows `idx`, unmasked, row-major `[idx.len(), output_dim]`
/// in the order of `idx`.
pub fn block_features<B: Backend>(
    model: &SslBlock<B>,
    data: &SslData,
    idx: &[usize],
    batch_size: usize,
    device: &B::Device,
    mut on_batch: impl FnMut(usize),
) -> Vec<f32> {
    let kind = model.kind();
    let mut out = Vec::with_capacity(idx.len() * kind.output_dim());
    for chunk in idx.chunks(batch_size.max(1)) {
        let batch = data.batch::<B>(kind, chunk, None, device);
        out.extend(to_host(model.features(&batch)));
        on_batch(chunk.len());
    }
    out
}
