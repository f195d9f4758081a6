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

/// A fixture's JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}
