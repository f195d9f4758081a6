//! Rows of numbers read where they are stored: in memory, or in storage the caller maps (a
//! memory-mapped `.npy` natively). Datasets larger than memory are read a row at a time as
//! batches are built.

use std::borrow::Cow;

use crate::featurize::CrystalGraph;

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

/// Crystal graphs read where they are stored: in memory, or in arrays the caller maps (the
/// graph arrays of a prepared dataset natively). A stored graph is decoded as it is read.
pub trait GraphRows: Send + Sync + std::fmt::Debug {
    /// Graph `i`.
    fn graph(&self, i: usize) -> Cow<'_, CrystalGraph>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Graphs held in memory.
#[derive(Debug)]
pub struct OwnedGraphs(pub Vec<CrystalGraph>);

impl GraphRows for OwnedGraphs {
    fn graph(&self, i: usize) -> Cow<'_, CrystalGraph> {
        Cow::Borrowed(&self.0[i])
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
