pub mod bundle;
pub mod cif;
pub mod clip;
pub mod devices;
pub mod prepare;
pub mod property;
pub mod ssl;
pub mod tensor;
pub mod text_model;

use xtal_core::device::{DeviceSpec, available_summary, parse_device_list};

/// `eval`'s `--split`: its name (by default the validation rows of the run's own data, every
/// row of other data) and the rows it selects from a split mask.
pub fn split_rows(split: Option<&str>, own_data: bool, is_val: &[bool]) -> (String, Vec<usize>) {
    let split = split.unwrap_or(if own_data { "val" } else { "all" });
    let rows = match split {
        "val" => xtal_core::data::split_indices(is_val, true),
        "train" => xtal_core::data::split_indices(is_val, false),
        _ => (0..is_val.len()).collect(),
    };
    (split.to_string(), rows)
}

/// Parse `--device` into exactly one device (several devices train as one process each: `--nodes`).
pub fn one_device(text: &str) -> anyhow::Result<DeviceSpec> {
    let specs = parse_device_list(text, available_summary)?;
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

/// A run configuration (`text` from `file`, with `--set` overrides); each key xtal accepts
/// but does not act on is a warning on stderr.
pub fn run_spec(
    text: &str,
    file: &str,
    overrides: &[String],
) -> anyhow::Result<xtal_core::train::spec::RunSpec> {
    let (spec, ignored) = xtal_core::train::spec::RunSpec::from_json(text, file, overrides)
        .map_err(|e| crate::exit::BadInput(e.to_string()))?;
    for key in ignored {
        eprintln!("warning: {file}: {key}");
    }
    Ok(spec)
}

/// A finite number above zero (NaN is not): what tolerances and cutoffs must be.
pub fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// CGCNN's atom_init.json from `path`, or xtal's default element table.
pub fn element_table(
    path: Option<&std::path::Path>,
) -> anyhow::Result<xtal_core::featurize::ElementTable> {
    use anyhow::Context;
    let Some(p) = path else {
        return Ok(xtal_core::featurize::ElementTable::default_table());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    xtal_core::featurize::ElementTable::from_atom_init_json(&text, &p.display().to_string())
        .map_err(|e| crate::exit::BadInput(format!("{}: {e}", p.display())).into())
}
