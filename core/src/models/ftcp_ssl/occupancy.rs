//! Block 4 — site occupancy (which element column each site holds), with the coordinates →
//! 256.
//!
//! Graph attention across the sites of one cell (GATv1 scores per head plus a bias from the
//! periodic distance): unlike the original, attention mixes *sites*, not heads. Pretext:
//! 20 % of the sites (at least one) lose their occupancy, which is predicted from the rest.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, leaky_relu, softmax};

use super::sites::{BASIS, edge_features};
use super::{
    FtcpSample, SiteGraphs, beside_features, choose_masked, float2, float3, hide, mask_embedding,
    masked_mean, periodic_coordinates, weighted_cross_entropy,
};
use crate::data::SeededRng;
use crate::featurize::FtcpPart;

const MASK_FRACTION: f64 = 0.2;

pub struct OccupancyBatch<B: Backend> {
    /// `[b, s, columns + 7]`: the occupancy row (zeroed when hidden), a hidden flag and the
    /// cos/sin coordinates.
    pub nodes: Tensor<B, 3>,
    pub valid: Tensor<B, 2>,
    pub masked: Tensor<B, 2>,
    pub distances: Tensor<B, 3>,
    pub neighbours: Tensor<B, 3>,
    /// `[b·s]` the element column of each site, weighted where hidden.
    pub target: Tensor<B, 1, Int>,
    pub target_weight: Tensor<B, 1>,
}

impl<B: Backend> OccupancyBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let g = SiteGraphs::new(samples);
        let (n, s) = (samples.len(), g.width);
        let e = samples.first().map_or(4, |x| x.layout.element_columns());
        let width = e + 7;
        let mut nodes = vec![0f32; n * s * width];
        let mut masked = vec![0f32; n * s];
        let mut neighbours = vec![0f32; n * s * s];
        let (mut target, mut weight) = (vec![0i64; n * s], vec![0f32; n * s]);
        for (b, sample) in samples.iter().enumerate() {
            let occupancy = sample.scaled(FtcpPart::Occupancy);
            let count = g.sites[b].len();
            let hidden = match rng.as_deref_mut() {
                Some(r) => choose_masked(count, MASK_FRACTION, r),
                None => vec![false; count],
            };
            for (i, &(site, column)) in g.sites[b].iter().enumerate() {
                let row = &mut nodes[(b * s + i) * width..(b * s + i + 1) * width];
                target[b * s + i] = column as i64;
                if hidden[i] {
                    masked[b * s + i] = 1.0;
                    weight[b * s + i] = 1.0;
                    row[e] = 1.0;
                } else {
                    row[..e].copy_from_slice(&occupancy[site * e..(site + 1) * e]);
                }
                row[e + 1..].copy_from_slice(&periodic_coordinates(g.coordinates[b][i]));
                for j in 0..count {
                    if i != j {
                        neighbours[(b * s + i) * s + j] = 1.0;
                    }
                }
            }
        }
        Self {
            nodes: float3(nodes, [n, s, width], device),
            valid: float2(g.valid(), [n, s], device),
            masked: float2(masked, [n, s], device),
            distances: float3(g.distances, [n, s, s], device),
            neighbours: float3(neighbours, [n, s, s], device),
            target: Tensor::from_data(TensorData::new(target, [n * s]), device),
            target_weight: Tensor::from_data(TensorData::new(weight, [n * s]), device),
        }
    }
}

#[derive(Config, Debug)]
pub struct OccupancyEncoderConfig {
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub output_dim: usize,
    /// Element columns of the FTCP layout.
    #[config(default = 4)]
    pub columns: usize,
}

#[derive(Module, Debug)]
pub struct GraphAttention<B: Backend> {
    project: Linear<B>,
    score_target: Param<Tensor<B, 2>>,
    score_source: Param<Tensor<B, 2>>,
    distance_bias: Linear<B>,
    output: Linear<B>,
    norm: LayerNorm<B>,
    heads: usize,
}

