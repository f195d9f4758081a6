//! Block 5 — reciprocal space: the k-distance row (|G| of the 59 k-points) → 512.
//!
//! Each k-point is a token: Fourier features of its value plus a learned position, through a
//! Transformer. Pretexts, both with the values removed from the input: masked k-distance
//! modelling (15 % of the points, scattered) and k-point interpolation (a contiguous run of
//! 3–6 points, filled in from both ends).

use burn::module::Param;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::{
    FtcpSample, beside_features, choose_masked, float2, hide, mask_embedding, weighted_mean,
};
use crate::data::SeededRng;
use crate::featurize::FtcpPart;
use crate::featurize::ftcp::NUM_KPOINTS;

const FREQUENCIES: usize = 8;
const MASK_FRACTION: f64 = 0.15;

pub struct KDistanceBatch<B: Backend> {
    /// `[b, 59]` scaled values, hidden ones zeroed.
    pub values: Tensor<B, 2>,
    pub targets: Tensor<B, 2>,
    /// `[b, 59]`: scattered hidden points, and the hidden run.
    pub scattered: Tensor<B, 2>,
    pub run: Tensor<B, 2>,
}

impl<B: Backend> KDistanceBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let (n, k) = (samples.len(), NUM_KPOINTS);
        let (mut values, mut targets) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
        let (mut scattered, mut run) = (vec![0f32; n * k], vec![0f32; n * k]);
        for (b, s) in samples.iter().enumerate() {
            let v = s.scaled(FtcpPart::KDistances);
            if let Some(r) = rng.as_deref_mut() {
                let len = 3 + r.below(4);
                // Strictly inside the row, so both ends are known.
                let start = 1 + r.below(k - len - 1);
                for x in &mut run[b * k + start..b * k + start + len] {
                    *x = 1.0;
                }
                for (i, m) in choose_masked(k, MASK_FRACTION, r).into_iter().enumerate() {
                    if m && run[b * k + i] == 0.0 {
                        scattered[b * k + i] = 1.0;
                    }
                }
            }
            for (i, x) in v.iter().enumerate() {
                targets.push(*x);
                let hidden = scattered[b * k + i] + run[b * k + i] > 0.0;
                values.push(if hidden { 0.0 } else { *x });
            }
        }
        Self {
            values: float2(values, [n, k], device),
            targets: float2(targets, [n, k], device),
            scattered: float2(scattered, [n, k], device),
            run: float2(run, [n, k], device),
        }
    }
}

#[derive(Config, Debug)]
pub struct KDistanceEncoderConfig {
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub output_dim: usize,
}

#[derive(Module, Debug)]
pub struct KDistanceEncoder<B: Backend> {
    embed: Linear<B>,
    position: Param<Tensor<B, 2>>,
    mask_embedding: Param<Tensor<B, 1>>,
    attention: TransformerEncoder<B>,
    output: Linear<B>,
    value_head: Linear<B>,
}

impl KDistanceEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> KDistanceEncoder<B> {
        let (w, o) = (self.width, self.output_dim);
        let normal = Distribution::Normal(0.0, 0.02);
        KDistanceEncoder {
            embed: LinearConfig::new(1 + 2 * FREQUENCIES, w).init(device),
            position: Param::from_tensor(Tensor::random([NUM_KPOINTS, w], normal, device)),
            mask_embedding: mask_embedding(w, device),
            attention: TransformerEncoderConfig::new(w, 2 * w, self.heads, self.layers)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            output: LinearConfig::new(NUM_KPOINTS * w, o).init(device),
            value_head: LinearConfig::new(w + o, 1).init(device),
        }
    }
}

/// `[b, k]` → `[b, k, 1 + 2F]`: the value and sin/cos of 2π·f·value for f = 1…F.
fn fourier<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, k] = x.dims();
    let device = x.device();
    let f: Vec<f32> = (1..=FREQUENCIES)
        .map(|f| (std::f64::consts::TAU * f as f64) as f32)
        .collect();
    let f = Tensor::<B, 1>::from_data(TensorData::new(f, [FREQUENCIES]), &device).reshape([
        1,
        1,
        FREQUENCIES,
    ]);
    let x = x.reshape([b, k, 1]);
    let phase = x.clone() * f;
    Tensor::cat(vec![x, phase.clone().sin(), phase.cos()], 2)
}

impl<B: Backend> KDistanceEncoder<B> {
    /// Features `[b, output_dim]` and point states `[b, 59, width]`.
    pub fn forward(&self, batch: &KDistanceBatch<B>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let tokens = self.embed.forward(fourier(batch.values.clone()));
        let [b, k, w] = tokens.dims();
        let hidden = batch.scattered.clone() + batch.run.clone();
        let tokens =
            hide(tokens, hidden, &self.mask_embedding) + self.position.val().unsqueeze_dim::<3>(0);
        let states = self.attention.forward(TransformerEncoderInput::new(tokens));
        let features = self.output.forward(states.clone().reshape([b, k * w]));
        (features, states)
    }

    pub fn pretext(&self, batch: &KDistanceBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let (features, states) = self.forward(batch);
        let [b, k, _] = states.dims();
        let predicted = self
            .value_head
            .forward(beside_features(states, features))
            .reshape([b, k]);
        let error = (predicted - batch.targets.clone()).powi_scalar(2);
        vec![
            (
                "masked_k_distance",
                weighted_mean(error.clone(), batch.scattered.clone()),
            ),
            ("k_interpolation", weighted_mean(error, batch.run.clone())),
        ]
    }
}
