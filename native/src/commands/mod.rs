pub mod bench;
mod bench_structures;
pub mod cif;
pub mod devices;
pub mod prepare;

use xtal_core::device::{DeviceSpec, available_summary, parse_device_list};

/// Parse `--device` into exactly one device (a comma list is reserved for multi-GPU).
pub fn one_device(text: &str) -> anyhow::Result<DeviceSpec> {
    let specs = parse_device_list(text, &available_summary())?;
    match specs.as_slice() {
        [one] => Ok(*one),
        _ => Err(xtal_core::device::DeviceError::Several {
            given: text.to_string(),
            count: specs.len(),
            available: available_summary(),
        }
        .into()),
    }
}
