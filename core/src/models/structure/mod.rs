//! Structure encoders over periodic crystal graphs ([`crate::featurize::graph`]): many graphs
//! per batch as one disconnected graph, messages gathered and summed by edge index, then a
//! per-graph readout (masked mean or attention over the graph's atoms) to a fixed vector.
//!
//! - [`cgcnn`]: CGCNN's gated convolutions over Gaussian-expanded distances (the baseline);
//! - [`painn`]: PaiNN's equivariant message passing over interatomic vectors.
//!
//! Unlike the original CGCNN, normalisation is per atom (LayerNorm, not BatchNorm) so an
//! embedding never depends on which other structures share its batch, and every message is
//! weighted by a cosine envelope that reaches zero at the cutoff, so an atom crossing the
//! cutoff changes nothing abruptly. With sums over neighbours and a mean / softmax readout the
//! embedding is the same for any supercell, site order, origin or orientation.

pub mod cgcnn;
pub mod painn;

use std::f64::consts::PI;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{silu, softmax};
use serde::{Deserialize, Serialize};

use crate::featurize::graph::{GraphConfig, GraphTensors};

use self::cgcnn::{Cgcnn, CgcnnConfig};
use self::painn::{Painn, PainnConfig};
use super::masked_mean;

/// The message-passing network of a structure encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphBackbone {
    Cgcnn,
    Painn,
}

impl std::fmt::Display for GraphBackbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cgcnn => "CGCNN",
            Self::Painn => "PaiNN",
        })
    }
}

impl std::str::FromStr for GraphBackbone {
    type Err = String;

    /// A backbone by name (any case), or an error listing the names.
    fn from_str(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "cgcnn" => Ok(Self::Cgcnn),
            "painn" => Ok(Self::Painn),
            _ => Err(format!(
                "unknown graph backbone `{name}`, expected one of {}",
                Self::NAMES
            )),
        }
    }
}

impl GraphBackbone {
    pub const NAMES: &'static str = "cgcnn, painn";

    /// The backbone's own graph: CGCNN's 8 Å / 12 nearest; PaiNN's 5 Å, every neighbour.
    pub fn default_graph(self) -> GraphConfig {
        match self {
            Self::Cgcnn => GraphConfig::default(),
            Self::Painn => GraphConfig {
                cutoff: 5.0,
                max_neighbors: None,
                ..GraphConfig::default()
            },
        }
    }
}

/// How atom vectors become one vector per structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// Mean over the structure's atoms.
    Mean,
    /// Softmax-weighted sum, one learned score per atom.
    Attention,
}

impl std::str::FromStr for Readout {
    type Err = String;

    /// A readout by name (any case), or an error listing the names.
    fn from_str(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "mean" => Ok(Self::Mean),
            "attention" => Ok(Self::Attention),
            _ => Err(format!(
                "unknown readout `{name}`, expected one of mean, attention"
            )),
        }
    }
}

#[derive(Config, Debug)]
pub struct StructureEncoderConfig {
    pub backbone: GraphBackbone,
    pub graph: GraphConfig,
    /// Width of the atom features.
    #[config(default = 64)]
    pub hidden: usize,
    /// Message-passing layers.
    #[config(default = 3)]
    pub layers: usize,
    /// PaiNN's radial basis size (CGCNN expands distances on the graph's Gaussian grid).
    #[config(default = 20)]
    pub radial_basis: usize,
    #[config(default = "Readout::Mean")]
    pub readout: Readout,
    /// Width of the structure embedding.
    #[config(default = 128)]
    pub output_dim: usize,
}

/// Atom-level network of either backbone.
#[derive(Module, Debug)]
pub enum GraphLayers<B: Backend> {
    Cgcnn(Cgcnn<B>),
    Painn(Painn<B>),
}

/// Crystal graph → atom features → readout → linear + SiLU → `[graphs, output_dim]`.
#[derive(Module, Debug)]
pub struct StructureEncoder<B: Backend> {
    layers: GraphLayers<B>,
    /// Attention readout's atom scores (absent for the mean).
    attention: Option<Linear<B>>,
    output: Linear<B>,
}

