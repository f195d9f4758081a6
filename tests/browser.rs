//! In a real browser (headless Chromium via wasm-bindgen-test-runner): the check on WebGPU
//! and on NdArray-in-wasm reproduces the same NumPy reference as the native backends.
#![cfg(target_family = "wasm")]

use wasm_bindgen_test::*;
use xtal_core::check::{LinearStepCase, LinearStepResult};
use xtal_tests::{LINEAR_STEP_JSON, LinearStepFixture};

wasm_bindgen_test_configure!(run_in_browser);

async fn check_on(device: &str) {
    let fixture: LinearStepFixture<LinearStepCase, LinearStepResult> =
        serde_json::from_str(LINEAR_STEP_JSON).unwrap();
    let case = serde_json::to_string(&fixture.case).unwrap();
    let got = xtal_web::linear_step_check(device.into(), case)
        .await
        .unwrap_or_else(|e| panic!("{device}: {:?}", wasm_bindgen::JsValue::from(e)));
    let got: LinearStepResult = serde_json::from_str(&got).unwrap();
    let diff = got.max_abs_diff(&fixture.expected);
    assert!(
        diff <= 1e-5,
        "{device}: max |diff| vs {} = {diff:e}",
        fixture.generator
    );
}

#[wasm_bindgen_test]
async fn ndarray_in_wasm_matches_numpy_reference() {
    check_on("cpu:ndarray").await;
}

#[wasm_bindgen_test]
async fn flex_in_wasm_matches_numpy_reference() {
    check_on("cpu:flex").await;
}

#[wasm_bindgen_test]
async fn webgpu_matches_numpy_reference() {
    let device = xtal_web::open_device("webgpu".into())
        .await
        .unwrap_or_else(|e| panic!("no WebGPU adapter: {:?}", wasm_bindgen::JsValue::from(e)));
    assert_eq!(device.kind(), "webgpu");
    check_on("webgpu").await;
}

#[wasm_bindgen_test]
async fn auto_picks_a_device_and_says_which() {
    let device = xtal_web::open_device("auto".into()).await.ok().unwrap();
    assert!(["webgpu", "cpu"].contains(&device.kind().as_str()));
    assert!(!device.description().is_empty());
}
