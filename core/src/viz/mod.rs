//! Computations behind pictures (the drawing itself is the front end's): t-SNE maps.

pub mod tsne;

pub use tsne::{TsneConfig, joint_probabilities, tsne};
