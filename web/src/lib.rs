//! xtal for JavaScript: the same core as the native CLI, on WebGPU when the browser has an
//! adapter and on the CPU (NdArray compiled to wasm) otherwise. Every read from the GPU is
//! asynchronous, as WebGPU requires. Only built for wasm targets.
#![cfg(target_family = "wasm")]

use burn::backend::Autodiff;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use xtal_core::check::{LinearStepCase, linear_step};
use xtal_core::device::{Flex, NdArray, Wgpu};

mod session;
pub use session::Session;

/// Panics (bugs, never user input) go to the console and to `globalThis.xtalPanic(message)`
/// when the page or worker defines it, so a crash is reported with its message instead of
/// wasm's bare "unreachable".
#[wasm_bindgen(start)]
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let stack = js_sys::Reflect::get(&js_sys::Error::new("panic"), &"stack".into())
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
        let message = JsValue::from(format!("xtal panicked: {info}\n{stack}"));
        let global = js_sys::global();
        let call = |object: &JsValue, name: &str| {
            if let Ok(f) = js_sys::Reflect::get(object, &name.into())
                && let Some(f) = f.dyn_ref::<js_sys::Function>()
            {
                let _ = f.call1(object, &message);
            }
        };
        if let Ok(console) = js_sys::Reflect::get(&global, &"console".into()) {
            call(&console, "error");
        }
        call(&global, "xtalPanic");
    }));
}

/// Where computations run.
#[wasm_bindgen]
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) fallback_reason: Option<String>,
}

#[wasm_bindgen]
impl DeviceInfo {
    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.clone()
    }
    /// Human description, e.g. the WebGPU adapter's name.
    #[wasm_bindgen(getter)]
    pub fn description(&self) -> String {
        self.description.clone()
    }
    /// Why WebGPU was not used when `auto` fell back to the CPU.
    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback_reason.clone()
    }
}

fn cpu_info(fallback_reason: Option<String>) -> DeviceInfo {
    DeviceInfo {
        kind: "cpu".into(),
        description: "CPU (burn-flex in wasm)".into(),
        fallback_reason,
    }
}

/// Open a device: `"auto"` (WebGPU when an adapter exists, else the CPU), `"webgpu"` or `"cpu"`.
#[wasm_bindgen(js_name = openDevice)]
pub async fn open_device(prefer: String) -> Result<DeviceInfo, JsError> {
    match prefer.as_str() {
        "cpu" => Ok(cpu_info(None)),
        "webgpu" | "auto" => match webgpu().await {
            Ok(description) => Ok(DeviceInfo {
                kind: "webgpu".into(),
                description,
                fallback_reason: None,
            }),
            Err(e) if prefer == "auto" => Ok(cpu_info(Some(e))),
            Err(e) => Err(JsError::new(&e)),
        },
        other => Err(JsError::new(&format!(
            "unknown device `{other}`; expected \"auto\", \"webgpu\" or \"cpu\""
        ))),
    }
}

async fn webgpu() -> Result<String, String> {
    xtal_core::device::webgpu_device()
        .await
        .map(|(_, name)| name)
        .map_err(|e| e.to_string())
}

/// Run the cross-backend check (see `xtal_core::check`) on `device` (`"webgpu"`, `"cpu"`,
/// `"cpu:flex"` or `"cpu:ndarray"`),
/// with a case given as JSON; returns the result as JSON.
#[wasm_bindgen(js_name = linearStepCheck)]
pub async fn linear_step_check(device: String, case_json: String) -> Result<String, JsError> {
    let case: LinearStepCase = serde_json::from_str(&case_json)
        .map_err(|e| JsError::new(&format!("check case is not valid JSON: {e}")))?;
    let result = match device.as_str() {
        "cpu" | "cpu:flex" => {
            let tensors = linear_step::<Autodiff<Flex>>(&case, &burn_flex::FlexDevice)?;
            tensors.read_async().await?
        }
        "cpu:ndarray" => {
            let tensors =
                linear_step::<Autodiff<NdArray>>(&case, &burn_ndarray::NdArrayDevice::Cpu)?;
            tensors.read_async().await?
        }
        "webgpu" => {
            webgpu().await.map_err(|e| JsError::new(&e))?;
            let tensors =
                linear_step::<Autodiff<Wgpu>>(&case, &burn_wgpu::WgpuDevice::DefaultDevice)?;
            tensors.read_async().await?
        }
        other => {
            return Err(JsError::new(&format!(
                "unknown device `{other}`; expected \"webgpu\", \"cpu\", \"cpu:flex\" or \"cpu:ndarray\""
            )));
        }
    };
    Ok(serde_json::to_string(&result)?)
}

/// Reads CIF text (every data block with atom sites) and returns a JSON list of structure
/// summaries — `a b c alpha beta gamma volume density nsites reduced_formula spacegroup_number
/// spacegroup_symbol crystal_system block warnings` — the same reader and symmetry search as
/// `xtal cif`; `warnings` lists what the reader assumed (`{line, message}`).
/// A malformed file throws an error naming the line.
#[wasm_bindgen(js_name = readCif)]
pub fn read_cif(text: String) -> Result<String, JsError> {
    use xtal_core::structure::{CifOptions, StructureSummary, SymmetryTolerance};
    let structures = xtal_core::structure::read_cif(&text, &CifOptions::default())
        .map_err(|e| JsError::new(&e.to_string()))?;
    let mut out = Vec::with_capacity(structures.len());
    for s in structures {
        let summary = StructureSummary::of(&s.structure, SymmetryTolerance::default())
            .map_err(|e| JsError::new(&format!("data_{}: {e}", s.block)))?;
        let mut value = serde_json::to_value(summary).map_err(|e| JsError::new(&e.to_string()))?;
        value["block"] = s.block.into();
        value["warnings"] =
            serde_json::to_value(&s.warnings).map_err(|e| JsError::new(&e.to_string()))?;
        out.push(value);
    }
    Ok(serde_json::Value::Array(out).to_string())
}
