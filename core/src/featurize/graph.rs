//! Crystal graphs for structure encoders: atoms as nodes, periodic neighbours as edges
//! (CGCNN's defaults: within 8 Å, the 12 nearest and any tied with the 12th), node features =
//! one-hot element + the element table, edges carrying the distance and the Cartesian vector
//! to the neighbour's image (the models expand distances themselves). Graphs of a batch are
//! concatenated with node-index offsets; a padded slot table lets readouts pool per graph.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::element_table::{ELEMENT_FEATURES, ElementTable, MissingElement};
use super::neighbors::{TooManyImages, neighbors_within};
use crate::structure::elements::NUM_ELEMENTS;
use crate::structure::{DisorderedSite, Structure};

/// Neighbours this close (Å) in distance to the last one kept are kept too: truncating a
/// shell of equal distances by list order would make the graph depend on the frame, the
/// site order and the cell chosen.
pub const NEIGHBOR_TIE_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphConfig {
    /// Neighbour cutoff (Å).
    pub cutoff: f64,
    /// Keep at most this many nearest neighbours per atom, plus ties (None: all within the cutoff).
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
}

/// Width of a node's feature vector: one-hot element + element-table vector.
pub const NODE_FEATURES: usize = NUM_ELEMENTS + ELEMENT_FEATURES;

