//! Block 3 — the site coordinates (with the cell, for periodic distances) → 512.
//!
//! A message-passing network over the occupied sites of one cell: every pair of sites is an
//! edge carrying its shortest periodic distance (radial basis), and messages are filtered by
//! it (continuous-filter convolution). Pretexts: 15 % of the sites (at least one) are hidden —
//! their coordinates removed, and every distance to them unknown — and the network predicts
//! their coordinates (as cos/sin of 2πx, so 0 and 1 are the same place) and their distances
//! to the other sites.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::{
    FtcpSample, SiteGraphs, beside_features, choose_masked, float2, float3, hide, mask_embedding,
    masked_mean, periodic_coordinates, radial_basis, weighted_mean,
};
use crate::data::SeededRng;

pub(crate) const BASIS: usize = 16;
/// Radial-basis range (Å): distances within one cell rarely exceed it.
pub(crate) const BASIS_MAX: f64 = 12.0;
const MASK_FRACTION: f64 = 0.15;
/// Distances are predicted in units of this (Å), to keep the loss near 1.
const DISTANCE_UNIT: f32 = 10.0;

pub struct SitesBatch<B: Backend> {
    /// `[b, s, 7]`: cos/sin of 2π·(x, y, z) and a hidden flag; hidden sites' values zeroed.
    pub nodes: Tensor<B, 3>,
    pub valid: Tensor<B, 2>,
    pub masked: Tensor<B, 2>,
    /// `[b, s, s]` distances (Å) where both sites are shown, else 0.
    pub distances: Tensor<B, 3>,
    /// `[b, s, s]`: 1 where the distance is shown.
    pub known: Tensor<B, 3>,
    /// `[b, s, s]`: 1 between two different real sites.
    pub neighbours: Tensor<B, 3>,
    /// `[b, s, 6]` the true cos/sin coordinates.
    pub coordinates: Tensor<B, 3>,
    /// `[b, s, s]` true distances in units of 10 Å, and where they are hidden.
    pub distance_targets: Tensor<B, 3>,
    pub distance_weights: Tensor<B, 3>,
}

impl<B: Backend> SitesBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let g = SiteGraphs::new(samples);
        let (n, s) = (samples.len(), g.width);
        let mut nodes = vec![0f32; n * s * 7];
        let mut coordinates = vec![0f32; n * s * 6];
        let mut masked = vec![0f32; n * s];
        let (mut known, mut neighbours) = (vec![0f32; n * s * s], vec![0f32; n * s * s]);
        let (mut targets, mut weights) = (vec![0f32; n * s * s], vec![0f32; n * s * s]);
        let mut shown = g.distances.clone();
        for b in 0..n {
            let count = g.sites[b].len();
            let hidden = match rng.as_deref_mut() {
                Some(r) => choose_masked(count, MASK_FRACTION, r),
                None => vec![false; count],
            };
            // A cell of one site has nothing to infer it from.
            let hidden: Vec<bool> = hidden.into_iter().map(|h| h && count >= 2).collect();
            for i in 0..count {
                let c = periodic_coordinates(g.coordinates[b][i]);
                coordinates[(b * s + i) * 6..(b * s + i) * 6 + 6].copy_from_slice(&c);
                if hidden[i] {
                    masked[b * s + i] = 1.0;
                    nodes[(b * s + i) * 7 + 6] = 1.0;
                } else {
                    nodes[(b * s + i) * 7..(b * s + i) * 7 + 6].copy_from_slice(&c);
                }
                for j in 0..count {
                    let k = (b * s + i) * s + j;
                    if i == j {
                        continue;
                    }
                    neighbours[k] = 1.0;
                    targets[k] = g.distances[k] / DISTANCE_UNIT;
                    if hidden[i] || hidden[j] {
                        weights[k] = 1.0;
                        shown[k] = 0.0;
                    } else {
                        known[k] = 1.0;
                    }
                }
            }
        }
        Self {
            nodes: float3(nodes, [n, s, 7], device),
            valid: float2(g.valid(), [n, s], device),
            masked: float2(masked, [n, s], device),
            distances: float3(shown, [n, s, s], device),
            known: float3(known, [n, s, s], device),
            neighbours: float3(neighbours, [n, s, s], device),
            coordinates: float3(coordinates, [n, s, 6], device),
            distance_targets: float3(targets, [n, s, s], device),
            distance_weights: float3(weights, [n, s, s], device),
        }
    }
}

#[derive(Config, Debug)]
pub struct SitesEncoderConfig {
    pub width: usize,
    pub layers: usize,
    pub output_dim: usize,
}

