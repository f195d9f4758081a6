//! Every native backend reproduces the NumPy reference of the cross-backend check.
#![cfg(not(target_family = "wasm"))]

use xtal_core::check::{LinearStepCase, LinearStepResult, linear_step};
use xtal_core::device::{CpuBackend, DeviceSpec, OnDevice, available_devices, run_on};
use xtal_tests::{LINEAR_STEP_JSON, LinearStepFixture};

fn fixture() -> LinearStepFixture<LinearStepCase, LinearStepResult> {
    serde_json::from_str(LINEAR_STEP_JSON).expect("fixture parses")
}

struct Check(LinearStepCase);
impl OnDevice for Check {
    type Output = LinearStepResult;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        linear_step::<B>(&self.0, &device).unwrap().read().unwrap()
    }
}

fn assert_matches_reference(spec: DeviceSpec) {
    let fixture = fixture();
    let got = run_on(&spec, Check(fixture.case)).expect("device is available");
    let diff = got.max_abs_diff(&fixture.expected);
    assert!(
        diff <= 1e-5,
        "{spec}: max |diff| vs {} = {diff:e}",
        fixture.generator
    );
}

#[test]
fn cpu_flex_matches_numpy_reference() {
    assert_matches_reference(DeviceSpec::Cpu(CpuBackend::Flex));
}

#[test]
fn cpu_ndarray_matches_numpy_reference() {
    assert_matches_reference(DeviceSpec::Cpu(CpuBackend::NdArray));
}

/// Runs on software Vulkan (llvmpipe) here; CI installs it, so a missing adapter is a failure there.
#[test]
fn wgpu_matches_numpy_reference() {
    let has_adapter = available_devices()
        .iter()
        .any(|d| d.spec.starts_with("wgpu:") && d.usable);
    if !has_adapter {
        assert!(
            std::env::var("CI").is_err(),
            "no wgpu adapter under CI=true: install mesa-vulkan-drivers"
        );
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers)");
        return;
    }
    assert_matches_reference(DeviceSpec::Wgpu(None));
}

#[test]
fn a_wrong_case_is_an_error_not_a_panic() {
    let mut case = fixture().case;
    case.weight.pop();
    struct Shape(LinearStepCase);
    impl OnDevice for Shape {
        type Output = String;
        fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> String {
            linear_step::<B>(&self.0, &device)
                .err()
                .expect("must fail")
                .to_string()
        }
    }
    let message = run_on(&DeviceSpec::Cpu(CpuBackend::DEFAULT), Shape(case)).unwrap();
    assert!(
        message.contains("`weight` has 23 values, expected 24"),
        "{message}"
    );
}