/// One structure's graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrystalGraph {
    pub atomic_numbers: Vec<u8>,
    /// Directed edges (source = centre atom, target = neighbour).
    pub sources: Vec<u32>,
    pub targets: Vec<u32>,
    pub images: Vec<[i32; 3]>,
    pub distances: Vec<f32>,
    /// Cartesian vector from the centre to the neighbour's image (Å).
    pub vectors: Vec<[f32; 3]>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("{0}; graphs need one element per site")]
    Disordered(#[from] DisorderedSite),
    #[error(transparent)]
    NoElementData(#[from] MissingElement),
    #[error(transparent)]
    TooManyImages(#[from] TooManyImages),
    #[error("the structure has no sites")]
    Empty,
    #[error("sites {0} and {1} are {2:.3} Å apart: atoms this close are a duplicated site")]
    Coincident(usize, usize, f64),
}

/// Closer than this (Å), two sites are taken for one atom listed twice.
pub const MIN_DISTANCE: f64 = 0.1;

impl CrystalGraph {
    pub fn build(structure: &Structure, config: &GraphConfig) -> Result<Self, GraphError> {
        let atomic_numbers = structure.atomic_numbers()?;
        if atomic_numbers.is_empty() {
            return Err(GraphError::Empty);
        }
        let neighbors = neighbors_within(structure, config.cutoff)?;
        let mut g = CrystalGraph {
            atomic_numbers,
            sources: vec![],
            targets: vec![],
            images: vec![],
            distances: vec![],
            vectors: vec![],
        };
        for list in neighbors {
            let mut keep = config.max_neighbors.unwrap_or(usize::MAX).min(list.len());
            if keep > 0 {
                let last = list[keep - 1].distance;
                while keep < list.len() && list[keep].distance <= last + NEIGHBOR_TIE_TOLERANCE {
                    keep += 1;
                }
            }
            for nb in &list[..keep] {
                if nb.distance < MIN_DISTANCE {
                    return Err(GraphError::Coincident(nb.center, nb.neighbor, nb.distance));
                }
                g.sources.push(nb.center as u32);
                g.targets.push(nb.neighbor as u32);
                g.images.push(nb.image);
                g.distances.push(nb.distance as f32);
                g.vectors.push(nb.vector.map(|x| x as f32));
            }
        }
        Ok(g)
    }

    /// The graph of `structure` for a model whose node features come from `table`: an
    /// element the table lacks is an error here, not when a batch is built.
    pub fn build_with_table(
        structure: &Structure,
        config: &GraphConfig,
        table: &ElementTable,
    ) -> Result<Self, GraphError> {
        let g = Self::build(structure, config)?;
        for &z in &g.atomic_numbers {
            table.features(z)?;
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
    /// `[nodes, NODE_FEATURES]`, row-major.
    pub node_features: Vec<f32>,
    /// Graph index of every node.
    pub node_graph: Vec<i64>,
    pub sources: Vec<i64>,
    pub targets: Vec<i64>,
    pub distances: Vec<f32>,
    /// `[edges, 3]`, row-major.
    pub vectors: Vec<f32>,
    /// Nodes of the largest graph: readouts see `[graphs, max_nodes]` slots.
    pub max_nodes: usize,
    /// Node index of every slot, `nodes` (a zero row) for padding.
    pub slots: Vec<i64>,
    /// True where a slot is padding.
    pub slot_pad: Vec<bool>,
}

/// The same batch as burn tensors.
#[derive(Debug, Clone)]
pub struct GraphTensors<B: Backend> {
    pub node_features: Tensor<B, 2>,
    pub sources: Tensor<B, 1, Int>,
    pub targets: Tensor<B, 1, Int>,
    pub distances: Tensor<B, 1>,
    pub vectors: Tensor<B, 2>,
    pub slots: Tensor<B, 1, Int>,
    pub slot_pad: Tensor<B, 2, Bool>,
    pub num_graphs: usize,
    pub max_nodes: usize,
}

impl GraphBatch {
    pub fn new(graphs: &[&CrystalGraph], table: &ElementTable) -> Result<Self, GraphError> {
        let nodes: usize = graphs.iter().map(|g| g.num_nodes()).sum();
        let edges: usize = graphs.iter().map(|g| g.num_edges()).sum();
        let max_nodes = graphs.iter().map(|g| g.num_nodes()).max().unwrap_or(0);
        let mut b = GraphBatch {
            num_graphs: graphs.len(),
            node_features: Vec::with_capacity(nodes * NODE_FEATURES),
            node_graph: Vec::with_capacity(nodes),
            sources: Vec::with_capacity(edges),
            targets: Vec::with_capacity(edges),
            distances: Vec::with_capacity(edges),
            vectors: Vec::with_capacity(edges * 3),
            max_nodes,
            slots: Vec::with_capacity(graphs.len() * max_nodes),
            slot_pad: Vec::with_capacity(graphs.len() * max_nodes),
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
            b.distances.extend_from_slice(&g.distances);
            b.vectors.extend(g.vectors.iter().flatten());
            for slot in 0..max_nodes {
                let real = slot < g.num_nodes();
                b.slots.push(if real {
                    offset + slot as i64
                } else {
                    nodes as i64
                });
                b.slot_pad.push(!real);
            }
            offset += g.num_nodes() as i64;
        }
        Ok(b)
    }

    pub fn num_nodes(&self) -> usize {
        self.node_graph.len()
    }

    pub fn num_edges(&self) -> usize {
        self.sources.len()
    }

    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> GraphTensors<B> {
        let (n, e) = (self.num_nodes(), self.num_edges());
        let (g, m) = (self.num_graphs, self.max_nodes);
        GraphTensors {
            node_features: Tensor::from_data(
                TensorData::new(self.node_features.clone(), [n, NODE_FEATURES]),
                device,
            ),
            sources: Tensor::from_data(TensorData::new(self.sources.clone(), [e]), device),
            targets: Tensor::from_data(TensorData::new(self.targets.clone(), [e]), device),
            distances: Tensor::from_data(TensorData::new(self.distances.clone(), [e]), device),
            vectors: Tensor::from_data(TensorData::new(self.vectors.clone(), [e, 3]), device),
            slots: Tensor::from_data(TensorData::new(self.slots.clone(), [g * m]), device),
            slot_pad: Tensor::from_data(TensorData::new(self.slot_pad.clone(), [g, m]), device),
            num_graphs: g,
            max_nodes: m,
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
            magmom: None,
        };
        Structure {
            lattice: Lattice::from_parameters(a, a, a, 90.0, 90.0, 90.0),
            sites: vec![site],
        }
    }

    #[test]
    fn a_shell_of_equal_distances_is_kept_whole() {
        // Simple cubic has 6 nearest neighbours: asking for 4 keeps all 6.
        let config = GraphConfig {
            max_neighbors: Some(4),
            ..GraphConfig::default()
        };
        let g = CrystalGraph::build(&simple_cubic(26, 2.0), &config).unwrap();
        assert_eq!(g.num_edges(), 6);
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
        let batch = GraphBatch::new(&[&po, &fe], &table).unwrap();
        assert_eq!(batch.num_nodes(), 2);
        assert_eq!(batch.node_graph, vec![0, 1]);
        assert!(
            batch.sources[6..].iter().all(|&s| s == 1),
            "second graph's edges are offset"
        );
        assert_eq!(batch.node_features[83], 1.0); // one-hot Po (z = 84) of node 0
        assert_eq!(batch.node_features[NODE_FEATURES + 25], 1.0); // one-hot Fe of node 1
        assert_eq!((batch.max_nodes, batch.slots.clone()), (1, vec![0, 1]));
        // Each Fe edge vector is one lattice vector (2 Å) along ±x, ±y or ±z.
        for v in batch.vectors[18..].chunks(3) {
            let mut a: Vec<f32> = v.iter().map(|x| x.abs()).collect();
            a.sort_by(f32::total_cmp);
            assert!(a[0] < 1e-6 && a[1] < 1e-6 && (a[2] - 2.0).abs() < 1e-5);
        }
        let t = batch.to_tensors::<crate::device::Flex>(&Default::default());
        assert_eq!(t.node_features.dims(), [2, NODE_FEATURES]);
        assert_eq!(t.vectors.dims(), [12, 3]);
        assert_eq!(t.slot_pad.dims(), [2, 1]);
    }
}
