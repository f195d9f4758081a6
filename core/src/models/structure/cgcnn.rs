//! CGCNN (Xie & Grossman, PRL 120, 145301, 2018): for every edge i←j the concatenation
//! `[vᵢ, vⱼ, u(rᵢⱼ)]` of both atoms and the Gaussian-expanded distance goes through one linear
//! layer, split into a sigmoid gate and a softplus core; gated messages are summed over
//! neighbours and added to the atom: `vᵢ ← softplus(vᵢ + norm(Σⱼ σ(zW_f) ⊙ softplus(zW_s)))`.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softplus};

use super::{Edges, scatter_sum};
use crate::featurize::graph::{GraphConfig, GraphTensors, NODE_FEATURES};

#[derive(Config, Debug)]
pub struct CgcnnConfig {
    pub hidden: usize,
    pub layers: usize,
    pub gaussians: usize,
}

#[derive(Module, Debug)]
pub struct CgcnnConv<B: Backend> {
    gate: Linear<B>,
    message_norm: LayerNorm<B>,
    sum_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct Cgcnn<B: Backend> {
    embed: Linear<B>,
    convs: Vec<CgcnnConv<B>>,
    #[module(skip)]
    cutoff: f64,
    #[module(skip)]
    gaussian_centers: Vec<f64>,
    #[module(skip)]
    gaussian_width: f64,
}

impl CgcnnConfig {
    pub fn init<B: Backend>(&self, graph: &GraphConfig, device: &B::Device) -> Cgcnn<B> {
        let h = self.hidden;
        Cgcnn {
            embed: LinearConfig::new(NODE_FEATURES, h).init(device),
            convs: (0..self.layers)
                .map(|_| CgcnnConv {
                    gate: LinearConfig::new(2 * h + self.gaussians, 2 * h).init(device),
                    message_norm: LayerNormConfig::new(2 * h).init(device),
                    sum_norm: LayerNormConfig::new(h).init(device),
                })
                .collect(),
            cutoff: graph.cutoff,
            gaussian_centers: graph.gaussian_centers(),
            gaussian_width: graph.gaussian_width,
        }
    }
}

impl<B: Backend> Cgcnn<B> {
    /// Atom features `[nodes, hidden]`.
    pub fn forward(&self, graph: &GraphTensors<B>) -> Tensor<B, 2> {
        let device = graph.distances.device();
        let edges = Edges::of(graph, self.cutoff);
        let centers = Tensor::<B, 1>::from_floats(
            TensorData::new(
                self.gaussian_centers
                    .iter()
                    .map(|c| *c as f32)
                    .collect::<Vec<_>>(),
                [self.gaussian_centers.len()],
            ),
            &device,
        )
        .unsqueeze_dim::<2>(0);
        let expanded = (edges.distance.clone() - centers)
            .powi_scalar(2)
            .div_scalar(-self.gaussian_width * self.gaussian_width)
            .exp();
        let mut atoms = self.embed.forward(graph.node_features.clone());
        for conv in &self.convs {
            atoms = conv.forward(atoms, graph, &expanded, &edges.envelope);
        }
        atoms
    }
}

impl<B: Backend> CgcnnConv<B> {
    fn forward(
        &self,
        atoms: Tensor<B, 2>,
        graph: &GraphTensors<B>,
        expanded: &Tensor<B, 2>,
        envelope: &Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [n, h] = atoms.dims();
        let z = Tensor::cat(
            vec![
                atoms.clone().select(0, graph.sources.clone()),
                atoms.clone().select(0, graph.targets.clone()),
                expanded.clone(),
            ],
            1,
        );
        let z = self.message_norm.forward(self.gate.forward(z));
        let gate = sigmoid(z.clone().narrow(1, 0, h));
        let core = softplus(z.narrow(1, h, h), 1.0);
        let messages = gate * core * envelope.clone();
        let summed = scatter_sum(messages, graph.sources.clone(), n);
        softplus(atoms + self.sum_norm.forward(summed), 1.0)
    }
}
