//! What this build can run on, on this machine: for `xtal devices` and for error messages.

#[cfg(feature = "wgpu")]
use super::DeviceError;
use super::{CpuBackend, DeviceSpec};

/// One usable (or explicitly unusable) device, as `xtal devices` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// What to pass to `--device`, e.g. `wgpu:0`.
    pub spec: String,
    /// Human name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend and driver, e.g. `wgpu/Vulkan, Cpu`.
    pub backend: String,
    /// Whether `--device spec` will work.
    pub usable: bool,
    /// Why not, or anything else worth knowing.
    pub note: Option<String>,
}

/// Every device this build knows about, usable or not (unusable ones say why).
pub fn available_devices() -> Vec<DeviceInfo> {
    let mut out = Vec::new();
    for (backend, name, compiled) in [
        (
            CpuBackend::Flex,
            "CPU (burn-flex: SIMD + gemm)",
            cfg!(feature = "flex"),
        ),
        (
            CpuBackend::NdArray,
            "CPU (burn NdArray)",
            cfg!(feature = "ndarray"),
        ),
    ] {
        out.push(DeviceInfo {
            spec: DeviceSpec::Cpu(backend).to_string(),
            name: name.into(),
            backend: backend.name().into(),
            usable: compiled,
            note: if !compiled {
                Some(format!("built without the `{}` feature", backend.name()))
            } else if backend == CpuBackend::DEFAULT {
                Some("default".into())
            } else {
                None
            },
        });
    }
    #[cfg(feature = "wgpu")]
    {
        let adapters = wgpu_adapters();
        if adapters.is_empty() {
            out.push(DeviceInfo {
                spec: "wgpu".into(),
                name: "-".into(),
                backend: format!("wgpu/{:?}", wgpu_backend()),
                usable: false,
                note: Some(no_adapter_reason()),
            });
        }
        for (i, info) in adapters.iter().enumerate() {
            out.push(DeviceInfo {
                spec: DeviceSpec::Wgpu(Some(i)).to_string(),
                name: info.name.clone(),
                backend: format!("wgpu/{:?}, {:?}", info.backend, info.device_type),
                usable: true,
                note: (!info.driver.is_empty()).then(|| {
                    format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string()
                }),
            });
        }
    }
    #[cfg(feature = "cuda")]
    match super::cuda_probe::probe() {
        Ok(names) if !names.is_empty() => {
            for (i, name) in names.into_iter().enumerate() {
                out.push(DeviceInfo {
                    spec: DeviceSpec::Cuda(i).to_string(),
                    name,
                    backend: "cuda".into(),
                    usable: true,
                    note: None,
                });
            }
        }
        Ok(_) => out.push(unusable_cuda("the CUDA driver reports no devices".into())),
        Err(reason) => out.push(unusable_cuda(reason)),
    }
    #[cfg(not(feature = "cuda"))]
    out.push(DeviceInfo {
        spec: "cuda".into(),
        name: "-".into(),
        backend: "cuda".into(),
        usable: false,
        note: Some("not compiled in: rebuild with `--features cuda`".into()),
    });
    out
}

#[cfg(feature = "cuda")]
fn unusable_cuda(reason: String) -> DeviceInfo {
    DeviceInfo {
        spec: "cuda".into(),
        name: "-".into(),
        backend: "cuda".into(),
        usable: false,
        note: Some(reason),
    }
}

/// `cpu, wgpu:0` — the usable specs, for error messages.
/// The usable device specs as one comma-separated line, for error messages.
pub fn available_summary() -> String {
    let specs: Vec<String> = available_devices()
        .into_iter()
        .filter(|d| d.usable)
        .map(|d| d.spec)
        .collect();
    if specs.is_empty() {
        "nothing".into()
    } else {
        specs.join(", ")
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_backend() -> wgpu::Backend {
    use burn_wgpu::graphics::GraphicsApi;
    burn_wgpu::graphics::AutoGraphicsApi::backend()
}

/// Adapters in the order cubecl enumerates them, so that indices map onto its devices.
#[cfg(feature = "wgpu")]
fn wgpu_adapters() -> Vec<wgpu::AdapterInfo> {
    let backend = wgpu_backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    futures_lite::future::block_on(instance.enumerate_adapters(backend.into()))
        .into_iter()
        .map(|adapter| adapter.get_info())
        .collect()
}

#[cfg(feature = "wgpu")]
fn no_adapter_reason() -> String {
    match wgpu_backend() {
        wgpu::Backend::Vulkan => "no Vulkan adapter: install a Vulkan driver \
             (e.g. `apt-get install mesa-vulkan-drivers` for the llvmpipe software adapter)"
            .into(),
        other => format!("no {other:?} adapter found"),
    }
}

/// The cubecl device for adapter `index` of [`wgpu_adapters`], or a clear error.
#[cfg(feature = "wgpu")]
pub(super) fn wgpu_device(index: Option<usize>) -> Result<burn_wgpu::WgpuDevice, DeviceError> {
    use burn_wgpu::WgpuDevice;
    let adapters = wgpu_adapters();
    let wanted = index.unwrap_or(0);
    let Some(info) = adapters.get(wanted) else {
        return Err(DeviceError::NotFound {
            what: match index {
                Some(i) => format!("wgpu adapter {i}"),
                None => "wgpu adapter".into(),
            },
            reason: if adapters.is_empty() {
                no_adapter_reason()
            } else {
                format!("{} adapter(s) found", adapters.len())
            },
            available: available_summary(),
        });
    };
    // cubecl picks "the k-th adapter of this type", so translate our global index.
    let same_type_before = adapters[..wanted]
        .iter()
        .filter(|a| a.device_type == info.device_type)
        .count();
    Ok(match info.device_type {
        wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(same_type_before),
        wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(same_type_before),
        wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(same_type_before),
        wgpu::DeviceType::Cpu if same_type_before == 0 => WgpuDevice::Cpu,
        _ => {
            return Err(DeviceError::NotFound {
                what: format!("selectable wgpu adapter {wanted} ({})", info.name),
                reason: format!(
                    "adapters of type {:?} can only be used as the first of their type",
                    info.device_type
                ),
                available: available_summary(),
            });
        }
    })
}
