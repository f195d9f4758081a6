//! Structures → tensors: the FTCP tensor (self-supervised encoders) and crystal graphs
//! (structure encoders), with the per-element property table both use.

pub mod element_table;
pub mod ftcp;
pub mod graph;
pub mod neighbors;
pub mod normalizer;
mod record;

pub use element_table::{ELEMENT_FEATURES, ElementTable, MissingElement};
pub use ftcp::{Ftcp, FtcpConfig, FtcpError, FtcpPart, FtcpRegion, StructureFactor, ftcp};
pub use graph::{CrystalGraph, GraphBatch, GraphConfig, GraphError, GraphTensors, NODE_FEATURES};
pub use neighbors::{Neighbor, TooManyImages, neighbors_within};
pub use normalizer::RowMinMax;
pub use record::{FeaturizeConfig, Featurized, featurize_cif};