impl<B: Backend> GraphAttention<B> {
    fn new(w: usize, heads: usize, device: &B::Device) -> Self {
        let normal = Distribution::Normal(0.0, (1.0 / (w / heads) as f64).sqrt());
        Self {
            project: LinearConfig::new(w, w).init(device),
            score_target: Param::from_tensor(Tensor::random([heads, w / heads], normal, device)),
            score_source: Param::from_tensor(Tensor::random([heads, w / heads], normal, device)),
            distance_bias: LinearConfig::new(BASIS + 1, heads).init(device),
            output: LinearConfig::new(w, w).init(device),
            norm: LayerNormConfig::new(w).init(device),
            heads,
        }
    }

    /// `h [b, s, w]`, `edges [b, s, s, k+1]`, `valid [b, s]`.
    fn forward(&self, h: Tensor<B, 3>, edges: Tensor<B, 4>, valid: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, s, w] = h.dims();
        let (hh, dh) = (self.heads, w / self.heads);
        let x = self
            .project
            .forward(h.clone())
            .reshape([b, s, hh, dh])
            .swap_dims(1, 2);
        let target = (x.clone() * self.score_target.val().reshape([1, hh, 1, dh])).sum_dim(3);
        let source = (x.clone() * self.score_source.val().reshape([1, hh, 1, dh]))
            .sum_dim(3)
            .swap_dims(2, 3);
        let bias = self.distance_bias.forward(edges).permute([0, 3, 1, 2]);
        // Padding sites are never attended to (each real site attends at least to itself).
        let padding = (valid.reshape([b, 1, 1, s]) - 1.0) * 1e9;
        let scores = leaky_relu(target + source, 0.2) + bias + padding;
        let attended = softmax(scores, 3)
            .matmul(x)
            .swap_dims(1, 2)
            .reshape([b, s, w]);
        self.norm.forward(h + gelu(self.output.forward(attended)))
    }
}

#[derive(Module, Debug)]
pub struct OccupancyEncoder<B: Backend> {
    embed: Linear<B>,
    mask_embedding: Param<Tensor<B, 1>>,
    layers: Vec<GraphAttention<B>>,
    output: Linear<B>,
    occupancy_head: Linear<B>,
}

impl OccupancyEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> OccupancyEncoder<B> {
        let (w, o) = (self.width, self.output_dim);
        OccupancyEncoder {
            embed: LinearConfig::new(self.columns + 7, w).init(device),
            mask_embedding: mask_embedding(w, device),
            layers: (0..self.layers)
                .map(|_| GraphAttention::new(w, self.heads, device))
                .collect(),
            output: LinearConfig::new(w, o).init(device),
            occupancy_head: LinearConfig::new(w + o, self.columns).init(device),
        }
    }
}

impl<B: Backend> OccupancyEncoder<B> {
    /// Features `[b, output_dim]` and site states `[b, s, width]`.
    pub fn forward(&self, batch: &OccupancyBatch<B>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let mut h = hide(
            self.embed.forward(batch.nodes.clone()),
            batch.masked.clone(),
            &self.mask_embedding,
        );
        let edges = edge_features(batch.distances.clone(), batch.neighbours.clone());
        for layer in &self.layers {
            h = layer.forward(h, edges.clone(), batch.valid.clone());
        }
        let features = self
            .output
            .forward(masked_mean(h.clone(), batch.valid.clone()));
        (features, h)
    }

    pub fn pretext(&self, batch: &OccupancyBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let (features, h) = self.forward(batch);
        let [b, s, w] = h.dims();
        let o = features.dims()[1];
        let logits = self
            .occupancy_head
            .forward(beside_features(h, features).reshape([b * s, w + o]));
        vec![(
            "masked_occupancy",
            weighted_cross_entropy(logits, batch.target.clone(), batch.target_weight.clone()),
        )]
    }
}
