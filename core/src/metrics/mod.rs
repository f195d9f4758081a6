//! Evaluation metrics on plain arrays, shared by trainers, the CLI and the browser.

pub mod regression;
pub mod retrieval;

pub use regression::{ComponentMetrics, RegressionMetrics, regression_metrics};
pub use retrieval::{RetrievalMetrics, retrieval_metrics};
