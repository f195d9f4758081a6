//! Model weights as safetensors (readable by `safetensors` in Python, PyTorch, candle, …),
//! through burn-store; names are burn's module paths (`text.encoder.layers.0.mha.query.weight`).
//! Linear weights are stored `[in, out]`, burn's layout.

use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleAdapter, ModuleSnapshot, SafetensorsStore, TensorSnapshot};
use safetensors::SafeTensors;

use super::BundleError;

/// A tensor as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The model's parameters as safetensors bytes, f32 or (`half`) f16.
pub fn to_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    half: bool,
) -> Result<Vec<u8>, BundleError> {
    // Enum variants (`TextEncoder::Bytes`) are not part of the names.
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .skip_enum_variants(true);
    if half {
        // Every float parameter, the temperature included (it has no module type).
        store = store.with_to_adapter(AllFloats(DType::F16));
    }
    model
        .save_into(&mut store)
        .map_err(|e| BundleError::Write(e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| BundleError::Write(e.to_string()))
}

/// The header of a safetensors file: names, dtypes and shapes, checked for consistency by
/// the safetensors crate (offsets inside the buffer, sizes matching shapes).
pub fn read_header(bytes: &[u8], entry: &str) -> Result<Vec<StoredTensor>, BundleError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| BundleError::Entry {
        name: entry.into(),
        reason: format!("not a valid safetensors file ({e})"),
    })?;
    let mut out: Vec<StoredTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| StoredTensor {
            name,
            dtype: format!("{:?}", view.dtype()).to_lowercase(),
            shape: view.shape().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Loads `bytes` into `model` (built from the bundle's configuration) after checking that
/// the file holds exactly the model's tensors, with its shapes, as f32 or f16. `stored` is
/// the file's header as [`read_header`] returned it.
pub fn load_into<B: Backend, M: ModuleSnapshot<B>>(
    mut model: M,
    bytes: &[u8],
    stored: &[StoredTensor],
    entry: &str,
) -> Result<M, BundleError> {
    let expected: Vec<(String, Vec<usize>)> = {
        let mut v: Vec<_> = model
            .collect(None, None, true)
            .iter()
            .map(|s| (s.full_path(), s.shape.to_vec()))
            .collect();
        v.sort();
        v
    };
    let mut problems = Vec::new();
    for t in stored {
        if t.dtype != "f32" && t.dtype != "f16" {
            problems.push(format!("{} is {}, not f32 or f16", t.name, t.dtype));
        }
        match expected.iter().find(|(n, _)| n == &t.name) {
            None => problems.push(format!("{} is not a parameter of this model", t.name)),
            Some((_, shape)) if shape != &t.shape => problems.push(format!(
                "{} has shape {:?}, the configuration needs {:?}",
                t.name, t.shape, shape
            )),
            Some(_) => {}
        }
    }
    for (name, _) in &expected {
        if !stored.iter().any(|t| &t.name == name) {
            problems.push(format!("{name} is missing"));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(5);
        return Err(BundleError::Entry {
            name: entry.into(),
            reason: format!(
                "{n} tensor(s) do not match the configuration: {}{}",
                problems.join("; "),
                if n > 5 { "; …" } else { "" }
            ),
        });
    }
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()))
        .skip_enum_variants(true)
        .with_from_adapter(AllFloats(DType::F32))
        .allow_partial(false)
        .validate(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| BundleError::Entry {
            name: entry.into(),
            reason: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(BundleError::Entry {
            name: entry.into(),
            reason: format!(
                "{} tensors could not be applied",
                result.errors.len() + result.missing.len()
            ),
        });
    }
    Ok(model)
}

/// Casts every floating-point tensor to one dtype: f16 when saving a half bundle, f32 when
/// loading (so a bundle can never change the dtype a backend computes in). burn-store's
/// HalfPrecisionAdapter converts known module types only, not the bare temperature.
#[derive(Clone)]
struct AllFloats(DType);

impl ModuleAdapter for AllFloats {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if !matches!(
            snapshot.dtype,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64
        ) || snapshot.dtype == target
        {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
