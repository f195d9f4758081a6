//! Looks for the CUDA driver at run time, the way cudarc will load it, so that a
//! missing driver is a message instead of a panic deep inside the backend.

use std::ffi::{c_char, c_int, c_uint};

type CuResult = c_int;

#[cfg(target_os = "windows")]
const LIBRARY_NAMES: &[&str] = &["nvcuda.dll"];
#[cfg(not(target_os = "windows"))]
const LIBRARY_NAMES: &[&str] = &["libcuda.so.1", "libcuda.so"];

/// Names of the CUDA devices the driver reports, or why there are none.
pub(super) fn probe() -> Result<Vec<String>, String> {
    // SAFETY: loading the system CUDA driver runs its initialisers, which is what
    // the CUDA backend would do anyway; we only call documented entry points below.
    let library = LIBRARY_NAMES
        .iter()
        .find_map(|name| unsafe { libloading::Library::new(*name) }.ok())
        .ok_or_else(|| {
            format!(
                "no CUDA driver on this machine (could not load {}); install the NVIDIA driver or use --device cpu/wgpu",
                LIBRARY_NAMES.join(" or ")
            )
        })?;
    unsafe {
        let symbol = |name: &[u8]| {
            let shown = String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
            move |e: libloading::Error| format!("the CUDA driver lacks {shown}: {e}")
        };
        let cu_init: libloading::Symbol<unsafe extern "C" fn(c_uint) -> CuResult> =
            library.get(b"cuInit\0").map_err(symbol(b"cuInit\0"))?;
        let cu_device_get_count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> =
            library
                .get(b"cuDeviceGetCount\0")
                .map_err(symbol(b"cuDeviceGetCount\0"))?;
        let cu_device_get: libloading::Symbol<unsafe extern "C" fn(*mut c_int, c_int) -> CuResult> =
            library
                .get(b"cuDeviceGet\0")
                .map_err(symbol(b"cuDeviceGet\0"))?;
        let cu_device_get_name: libloading::Symbol<
            unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult,
        > = library
            .get(b"cuDeviceGetName\0")
            .map_err(symbol(b"cuDeviceGetName\0"))?;

        let status = cu_init(0);
        if status != 0 {
            return Err(format!(
                "the CUDA driver is installed but cuInit failed (CUresult {status}); is a GPU present and visible?"
            ));
        }
        let mut count: c_int = 0;
        let status = cu_device_get_count(&mut count);
        if status != 0 {
            return Err(format!("cuDeviceGetCount failed (CUresult {status})"));
        }
        let mut names = Vec::new();
        for ordinal in 0..count {
            let mut device: c_int = 0;
            let mut buffer = [0 as c_char; 256];
            let name = if cu_device_get(&mut device, ordinal) == 0
                && cu_device_get_name(buffer.as_mut_ptr(), buffer.len() as c_int, device) == 0
            {
                std::ffi::CStr::from_ptr(buffer.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            } else {
                format!("CUDA device {ordinal}")
            };
            names.push(name);
        }
        Ok(names)
    }
}
