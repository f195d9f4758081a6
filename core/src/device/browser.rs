//! Devices inside a browser: WebGPU needs asynchronous set-up, and its absence must
//! fall back to the CPU instead of panicking in cubecl's adapter request.

use std::cell::RefCell;

use super::DeviceError;

thread_local! {
    /// Adapter description once WebGPU has been set up in this thread (a page or worker).
    static WEBGPU_ADAPTER: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Set up WebGPU once and return its device and a description of the adapter.
#[cfg(feature = "wgpu")]
pub async fn webgpu_device() -> Result<(burn_wgpu::WgpuDevice, String), DeviceError> {
    use burn_wgpu::WgpuDevice;
    if let Some(name) = WEBGPU_ADAPTER.with(|a| a.borrow().clone()) {
        return Ok((WgpuDevice::DefaultDevice, name));
    }
    let not_found = |reason: String| DeviceError::NotFound {
        what: "WebGPU adapter".into(),
        reason,
        available: "cpu".into(),
    };
    if !wgpu::util::is_browser_webgpu_supported().await {
        return Err(not_found("this browser exposes no navigator.gpu".into()));
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
        })
        .await
        .map_err(|e| not_found(e.to_string()))?;
    let info = adapter.get_info();
    let name = if info.name.is_empty() {
        format!("WebGPU ({:?})", info.device_type)
    } else {
        format!("WebGPU: {} ({:?})", info.name, info.device_type)
    };
    drop(adapter);
    burn_wgpu::init_setup_async::<burn_wgpu::graphics::WebGpu>(
        &WgpuDevice::DefaultDevice,
        burn_wgpu::RuntimeOptions::default(),
    )
    .await;
    WEBGPU_ADAPTER.with(|a| *a.borrow_mut() = Some(name.clone()));
    Ok((WgpuDevice::DefaultDevice, name))
}
