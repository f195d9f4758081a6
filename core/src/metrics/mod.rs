//! Evaluation metrics on plain arrays, shared by trainers, the CLI and the browser.

pub mod retrieval;

pub use retrieval::{RetrievalMetrics, retrieval_metrics};
