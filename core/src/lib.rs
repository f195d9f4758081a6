//! xtal-core: crystal structures, data, models, trainers, metrics and bundles.
//!
//! Everything here is generic over a burn [`Backend`](burn::tensor::backend::Backend) and
//! builds for native targets and `wasm32-unknown-unknown` alike; the front ends (`xtal`
//! CLI, `xtal-web`) only pick a concrete backend through [`device`].

pub mod bundle;
pub mod check;
pub mod data;
pub mod device;
pub mod featurize;
pub mod metrics;
pub mod models;
pub mod structure;
pub mod train;
pub mod viz;
