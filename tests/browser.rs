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

/// The CIF reader in wasm gives pymatgen's structures (first 150 fixture structures): lattice,
/// volume, density, site count and reduced formula.
#[wasm_bindgen_test]
fn cif_reader_in_wasm_matches_pymatgen() {
    let facts = include_str!("fixtures/structures/facts.jsonl");
    let mut cifs = std::collections::HashMap::new();
    let mut reader = csv::Reader::from_reader(&include_bytes!("fixtures/structures/cifs.csv")[..]);
    for rec in reader.records() {
        let rec = rec.unwrap();
        cifs.insert(rec[0].to_string(), rec[1].to_string());
    }
    for line in facts.lines().take(150) {
        let want: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = want["id"].as_str().unwrap();
        let got: serde_json::Value = serde_json::from_str(
            &xtal_web::read_cif(cifs[id].clone()).unwrap_or_else(|_| panic!("{id}")),
        )
        .unwrap();
        let got = &got[0];
        for key in ["a", "b", "c", "alpha", "beta", "gamma", "volume", "density"] {
            let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{id} {key}: {g} vs {w}"
            );
        }
        assert_eq!(got["nsites"], want["nsites"], "{id}");
        assert_eq!(got["reduced_formula"], want["reduced_formula"], "{id}");
    }
    assert!(xtal_web::read_cif("data_x\nloop_\n_a\n_b\n1\n".into()).is_err());
}

/// A bundle packed by the native CLI (the fuzzer's seed, with a 24-entry index) opens in the
/// page on every device, and the page re-embeds the index's descriptions as the CLI did when
/// packing them (the stored text embeddings), within 1e-4; a text query ranks the same.
#[wasm_bindgen_test]
async fn session_embeds_a_native_bundle_like_the_cli_on_every_device() {
    let bytes = include_bytes!("../fuzz/seeds/bundle/tiny.xtal");
    let bundle = xtal_core::bundle::Bundle::from_bytes(bytes, &Default::default()).unwrap();
    let index = bundle.index.as_ref().unwrap();
    let stored = index.text.as_ref().unwrap();
    let mut rankings = Vec::new();
    for device in ["webgpu", "cpu", "cpu:ndarray"] {
        let session = xtal_web::Session::load(bytes.to_vec(), device.into())
            .await
            .unwrap_or_else(|e| panic!("{device}: {:?}", wasm_bindgen::JsValue::from(e)));
        assert_eq!(session.device().kind(), device.split(':').next().unwrap());
        let got = session
            .embed_texts(index.records.descriptions.clone())
            .await
            .unwrap_or_else(|e| panic!("{device}: {:?}", wasm_bindgen::JsValue::from(e)));
        let diff = got
            .iter()
            .zip(stored)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(got.len(), stored.len());
        assert!(
            diff <= 1e-4,
            "{device}: max |diff| vs the CLI's embeddings {diff:e}"
        );
        let found: serde_json::Value =
            serde_json::from_str(&session.search("a crystal".into(), 5).await.ok().unwrap())
                .unwrap();
        rankings.push(found["results"].clone());
    }
    assert_eq!(rankings[0].as_array().unwrap().len(), 5);
    let ids = |r: &serde_json::Value| -> Vec<String> {
        r.as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].to_string())
            .collect()
    };
    assert_eq!(ids(&rankings[0]), ids(&rankings[1]));
    assert_eq!(ids(&rankings[1]), ids(&rankings[2]));
}

/// A bundle with one flipped byte is refused with the entry named, on load.
#[wasm_bindgen_test]
async fn session_refuses_a_corrupt_bundle() {
    let mut bytes = include_bytes!("../fuzz/seeds/bundle/tiny.xtal").to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5a;
    let Err(e) = xtal_web::Session::load(bytes, "cpu".into()).await else {
        panic!("a corrupt bundle loaded");
    };
    let message = format!("{:?}", wasm_bindgen::JsValue::from(e));
    assert!(
        message.contains("sha256") || message.contains("entry") || message.contains("zip"),
        "{message}"
    );
}
