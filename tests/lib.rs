//! Shared helpers for the cross-crate tests: the independent reference fixtures.

use serde::Deserialize;

/// `tests/fixtures/linear_step.json`, produced by `tests/fixtures/linear_step.py` (NumPy).
#[derive(Deserialize)]
pub struct LinearStepFixture<Case, Expected> {
    pub generator: String,
    pub case: Case,
    pub expected: Expected,
}

pub const LINEAR_STEP_JSON: &str = include_str!("fixtures/linear_step.json");
