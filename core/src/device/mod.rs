//! The one device layer both front ends use: parse what the user asked for
//! (`cpu`, `wgpu[:N]`, `cuda[:N]`), check that this build and this machine can
//! provide it, and run generic work on the matching burn backend.

#[cfg(target_family = "wasm")]
mod browser;
#[cfg(all(feature = "cuda", not(target_family = "wasm")))]
mod cuda_probe;
#[cfg(not(target_family = "wasm"))]
mod listing;
mod spec;
mod transfer;

#[cfg(all(target_family = "wasm", feature = "wgpu"))]
pub use browser::webgpu_device;

pub use spec::{CpuBackend, DeviceSpec, parse_device_list};
pub use transfer::copy_params_async;

#[cfg(not(target_family = "wasm"))]
pub use listing::{DeviceInfo, available_devices, available_summary};

#[cfg(all(
    not(target_family = "wasm"),
    any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "cuda"
    )
))]
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;

/// CPU backend: burn's NdArray (portable reference; also runs inside the browser).
#[cfg(feature = "ndarray")]
pub type NdArray = burn_ndarray::NdArray<f32>;
/// CPU backend: burn-flex (SIMD + `gemm`; also runs inside the browser).
#[cfg(feature = "flex")]
pub type Flex = burn_flex::Flex<f32>;
/// GPU backend through wgpu: Vulkan/Metal/DX12 natively, WebGPU in the browser.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn_wgpu::Wgpu<f32, i32>;
/// NVIDIA backend; the CUDA driver is loaded at run time.
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda<f32, i32>;

/// Why a device cannot be used. Every variant names what *is* available.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "unknown device `{given}`; expected one of: cpu, wgpu[:N], cuda[:N] (available here: {available})"
    )]
    Unknown { given: String, available: String },
    #[error(
        "device list `{given}` names {count} devices, and a process uses one: to train on several, run one process per device (`xtal train clip --device D --nodes N --node-rank K --coordinator HOST:PORT`); available here: {available}"
    )]
    Several {
        given: String,
        count: usize,
        available: String,
    },
    #[error(
        "the `{backend}` backend is not compiled into this build ({hint}); available here: {available}"
    )]
    NotCompiled {
        backend: &'static str,
        hint: &'static str,
        available: String,
    },
    #[error("no {what} found ({reason}); available here: {available}")]
    NotFound {
        what: String,
        reason: String,
        available: String,
    },
}

/// Work that runs on whichever autodiff backend the user's device resolves to.
///
/// A trait rather than a closure because the body must be generic over the backend.
pub trait OnDevice {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Run `task` on the backend that `spec` names, after checking that it exists.
#[cfg(not(target_family = "wasm"))]
#[cfg_attr(
    not(any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "cuda"
    )),
    allow(unused_variables)
)]
pub fn run_on<T: OnDevice>(spec: &DeviceSpec, task: T) -> Result<T::Output, DeviceError> {
    let available = || listing::available_summary();
    match spec {
        DeviceSpec::Cpu(CpuBackend::Flex) => {
            #[cfg(feature = "flex")]
            {
                Ok(task.run::<Autodiff<Flex>>(burn_flex::FlexDevice))
            }
            #[cfg(not(feature = "flex"))]
            Err(DeviceError::NotCompiled {
                backend: "cpu:flex",
                hint: "enable the `flex` feature",
                available: available(),
            })
        }
        DeviceSpec::Cpu(CpuBackend::NdArray) => {
            #[cfg(feature = "ndarray")]
            {
                Ok(task.run::<Autodiff<NdArray>>(burn_ndarray::NdArrayDevice::Cpu))
            }
            #[cfg(not(feature = "ndarray"))]
            Err(DeviceError::NotCompiled {
                backend: "cpu:ndarray",
                hint: "enable the `ndarray` feature",
                available: available(),
            })
        }
        DeviceSpec::Wgpu(index) => {
            #[cfg(feature = "wgpu")]
            {
                let device = listing::wgpu_device(*index)?;
                Ok(task.run::<Autodiff<Wgpu>>(device))
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = index;
                Err(DeviceError::NotCompiled {
                    backend: "wgpu",
                    hint: "enable the `wgpu` feature",
                    available: available(),
                })
            }
        }
        DeviceSpec::Cuda(index) => {
            #[cfg(feature = "cuda")]
            {
                let count = cuda_probe::probe()
                    .map_err(|reason| DeviceError::NotFound {
                        what: "usable CUDA driver".into(),
                        reason,
                        available: available(),
                    })?
                    .len();
                if *index >= count {
                    return Err(DeviceError::NotFound {
                        what: format!("CUDA device {index}"),
                        reason: format!("the driver reports {count} device(s)"),
                        available: available(),
                    });
                }
                Ok(task.run::<Autodiff<Cuda>>(burn_cuda::CudaDevice::new(*index)))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(DeviceError::NotCompiled {
                    backend: "cuda",
                    hint: "rebuild with `cargo build --release -p xtal --features cuda`",
                    available: available(),
                })
            }
        }
    }
}
