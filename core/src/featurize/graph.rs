//! Crystal graphs for structure encoders: atoms as nodes, periodic neighbours as edges
//! (CGCNN's defaults: within 8 Å, the 12 nearest), node features = one-hot element + the
//! element table, edge features = Gaussian expansion of the distance. Graphs of a batch are
//! concatenated with node-index offsets.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::element_table::{ELEMENT_FEATURES, ElementTable, MissingElement};
use super::neighbors::{TooManyImages, neighbors_within};
use crate::structure::elements::NUM_ELEMENTS;
use crate::structure::{DisorderedSite, Structure};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphConfig {
    /// Neighbour cutoff (Å).
    pub cutoff: f64,
    /// Keep at most this many nearest neighbours per atom (None: all within the cutoff).
    pub max_neighbors: Option<usize>,
    /// Gaussian centres run from 0 to `cutoff` in steps of `gaussian_step`, width `gaussian_width`.
    pub gaussian_step: f64,
    pub gaussian_width: f64,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            cutoff: 8.0,
            max_neighbors: Some(12),
            gaussian_step: 0.2,
            gaussian_width: 0.2,
        }
    }
}

impl GraphConfig {
    pub fn gaussian_centers(&self) -> Vec<f64> {
        let n = (self.cutoff / self.gaussian_step + 1e-9).floor() as usize + 1;
        (0..n).map(|i| i as f64 * self.gaussian_step).collect()
    }
    pub fn node_features(&self) -> usize {
        NUM_ELEMENTS + ELEMENT_FEATURES
    }
}

