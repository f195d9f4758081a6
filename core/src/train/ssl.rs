//! Training the FTCP self-supervised blocks: the rows (raw FTCP tensors, their training-row
//! scaling, crystal systems, split), a block's step of the shared loop ([`SslStep`]), the
//! validation losses per pretext task (with a fixed masking, so epochs compare), and
//! feature extraction from unmasked inputs in row order.
//!
//! The losses are read back synchronously: SSL pretraining is a native workload.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::fit::{Metrics, StepLoss, TrainStep};
use super::spec::TrainingSpec;
use super::{ReadError, to_host};
use crate::data::{OwnedRows, SeededRng, TensorRows, epoch_batches};
use crate::featurize::{FtcpConfig, RowMinMax};
use crate::models::ftcp_ssl::bottleneck::Bottleneck;
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
    /// The raw tensors, as stored.
    raw: std::sync::Arc<dyn TensorRows>,
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
        let raw = std::sync::Arc::new(OwnedRows::new(raw, per));
        Self::from_rows(ids, layout, raw, normalizer, crystal_systems, is_val)
    }

    /// As [`Self::new`], over tensors stored elsewhere (each row must hold `rows × cols`
    /// values). Every tensor is read once here, to check its values and count its sites.
    pub fn from_rows(
        ids: Vec<String>,
        layout: FtcpConfig,
        raw: std::sync::Arc<dyn TensorRows>,
        normalizer: RowMinMax,
        crystal_systems: Vec<Option<CrystalSystem>>,
        is_val: Vec<bool>,
    ) -> Result<Self, SslError> {
        let (rows, cols) = (layout.rows(), layout.cols());
        let per = rows * cols;
        if let Some(bad) = (0..raw.len()).find(|&i| raw.row(i).len() != per) {
            return Err(SslError::Shape {
                values: raw.row(bad).len(),
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
        let n = raw.len();
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
        for (row, id) in ids.iter().enumerate() {
            if let Some(k) = raw.row(row).iter().position(|v| !v.is_finite()) {
                return Err(SslError::NonFinite {
                    row,
                    id: id.clone(),
                    r: k / cols,
                    c: k % cols,
                });
            }
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
                crate::data::bucket_by_size(batches, |i| self.site_count(i), 16, seed)
            }
            _ => batches,
        }
    }

    /// Reads one value of every memory page of the rows `idx`, so that a mapped file's pages
    /// are in memory before the batch is built.
    pub fn touch(&self, idx: &[usize]) {
        // 1024 floats: one 4 KiB page.
        let sum: f32 = idx
            .iter()
            .map(|&i| self.raw.row(i).iter().step_by(1024).sum::<f32>())
            .sum();
        std::hint::black_box(sum);
    }

    /// Row `i`'s tensor as stored (unscaled), `rows × cols` values.
    pub fn raw_row(&self, i: usize) -> &[f32] {
        self.raw.row(i)
    }

    /// Row `i`'s occupied sites: the width Blocks 3 and 4 pad its batch to.
    pub fn site_count(&self, i: usize) -> usize {
        self.site_counts[i]
    }

    pub fn sample(&self, i: usize) -> FtcpSample<'_> {
        FtcpSample {
            raw: self.raw.row(i),
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
/// run masks as the uninterrupted one would. Data-parallel ranks mix in their rank, so their
/// shards of one batch are not masked alike (rank 0's stream is one process's).
fn mask_rng(seed: u64, epoch: usize, batch: usize, rank: usize) -> SeededRng {
    SeededRng::new(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (batch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ (rank as u64).wrapping_mul(0x94D0_49BB_1331_11EB),
    )
}

/// A block's part of [`super::fit`]: the weighted pretext losses of a masked batch (the
/// masking a function of (seed, epoch, batch)), each task's loss logged beside them, and
/// validation with a masking that depends on `seed` alone.
pub struct SslStep<'a, B: Backend> {
    pub kind: BlockKind,
    pub data: &'a SslData,
    pub weights: &'a [(String, f64)],
    pub val: &'a [usize],
    pub batch_size: usize,
    pub seed: u64,
    /// The data-parallel rank (0 for one process): its masking stream.
    pub rank: usize,
    pub device: B::Device,
}

impl<B: AutodiffBackend> TrainStep<B> for SslStep<'_, B> {
    type Model = SslBlock<B>;
    type Error = ReadError;
    type Batch = (Vec<usize>, SeededRng);

    /// Blocks 3 and 4 bucket each epoch's batches by site count.
    fn batches(&self, epoch: usize, train: &[usize], t: &TrainingSpec) -> Vec<Vec<usize>> {
        self.data.block_batches(
            self.kind,
            epoch_batches(train, t.batch_size, t.seed, epoch),
            t.seed ^ epoch as u64,
        )
    }

    /// The items with the batch's masking stream; their rows are brought into memory here
    /// (from a mapped file: the disk reads happen on the loader thread, not in the step).
    fn load(
        &self,
        items: &[usize],
        epoch: usize,
        batch: usize,
    ) -> Result<(Vec<usize>, SeededRng), ReadError> {
        self.data.touch(items);
        Ok((items.to_vec(), mask_rng(self.seed, epoch, batch, self.rank)))
    }

    fn loss(
        &self,
        model: &SslBlock<B>,
        (items, mut rng): (Vec<usize>, SeededRng),
    ) -> Result<StepLoss<B>, ReadError> {
        let masked = self
            .data
            .batch::<B>(self.kind, &items, Some(&mut rng), &self.device);
        let losses = model.pretext(&masked);
        Ok(StepLoss {
            loss: losses.weighted(self.weights),
            parts: losses
                .tasks
                .iter()
                .map(|(name, l)| (name.to_string(), l.clone().inner()))
                .collect(),
        })
    }

    fn validate(&self, model: &SslBlock<B::InnerBackend>) -> Result<Metrics, ReadError> {
        let losses = evaluate_ssl(
            model,
            self.data,
            self.val,
            self.weights,
            self.batch_size,
            self.seed,
            &self.device,
        )?;
        Ok(losses.metrics())
    }
}

/// The bottleneck's part of [`super::fit`]: the reconstruction MSE of rows of `x` (each `d`
/// values, standardised as they are read), and its validation over `val` (`val_loss`).
pub struct BottleneckStep<'a, B: Backend> {
    /// Row-major, as stored (natively a memory-mapped `.npy`).
    pub x: &'a [f32],
    pub d: usize,
    /// Per-column mean and standard deviation of the training rows.
    pub mean: &'a [f64],
    pub std: &'a [f64],
    pub val: &'a [usize],
    pub device: B::Device,
}

impl<B: Backend> BottleneckStep<'_, B> {
    /// The rows `idx`, standardised, row-major.
    pub fn values(&self, idx: &[usize]) -> Vec<f32> {
        let mut v = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            let row = &self.x[i * self.d..(i + 1) * self.d];
            v.extend(
                row.iter()
                    .zip(self.mean.iter().zip(self.std))
                    .map(|(x, (m, s))| ((*x as f64 - m) / s) as f32),
            );
        }
        v
    }

    /// The rows `idx` as one standardised `[idx.len(), d]` tensor.
    pub fn rows<Bk: Backend<Device = B::Device>>(&self, idx: &[usize]) -> Tensor<Bk, 2> {
        Tensor::from_data(
            TensorData::new(self.values(idx), [idx.len(), self.d]),
            &self.device,
        )
    }
}

