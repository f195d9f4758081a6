//! Rows of numbers read where they are stored: in memory, or in storage the caller maps (a
//! memory-mapped `.npy` natively). Datasets larger than memory are read a row at a time as
//! batches are built.

/// Fixed-width rows of `f32`.
pub trait TensorRows: Send + Sync + std::fmt::Debug {
    /// Row `i`, row-major values.
    fn row(&self, i: usize) -> &[f32];
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rows held in memory, `len × per` values.
#[derive(Debug)]
pub struct OwnedRows {
    values: Vec<f32>,
    per: usize,
}

impl OwnedRows {
    /// `values.len()` must be a multiple of `per` (checked by the caller).
    pub fn new(values: Vec<f32>, per: usize) -> Self {
        Self { values, per }
    }
}

impl TensorRows for OwnedRows {
    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.per..(i + 1) * self.per]
    }
    fn len(&self) -> usize {
        self.values.len().checked_div(self.per).unwrap_or(0)
    }
}
