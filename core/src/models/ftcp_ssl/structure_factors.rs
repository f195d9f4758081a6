//! Block 6 — the structure-factor rows (92 elemental properties × 59 k-points) → 256.
//!
//! A residual CNN over the 92 × 59 map (a strided stem, then residual blocks), pooled to a
//! fixed grid. Pretexts: masked structure-factor reconstruction (8 whole k-point columns
//! removed from the input) and real ↔ reciprocal mapping: the real-space property block
//! (92 properties × the element columns, which the map is computed from but never shows) is
//! predicted from the reciprocal map.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{FtcpSample, float2, float3, weighted_mean};
use crate::data::SeededRng;
use crate::featurize::FtcpPart;
use crate::featurize::element_table::ELEMENT_FEATURES;
use crate::featurize::ftcp::NUM_KPOINTS;

const HIDDEN_COLUMNS: usize = 8;
const GRID: [usize; 2] = [8, 8];

pub struct StructureFactorBatch<B: Backend> {
    /// `[b, 2, 92, 59]`: the scaled map with hidden columns zeroed, and a hidden flag.
    pub map: Tensor<B, 4>,
    pub targets: Tensor<B, 3>,
    /// `[b, 92, 59]`: 1 in hidden columns.
    pub hidden: Tensor<B, 3>,
    /// `[b, 92 · columns]` the scaled real-space property block.
    pub real: Tensor<B, 2>,
}

impl<B: Backend> StructureFactorBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let (n, p, k) = (samples.len(), ELEMENT_FEATURES, NUM_KPOINTS);
        let e = samples.first().map_or(4, |s| s.layout.element_columns());
        let mut map = vec![0f32; n * 2 * p * k];
        let (mut targets, mut hidden) = (Vec::with_capacity(n * p * k), vec![0f32; n * p * k]);
        let mut real = Vec::with_capacity(n * p * e);
        for (b, s) in samples.iter().enumerate() {
            let values = s.scaled(FtcpPart::StructureFactors);
            let mut columns = vec![false; k];
            if let Some(r) = rng.as_deref_mut() {
                let mut order: Vec<usize> = (0..k).collect();
                crate::data::seeded_shuffle(&mut order, r.next_u64());
                for &c in &order[..HIDDEN_COLUMNS] {
                    columns[c] = true;
                }
            }
            for (i, v) in values.iter().enumerate() {
                let c = i % k;
                let base = b * 2 * p * k;
                if columns[c] {
                    hidden[b * p * k + i] = 1.0;
                    map[base + p * k + i] = 1.0;
                } else {
                    map[base + i] = *v;
                }
            }
            targets.extend(values);
            real.extend(s.scaled(FtcpPart::Properties));
        }
        Self {
            map: Tensor::from_data(TensorData::new(map, [n, 2, p, k]), device),
            targets: float3(targets, [n, p, k], device),
            hidden: float3(hidden, [n, p, k], device),
            real: float2(real, [n, p * e], device),
        }
    }
}

#[derive(Config, Debug)]
pub struct StructureFactorEncoderConfig {
    pub channels: usize,
    pub residual_blocks: usize,
    pub output_dim: usize,
    #[config(default = 4)]
    pub columns: usize,
}

#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    first: Conv2d<B>,
    second: Conv2d<B>,
}

impl<B: Backend> ResidualBlock<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(x.clone() + self.second.forward(relu(self.first.forward(x))))
    }
}

#[derive(Module, Debug)]
pub struct StructureFactorEncoder<B: Backend> {
    stem: Conv2d<B>,
    blocks: Vec<ResidualBlock<B>>,
    pool: AdaptiveAvgPool2d,
    output: Linear<B>,
    reconstruction_head: Linear<B>,
    real_head: Linear<B>,
}

impl StructureFactorEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> StructureFactorEncoder<B> {
        let c = self.channels.max(4);
        let conv = |i: usize, o: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        StructureFactorEncoder {
            // Strided: the map is 92 × 59, and a full-resolution stack is too slow on a CPU.
            stem: Conv2dConfig::new([2, c], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            blocks: (0..self.residual_blocks)
                .map(|_| ResidualBlock {
                    first: conv(c, c),
                    second: conv(c, c),
                })
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new(GRID).init(),
            output: LinearConfig::new(c * GRID[0] * GRID[1], self.output_dim).init(device),
            reconstruction_head: LinearConfig::new(self.output_dim, ELEMENT_FEATURES * NUM_KPOINTS)
                .init(device),
            real_head: LinearConfig::new(self.output_dim, ELEMENT_FEATURES * self.columns)
                .init(device),
        }
    }
}

impl<B: Backend> StructureFactorEncoder<B> {
    /// Features `[b, output_dim]`.
    pub fn forward(&self, batch: &StructureFactorBatch<B>) -> Tensor<B, 2> {
        let mut x = relu(self.stem.forward(batch.map.clone()));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.pool.forward(x);
        let [b, c, h, w] = x.dims();
        self.output.forward(x.reshape([b, c * h * w]))
    }

    pub fn pretext(&self, batch: &StructureFactorBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let features = self.forward(batch);
        let [b, p, k] = batch.targets.dims();
        let reconstructed = self
            .reconstruction_head
            .forward(relu(features.clone()))
            .reshape([b, p, k]);
        let error = (reconstructed - batch.targets.clone()).powi_scalar(2);
        let real = self.real_head.forward(relu(features));
        let real_error = (real - batch.real.clone()).powi_scalar(2).mean();
        vec![
            (
                "masked_structure_factors",
                weighted_mean(error, batch.hidden.clone()),
            ),
            ("real_from_reciprocal", real_error),
        ]
    }
}