impl<B: AutodiffBackend> TrainStep<B> for BottleneckStep<'_, B> {
    type Model = Bottleneck<B>;
    type Error = ReadError;
    /// The rows, read and standardised.
    type Batch = Vec<f32>;

    fn load(&self, items: &[usize], _epoch: usize, _batch: usize) -> Result<Vec<f32>, ReadError> {
        Ok(self.values(items))
    }

    fn loss(&self, model: &Bottleneck<B>, rows: Vec<f32>) -> Result<StepLoss<B>, ReadError> {
        let n = rows.len() / self.d.max(1);
        let x = Tensor::from_data(TensorData::new(rows, [n, self.d]), &self.device);
        Ok(StepLoss::new(model.forward(x)))
    }

    fn validate(&self, model: &Bottleneck<B::InnerBackend>) -> Result<Metrics, ReadError> {
        let mut val = 0.0;
        for chunk in self.val.chunks(512) {
            let l = to_host(model.forward(self.rows::<B::InnerBackend>(chunk)))?[0] as f64;
            val += l * chunk.len() as f64 / self.val.len().max(1) as f64;
        }
        Ok(vec![("val_loss".to_string(), val)])
    }
}

impl TaskLosses {
    /// `val_loss` and `val_{task}`, as a run records them.
    pub fn metrics(&self) -> Metrics {
        std::iter::once(("val_loss".to_string(), self.total))
            .chain(self.tasks.iter().map(|(n, l)| (format!("val_{n}"), *l)))
            .collect()
    }

    /// The losses [`Self::metrics`] named.
    pub fn from_metrics(metrics: &Metrics) -> Self {
        let mut losses = Self {
            total: f64::NAN,
            tasks: Vec::new(),
        };
        for (name, value) in metrics {
            match name.strip_prefix("val_") {
                Some("loss") => losses.total = *value,
                Some(task) => losses.tasks.push((task.to_string(), *value)),
                None => {}
            }
        }
        losses
    }
}

fn scalar<B: Backend>(x: Tensor<B, 1>) -> Result<f64, ReadError> {
    Ok(to_host(x)?.first().copied().unwrap_or(f32::NAN) as f64)
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
) -> Result<TaskLosses, ReadError> {
    let kind = model.kind();
    let mut sums: Vec<(String, f64)> = kind
        .tasks()
        .iter()
        .map(|(n, _)| (n.to_string(), 0.0))
        .collect();
    let mut total = 0.0;
    for (k, chunk) in idx.chunks(batch_size.max(1)).enumerate() {
        let mut rng = mask_rng(seed, 0, k, 0);
        let batch = data.batch::<B>(kind, chunk, Some(&mut rng), device);
        let losses = model.pretext(&batch);
        let share = chunk.len() as f64 / idx.len().max(1) as f64;
        total += scalar(losses.weighted(weights))? * share;
        for ((_, sum), (_, l)) in sums.iter_mut().zip(&losses.tasks) {
            *sum += scalar(l.clone())? * share;
        }
    }
    Ok(TaskLosses { total, tasks: sums })
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
) -> Result<Vec<f32>, ReadError> {
    let kind = model.kind();
    let mut out = Vec::with_capacity(idx.len() * kind.output_dim());
    for chunk in idx.chunks(batch_size.max(1)) {
        let batch = data.batch::<B>(kind, chunk, None, device);
        out.extend(to_host(model.features(&batch))?);
        on_batch(chunk.len());
    }
    Ok(out)
}
