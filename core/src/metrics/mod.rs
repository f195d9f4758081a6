//! Evaluation metrics, shared by trainers, the CLI and the browser: regression on plain arrays,
//! retrieval on the embeddings' device in blocks.

pub mod regression;
pub mod retrieval;

pub use regression::{ComponentMetrics, RegressionMetrics, regression_metrics};
pub use retrieval::{
    RetrievalMetrics, retrieval_metrics, retrieval_metrics_grouped, retrieval_metrics_in_blocks,
};