impl StructureEncoderConfig {
    /// An encoder with the backbone's own graph settings.
    pub fn of(backbone: GraphBackbone) -> Self {
        Self::new(backbone, backbone.default_graph())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> StructureEncoder<B> {
        let h = self.hidden;
        let layers = match self.backbone {
            GraphBackbone::Cgcnn => GraphLayers::Cgcnn(
                CgcnnConfig::new(h, self.layers, self.graph.gaussian_centers().len())
                    .init(&self.graph, device),
            ),
            GraphBackbone::Painn => GraphLayers::Painn(
                PainnConfig::new(h, self.layers, self.radial_basis).init(&self.graph, device),
            ),
        };
        StructureEncoder {
            layers,
            attention: (self.readout == Readout::Attention)
                .then(|| LinearConfig::new(h, 1).init(device)),
            output: LinearConfig::new(h, self.output_dim).init(device),
        }
    }

    /// Number of trainable values, from the configuration alone (bundles check weights
    /// against it before allocating anything).
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden as u64;
        let linear = |i: u64, o: u64| i * o + o;
        let embed = linear(crate::featurize::graph::NODE_FEATURES as u64, h);
        let layer = match self.backbone {
            GraphBackbone::Cgcnn => {
                let g = self.graph.gaussian_centers().len() as u64;
                linear(2 * h + g, 2 * h) + 2 * (2 * h) + 2 * h
            }
            GraphBackbone::Painn => {
                let r = self.radial_basis as u64;
                let message = linear(h, h) + linear(h, 3 * h) + linear(r, 3 * h);
                let update = 2 * h * h + linear(2 * h, h) + linear(h, 3 * h);
                message + update
            }
        };
        let attention = if self.readout == Readout::Attention {
            h + 1
        } else {
            0
        };
        embed + self.layers as u64 * layer + attention + linear(h, self.output_dim as u64)
    }
}

impl<B: Backend> StructureEncoder<B> {
    pub fn forward(&self, graph: &GraphTensors<B>) -> Tensor<B, 2> {
        let atoms = match &self.layers {
            GraphLayers::Cgcnn(m) => m.forward(graph),
            GraphLayers::Painn(m) => m.forward(graph),
        };
        let slots = per_graph_slots(atoms, graph); // [graphs, max_nodes, hidden]
        let pooled = match &self.attention {
            None => masked_mean(slots, graph.slot_pad.clone()),
            Some(score) => {
                let scores = score
                    .forward(slots.clone())
                    .squeeze_dim::<2>(2)
                    .mask_fill(graph.slot_pad.clone(), -1e9);
                let weights = softmax(scores, 1).unsqueeze_dim::<3>(2);
                (slots * weights).sum_dim(1).squeeze_dim::<2>(1)
            }
        };
        silu(self.output.forward(pooled))
    }
}

/// Atom rows laid out per graph, `[graphs, max_nodes, features]`, padding rows zero.
fn per_graph_slots<B: Backend>(atoms: Tensor<B, 2>, graph: &GraphTensors<B>) -> Tensor<B, 3> {
    let [_, f] = atoms.dims();
    let zero = Tensor::zeros([1, f], &atoms.device());
    Tensor::cat(vec![atoms, zero], 0)
        .select(0, graph.slots.clone())
        .reshape([graph.num_graphs, graph.max_nodes, f])
}

/// `out[index[e]] += values[e]` over the first axis, into `rows` rows.
pub(crate) fn scatter_sum<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    index: Tensor<B, 1, Int>,
    rows: usize,
) -> Tensor<B, D> {
    let mut shape = values.dims();
    shape[0] = rows;
    Tensor::zeros(shape, &values.device()).select_assign(0, index, values, IndexingUpdateOp::Add)
}

/// Edge geometry shared by the backbones: distances `[E, 1]`, unit vectors `[E, 3]` and the
/// cosine envelope `[E, 1]` (1 at distance 0, 0 at the cutoff).
pub(crate) struct Edges<B: Backend> {
    pub distance: Tensor<B, 2>,
    pub unit: Tensor<B, 2>,
    pub envelope: Tensor<B, 2>,
}

impl<B: Backend> Edges<B> {
    pub fn of(graph: &GraphTensors<B>, cutoff: f64) -> Self {
        let distance = graph.distances.clone().unsqueeze_dim::<2>(1);
        // Graph building refuses coincident atoms, so distances are positive.
        let unit = graph.vectors.clone() / distance.clone();
        let envelope = ((distance.clone() * (PI / cutoff)).cos() + 1.0) * 0.5;
        let envelope = envelope.mask_fill(distance.clone().greater_elem(cutoff), 0.0);
        Edges {
            distance,
            unit,
            envelope,
        }
    }
}