/// One structure's graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrystalGraph {
    pub atomic_numbers: Vec<u8>,
    /// Directed edges (source = centre atom, target = neighbour).
    pub sources: Vec<u32>,
    pub targets: Vec<u32>,
    pub images: Vec<[i32; 3]>,
    pub distances: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("{0}; graphs need one element per site")]
    Disordered(#[from] DisorderedSite),
    #[error(transparent)]
    NoElementData(#[from] MissingElement),
    #[error(transparent)]
    TooManyImages(#[from] TooManyImages),
}

impl CrystalGraph {
    pub fn build(structure: &Structure, config: &GraphConfig) -> Result<Self, GraphError> {
        let atomic_numbers = structure.atomic_numbers()?;
        let neighbors = neighbors_within(structure, config.cutoff)?;
        let mut g = CrystalGraph {
            atomic_numbers,
            sources: vec![],
            targets: vec![],
            images: vec![],
            distances: vec![],
        };
        for list in neighbors {
            let keep = config.max_neighbors.unwrap_or(usize::MAX).min(list.len());
            for nb in &list[..keep] {
                g.sources.push(nb.center as u32);
                g.targets.push(nb.neighbor as u32);
                g.images.push(nb.image);
                g.distances.push(nb.distance as f32);
            }
        }
        Ok(g)
    }

    pub fn num_nodes(&self) -> usize {
        self.atomic_numbers.len()
    }
    pub fn num_edges(&self) -> usize {
        self.sources.len()
    }
}

/// Graphs concatenated into one disconnected graph, as plain arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphBatch {
    pub num_graphs: usize,
    /// `[nodes, node_features]`, row-major.
    pub node_features: Vec<f32>,
    pub node_feature_dim: usize,
    /// Graph index of every node.
    pub node_graph: Vec<i64>,
    pub sources: Vec<i64>,
    pub targets: Vec<i64>,
    /// `[edges, gaussians]`, row-major.
    pub edge_features: Vec<f32>,
    pub edge_feature_dim: usize,
}

/// The same batch as burn tensors.
#[derive(Debug, Clone)]
pub struct GraphTensors<B: Backend> {
    pub node_features: Tensor<B, 2>,
    pub node_graph: Tensor<B, 1, Int>,
    pub sources: Tensor<B, 1, Int>,
    pub targets: Tensor<B, 1, Int>,
    pub edge_features: Tensor<B, 2>,
    pub num_graphs: usize,
}

impl GraphBatch {
    pub fn new(
        graphs: &[&CrystalGraph],
        table: &ElementTable,
        config: &GraphConfig,
    ) -> Result<Self, GraphError> {
        let centers = config.gaussian_centers();
        let node_feature_dim = config.node_features();
        let mut b = GraphBatch {
            num_graphs: graphs.len(),
            node_features: vec![],
            node_feature_dim,
            node_graph: vec![],
            sources: vec![],
            targets: vec![],
            edge_features: vec![],
            edge_feature_dim: centers.len(),
        };
        let mut offset = 0i64;
        for (gi, g) in graphs.iter().enumerate() {
            for &z in &g.atomic_numbers {
                let props = table.features(z)?;
                let start = b.node_features.len();
                b.node_features.resize(start + NUM_ELEMENTS, 0.0);
                b.node_features[start + z as usize - 1] = 1.0;
                b.node_features.extend_from_slice(props);
                b.node_graph.push(gi as i64);
            }
            b.sources
                .extend(g.sources.iter().map(|&s| s as i64 + offset));
            b.targets
                .extend(g.targets.iter().map(|&t| t as i64 + offset));
            for &d in &g.distances {
                let w2 = config.gaussian_width * config.gaussian_width;
                b.edge_features.extend(
                    centers
                        .iter()
                        .map(|c| (-(d as f64 - c).powi(2) / w2).exp() as f32),
                );
            }
            offset += g.num_nodes() as i64;
        }
        Ok(b)
    }

    pub fn num_nodes(&self) -> usize {
        self.node_graph.len()
    }

    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> GraphTensors<B> {
        let (n, e) = (self.num_nodes(), self.sources.len());
        GraphTensors {
            node_features: Tensor::from_data(
                TensorData::new(self.node_features.clone(), [n, self.node_feature_dim]),
                device,
            ),
            node_graph: Tensor::from_data(TensorData::new(self.node_graph.clone(), [n]), device),
            sources: Tensor::from_data(TensorData::new(self.sources.clone(), [e]), device),
            targets: Tensor::from_data(TensorData::new(self.targets.clone(), [e]), device),
            edge_features: Tensor::from_data(
                TensorData::new(self.edge_features.clone(), [e, self.edge_feature_dim]),
                device,
            ),
            num_graphs: self.num_graphs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::{Lattice, Site, Species};

    fn simple_cubic(z: u8, a: f64) -> Structure {
        let site = Site {
            frac: [0.0; 3],
            species: vec![(Species { z, oxidation: None }, 1.0)],
            label: "X".into(),
        };
        Structure {
            lattice: Lattice::from_parameters(a, a, a, 90.0, 90.0, 90.0),
            sites: vec![site],
        }
    }

    #[test]
    fn simple_cubic_has_six_nearest_neighbours_and_batches_with_offsets() {
        let config = GraphConfig {
            max_neighbors: Some(6),
            ..GraphConfig::default()
        };
        let po = CrystalGraph::build(&simple_cubic(84, 3.35), &config).unwrap();
        assert_eq!(po.num_edges(), 6);
        assert!(po.distances.iter().all(|d| (d - 3.35).abs() < 1e-5));
        let mut images: Vec<[i32; 3]> = po.images.clone();
        images.sort();
        assert_eq!(
            images,
            vec![
                [-1, 0, 0],
                [0, -1, 0],
                [0, 0, -1],
                [0, 0, 1],
                [0, 1, 0],
                [1, 0, 0]
            ]
        );

        let fe = CrystalGraph::build(&simple_cubic(26, 2.0), &config).unwrap();
        let table = ElementTable::default_table();
        let batch = GraphBatch::new(&[&po, &fe], &table, &config).unwrap();
        assert_eq!(batch.num_nodes(), 2);
        assert_eq!(batch.node_graph, vec![0, 1]);
        assert!(
            batch.sources[6..].iter().all(|&s| s == 1),
            "second graph's edges are offset"
        );
        let dim = batch.node_feature_dim;
        assert_eq!(batch.node_features[83], 1.0); // one-hot Po (z = 84) of node 0
        assert_eq!(batch.node_features[dim + 25], 1.0); // one-hot Fe of node 1
        // Gaussian expansion: 41 centres 0, 0.2, …, 8; a 2.0 Å edge peaks at centre 10.
        assert_eq!(batch.edge_feature_dim, 41);
        let fe_edge = &batch.edge_features[6 * 41..7 * 41];
        assert!((fe_edge[10] - 1.0).abs() < 1e-6 && fe_edge[11] < 0.4);
        let t = batch.to_tensors::<crate::device::Flex>(&Default::default());
        assert_eq!(t.node_features.dims(), [2, dim]);
        assert_eq!(t.edge_features.dims(), [12, 41]);
    }
}