#[derive(Module, Debug)]
pub struct SiteLayer<B: Backend> {
    filter: Linear<B>,
    message: Linear<B>,
    update: Linear<B>,
    norm: LayerNorm<B>,
}

impl<B: Backend> SiteLayer<B> {
    fn new(w: usize, device: &B::Device) -> Self {
        Self {
            filter: LinearConfig::new(BASIS + 1, w).init(device),
            message: LinearConfig::new(w, w).init(device),
            update: LinearConfig::new(2 * w, w).init(device),
            norm: LayerNormConfig::new(w).init(device),
        }
    }

    /// `h [b, s, w]`, edge features `[b, s, s, k+1]`, `neighbours [b, s, s]`.
    fn forward(
        &self,
        h: Tensor<B, 3>,
        edges: Tensor<B, 4>,
        neighbours: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let filters = silu(self.filter.forward(edges)) * neighbours.clone().unsqueeze_dim::<4>(3);
        let messages = self.message.forward(h.clone()).unsqueeze_dim::<4>(1);
        let count = neighbours.sum_dim(2).clamp_min(1.0);
        let m = (filters * messages).sum_dim(2).squeeze_dim::<3>(2) / count;
        let u = self
            .update
            .forward(silu(Tensor::cat(vec![h.clone(), m], 2)));
        self.norm.forward(h + u)
    }
}

#[derive(Module, Debug)]
pub struct SitesEncoder<B: Backend> {
    embed: Linear<B>,
    mask_embedding: Param<Tensor<B, 1>>,
    layers: Vec<SiteLayer<B>>,
    output: Linear<B>,
    coordinate_head: Linear<B>,
    pair_left: Linear<B>,
    pair_right: Linear<B>,
    pair_context: Linear<B>,
    distance_head: Linear<B>,
}

impl SitesEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> SitesEncoder<B> {
        let (w, o) = (self.width, self.output_dim);
        SitesEncoder {
            embed: LinearConfig::new(7, w).init(device),
            mask_embedding: mask_embedding(w, device),
            layers: (0..self.layers)
                .map(|_| SiteLayer::new(w, device))
                .collect(),
            output: LinearConfig::new(w, o).init(device),
            coordinate_head: LinearConfig::new(w + o, 6).init(device),
            pair_left: LinearConfig::new(w, w).init(device),
            pair_right: LinearConfig::new(w, w).init(device),
            pair_context: LinearConfig::new(o, w).init(device),
            distance_head: LinearConfig::new(w, 1).init(device),
        }
    }
}

/// Radial basis of the shown distances plus a "shown" channel: `[b, s, s, k+1]`.
pub(crate) fn edge_features<B: Backend>(
    distances: Tensor<B, 3>,
    known: Tensor<B, 3>,
) -> Tensor<B, 4> {
    let k = known.clone().unsqueeze_dim::<4>(3);
    Tensor::cat(
        vec![radial_basis(distances, BASIS, BASIS_MAX) * k.clone(), k],
        3,
    )
}

impl<B: Backend> SitesEncoder<B> {
    /// Features `[b, output_dim]` and site states `[b, s, width]`.
    pub fn forward(&self, batch: &SitesBatch<B>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let mut h = hide(
            self.embed.forward(batch.nodes.clone()),
            batch.masked.clone(),
            &self.mask_embedding,
        );
        let edges = edge_features(batch.distances.clone(), batch.known.clone());
        for layer in &self.layers {
            h = layer.forward(h, edges.clone(), batch.neighbours.clone());
        }
        let features = self
            .output
            .forward(masked_mean(h.clone(), batch.valid.clone()));
        (features, h)
    }

    pub fn pretext(&self, batch: &SitesBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let (features, h) = self.forward(batch);
        let [b, s, w] = h.dims();
        let coords = self
            .coordinate_head
            .forward(beside_features(h.clone(), features.clone()));
        let coord_error = (coords - batch.coordinates.clone()).powi_scalar(2);
        let coord_weight = batch.masked.clone().unsqueeze_dim::<3>(2).repeat_dim(2, 6);
        let pair = self.pair_left.forward(h.clone()).unsqueeze_dim::<4>(2)
            + self.pair_right.forward(h).unsqueeze_dim::<4>(1)
            + self.pair_context.forward(features).reshape([b, 1, 1, w]);
        let distance = self.distance_head.forward(silu(pair)).reshape([b, s, s]);
        let distance_error = (distance - batch.distance_targets.clone()).powi_scalar(2);
        vec![
            (
                "masked_coordinates",
                weighted_mean(coord_error, coord_weight),
            ),
            (
                "site_distances",
                weighted_mean(distance_error, batch.distance_weights.clone()),
            ),
        ]
    }
}
