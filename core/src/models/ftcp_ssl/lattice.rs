//! Block 2 — the lattice rows (a, b, c, α, β, γ) → 256.
//!
//! Six tokens (a value times a learned direction plus a per-parameter embedding) through a
//! Transformer. Pretexts: the crystal system (7 classes, from the structure's space group as
//! `xtal prepare` found it — not a guess from the lengths) and masked lattice-parameter
//! regression, where one or two parameters are removed from the input.

use burn::module::Param;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::{
    FtcpSample, beside_features, float2, hide, ints1, mask_embedding, weighted_cross_entropy,
    weighted_mean,
};
use crate::data::SeededRng;
use crate::featurize::FtcpPart;

const PARAMETERS: usize = 6;
const SYSTEMS: usize = 7;

pub struct LatticeBatch<B: Backend> {
    /// `[b, 6]` scaled parameters, hidden ones zeroed.
    pub values: Tensor<B, 2>,
    /// `[b, 6]` the unmasked scaled parameters (regression targets).
    pub targets: Tensor<B, 2>,
    pub masked: Tensor<B, 2>,
    pub system: Tensor<B, 1, Int>,
    pub has_system: Tensor<B, 1>,
}

impl<B: Backend> LatticeBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let n = samples.len();
        let (mut values, mut targets) = (Vec::with_capacity(n * 6), Vec::with_capacity(n * 6));
        let mut masked = vec![0f32; n * PARAMETERS];
        let (mut system, mut has_system) = (vec![0i64; n], vec![0f32; n]);
        for (b, s) in samples.iter().enumerate() {
            let p = s.scaled(FtcpPart::Lattice);
            if let Some(r) = rng.as_deref_mut() {
                // One or two parameters, never all of a kind: lengths and angles each keep one.
                let first = r.below(PARAMETERS);
                masked[b * PARAMETERS + first] = 1.0;
                if r.unit() < 0.5 {
                    let second = (first + 1 + r.below(2)) % 3 + 3 * (first / 3);
                    masked[b * PARAMETERS + second] = 1.0;
                }
            }
            for (k, v) in p.iter().enumerate() {
                targets.push(*v);
                values.push(if masked[b * PARAMETERS + k] > 0.0 {
                    0.0
                } else {
                    *v
                });
            }
            if let Some(c) = s.crystal_system {
                system[b] = c.index() as i64;
                has_system[b] = 1.0;
            }
        }
        Self {
            values: float2(values, [n, PARAMETERS], device),
            targets: float2(targets, [n, PARAMETERS], device),
            masked: float2(masked, [n, PARAMETERS], device),
            system: ints1(system, device),
            has_system: Tensor::from_data(TensorData::new(has_system, [n]), device),
        }
    }
}

#[derive(Config, Debug)]
pub struct LatticeEncoderConfig {
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub output_dim: usize,
}

#[derive(Module, Debug)]
pub struct LatticeEncoder<B: Backend> {
    value: Linear<B>,
    parameter_embedding: Param<Tensor<B, 2>>,
    mask_embedding: Param<Tensor<B, 1>>,
    attention: TransformerEncoder<B>,
    output: Linear<B>,
    system_head: Linear<B>,
    value_head: Linear<B>,
}

impl LatticeEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> LatticeEncoder<B> {
        let w = self.width;
        let normal = Distribution::Normal(0.0, 0.02);
        LatticeEncoder {
            value: LinearConfig::new(1, w).init(device),
            parameter_embedding: Param::from_tensor(Tensor::random(
                [PARAMETERS, w],
                normal,
                device,
            )),
            mask_embedding: mask_embedding(w, device),
            attention: TransformerEncoderConfig::new(w, 2 * w, self.heads, self.layers)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            output: LinearConfig::new(PARAMETERS * w, self.output_dim).init(device),
            system_head: LinearConfig::new(self.output_dim, SYSTEMS).init(device),
            value_head: LinearConfig::new(w + self.output_dim, 1).init(device),
        }
    }
}

impl<B: Backend> LatticeEncoder<B> {
    /// Features `[b, output_dim]` and the parameter states `[b, 6, width]`.
    pub fn forward(&self, batch: &LatticeBatch<B>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [b, p] = batch.values.dims();
        let tokens = self.value.forward(batch.values.clone().reshape([b, p, 1]));
        let w = tokens.dims()[2];
        let tokens = hide(tokens, batch.masked.clone(), &self.mask_embedding)
            + self.parameter_embedding.val().unsqueeze_dim::<3>(0);
        let states = self.attention.forward(TransformerEncoderInput::new(tokens));
        // Flattened, not pooled: which parameter a state belongs to matters.
        let features = self.output.forward(states.clone().reshape([b, p * w]));
        (features, states)
    }

    pub fn pretext(&self, batch: &LatticeBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let (features, states) = self.forward(batch);
        let [b, p, _] = states.dims();
        let system = weighted_cross_entropy(
            self.system_head.forward(features.clone()),
            batch.system.clone(),
            batch.has_system.clone(),
        );
        let predicted = self
            .value_head
            .forward(beside_features(states, features))
            .reshape([b, p]);
        let error = (predicted - batch.targets.clone()).powi_scalar(2);
        vec![
            ("crystal_system", system),
            ("masked_lattice", weighted_mean(error, batch.masked.clone())),
        ]
    }
}
