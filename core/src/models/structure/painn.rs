//! PaiNN (Schütt, Unke & Gastegger, ICML 2021): every atom carries scalar features `s` and
//! vector features `v ∈ ℝ^{3×F}`. Messages use the interatomic unit vectors, so directions —
//! not only distances — shape the features, while the scalars stay invariant and the vectors
//! rotate with the frame:
//! - message: `[a, b, c] = φ(sⱼ) ⊙ W(rᵢⱼ)`; `Δsᵢ = Σⱼ a`, `Δvᵢ = Σⱼ b ⊙ vⱼ + c ⊗ r̂ᵢⱼ`;
//! - update: `[a_vv, a_sv, a_ss] = MLP(s, ‖Vv‖)`; `Δv = a_vv ⊙ Uv`, `Δs = a_ss + a_sv ⊙ ⟨Uv, Vv⟩`.
//!
//! `W` is linear in the sine basis `sin(nπr/r_c)/r` times the cosine envelope. The readout
//! uses the scalars only.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::{Edges, scatter_sum};
use crate::featurize::graph::{GraphConfig, GraphTensors, NODE_FEATURES};

/// Keeps the gradient of ‖Vv‖ finite where the vector features are zero (the first layer).
const NORM_EPS: f64 = 1e-8;

#[derive(Config, Debug)]
pub struct PainnConfig {
    pub hidden: usize,
    pub layers: usize,
    pub radial_basis: usize,
}

#[derive(Module, Debug)]
pub struct PainnMessage<B: Backend> {
    phi_in: Linear<B>,
    phi_out: Linear<B>,
    filter: Linear<B>,
}

#[derive(Module, Debug)]
pub struct PainnUpdate<B: Backend> {
    u: Linear<B>,
    v: Linear<B>,
    mlp_in: Linear<B>,
    mlp_out: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Painn<B: Backend> {
    embed: Linear<B>,
    messages: Vec<PainnMessage<B>>,
    updates: Vec<PainnUpdate<B>>,
    #[module(skip)]
    cutoff: f64,
    #[module(skip)]
    radial_basis: usize,
}

impl PainnConfig {
    pub fn init<B: Backend>(&self, graph: &GraphConfig, device: &B::Device) -> Painn<B> {
        let h = self.hidden;
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let plain = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Painn {
            embed: linear(NODE_FEATURES, h),
            messages: (0..self.layers)
                .map(|_| PainnMessage {
                    phi_in: linear(h, h),
                    phi_out: linear(h, 3 * h),
                    filter: linear(self.radial_basis, 3 * h),
                })
                .collect(),
            updates: (0..self.layers)
                .map(|_| PainnUpdate {
                    u: plain(h, h),
                    v: plain(h, h),
                    mlp_in: linear(2 * h, h),
                    mlp_out: linear(h, 3 * h),
                })
                .collect(),
            cutoff: graph.cutoff,
            radial_basis: self.radial_basis,
        }
    }
}

impl<B: Backend> Painn<B> {
    /// Scalar atom features `[nodes, hidden]`.
    pub fn forward(&self, graph: &GraphTensors<B>) -> Tensor<B, 2> {
        let device = graph.distances.device();
        let edges = Edges::of(graph, self.cutoff);
        let n_basis = Tensor::<B, 1, Int>::arange(1..self.radial_basis as i64 + 1, &device)
            .float()
            .unsqueeze_dim::<2>(0);
        let basis = (edges.distance.clone() * n_basis * (std::f64::consts::PI / self.cutoff)).sin()
            / edges.distance.clone();
        let radial = basis * edges.envelope.clone(); // [E, basis]
        let mut s = self.embed.forward(graph.node_features.clone());
        let [n, h] = s.dims();
        let mut v = Tensor::<B, 3>::zeros([n, 3, h], &device);
        for (message, update) in self.messages.iter().zip(&self.updates) {
            let (ds, dv) = message.forward(s.clone(), v.clone(), graph, &radial, &edges.unit);
            s = s + ds;
            v = v + dv;
            let (ds, dv) = update.forward(s.clone(), v.clone());
            s = s + ds;
            v = v + dv;
        }
        s
    }
}

impl<B: Backend> PainnMessage<B> {
    fn forward(
        &self,
        s: Tensor<B, 2>,
        v: Tensor<B, 3>,
        graph: &GraphTensors<B>,
        radial: &Tensor<B, 2>,
        unit: &Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [n, h] = s.dims();
        let phi = self
            .phi_out
            .forward(silu(self.phi_in.forward(s)))
            .select(0, graph.targets.clone());
        let x = phi * self.filter.forward(radial.clone()); // [E, 3h]
        let a = x.clone().narrow(1, 0, h);
        let b = x.clone().narrow(1, h, h).unsqueeze_dim::<3>(1); // [E, 1, h]
        let c = x.narrow(1, 2 * h, h).unsqueeze_dim::<3>(1);
        let vj = v.select(0, graph.targets.clone()); // [E, 3, h]
        let dv = vj * b + c * unit.clone().unsqueeze_dim::<3>(2);
        (
            scatter_sum(a, graph.sources.clone(), n),
            scatter_sum(dv, graph.sources.clone(), n),
        )
    }
}

impl<B: Backend> PainnUpdate<B> {
    fn forward(&self, s: Tensor<B, 2>, v: Tensor<B, 3>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let h = s.dims()[1];
        let uv = self.u.forward(v.clone());
        let vv = self.v.forward(v);
        let vv_norm = (vv.clone().powi_scalar(2).sum_dim(1) + NORM_EPS)
            .sqrt()
            .squeeze_dim::<2>(1);
        let a = self
            .mlp_out
            .forward(silu(self.mlp_in.forward(Tensor::cat(vec![s, vv_norm], 1))));
        let a_vv = a.clone().narrow(1, 0, h).unsqueeze_dim::<3>(1);
        let a_sv = a.clone().narrow(1, h, h);
        let a_ss = a.narrow(1, 2 * h, h);
        let inner = (uv.clone() * vv).sum_dim(1).squeeze_dim::<2>(1);
        (a_ss + a_sv * inner, uv * a_vv)
    }
}
