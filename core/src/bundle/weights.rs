//! Model weights as safetensors (readable by `safetensors` in Python, PyTorch, candle, …),
//! through burn-store; names are burn's module paths (`text.encoder.layers.0.mha.query.weight`).
//! Linear weights are stored `[in, out]`, burn's layout.
//!
//! Storage is f32, f16 or int8 ([`Precision`]); in memory the weights are f32 whatever the
//! storage. An int8 file keeps every linear and embedding matrix as `I8` with a companion
//! `F32` tensor `<name>_scale` of one scale per output channel (`[1, out]` for a linear
//! weight) or per row (`[n, 1]` for an embedding table), broadcast against the matrix:
//! value = int8 × scale (symmetric, scale = max |w| / 127 of its channel, as ONNX Runtime's
//! per-channel dynamic quantisation stores weights). Everything else is f16.

use std::collections::HashMap;
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleAdapter, ModuleSnapshot, SafetensorsStore, TensorSnapshot};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::BundleError;
use crate::models::hf::float_values;

/// How a bundle stores its weights (the manifest's `weights_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
    /// Linear and embedding matrices int8 with per-channel scales, the rest f16.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Precision::F32, Precision::F16, Precision::Int8]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// The dtype an index (unit embeddings, no matrices to quantise) is stored in.
    pub fn index_half(self) -> bool {
        self != Precision::F32
    }
}

/// Suffix of an int8 tensor's scales.
pub const SCALE_SUFFIX: &str = "_scale";

/// Matrices smaller than this stay f16 in an int8 file: their scales would cost more than
/// the int8 saves, and tiny layers are the ones quantisation hurts.
const MIN_QUANTISED: usize = 1024;

/// A parameter as the file declares it. An int8 parameter's scales (`<name>_scale`) are folded
/// into it: `dtype` "i8" with `scale` the scales' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub scale: Option<Vec<usize>>,
}

/// The model's parameters as safetensors bytes in `precision`.
pub fn to_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    precision: Precision,
) -> Result<Vec<u8>, BundleError> {
    // Enum variants (`TextEncoder::Bytes`) are not part of the names.
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .skip_enum_variants(true);
    if precision == Precision::F16 {
        // Every float parameter, the temperature included (it has no module type).
        store = store.with_to_adapter(AllFloats(DType::F16));
    }
    model
        .save_into(&mut store)
        .map_err(|e| BundleError::Write(e.to_string()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| BundleError::Write(e.to_string()))?;
    if precision != Precision::Int8 {
        return Ok(bytes);
    }
    // Which matrices are quantised, and along which axis their channels run.
    let matrices: HashMap<String, Channel> = model
        .collect(None, None, true)
        .iter()
        .filter(|s| s.shape.len() == 2 && s.shape.iter().product::<usize>() >= MIN_QUANTISED)
        .filter_map(|s| {
            let channel = match s.container_type().as_str() {
                "Struct:Linear" => Channel::Column,
                "Struct:Embedding" => Channel::Row,
                _ => return None,
            };
            Some((s.full_path(), channel))
        })
        .collect();
    quantise(&bytes, &matrices)
}

/// Where a quantised matrix's channels run: linear weights `[in, out]` have one scale per
/// output column, embedding tables one per row (token).
#[derive(Debug, Clone, Copy)]
enum Channel {
    Column,
    Row,
}

/// An f32 safetensors file with `matrices` as int8 + scales and every other tensor as f16.
fn quantise(bytes: &[u8], matrices: &HashMap<String, Channel>) -> Result<Vec<u8>, BundleError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| BundleError::Write(e.to_string()))?;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let (Dtype::F32, Some(values)) = (view.dtype(), float_values(&view)) else {
            // Not a float parameter: as saved.
            out.push((name, view.dtype(), shape, view.data().to_vec()));
            continue;
        };
        let Some(&channel) = matrices.get(&name) else {
            let half = values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            out.push((name, Dtype::F16, shape, half));
            continue;
        };
        let (rows, cols) = (shape[0], shape[1]);
        let (scale_shape, channel_of): (Vec<usize>, Box<dyn Fn(usize) -> usize>) = match channel {
            Channel::Column => (vec![1, cols], Box::new(move |i| i % cols)),
            Channel::Row => (vec![rows, 1], Box::new(move |i| i / cols)),
        };
        let mut max = vec![0f32; scale_shape.iter().product()];
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(BundleError::Write(format!("{name} holds {v}")));
            }
            let c = channel_of(i);
            max[c] = max[c].max(v.abs());
        }
        let scales: Vec<f32> = max.iter().map(|m| m / 127.0).collect();
        let q: Vec<u8> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = scales[channel_of(i)];
                let q = if s > 0.0 { (v / s).round() } else { 0.0 };
                (q.clamp(-127.0, 127.0) as i8) as u8
            })
            .collect();
        let scale_bytes = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        out.push((
            format!("{name}{SCALE_SUFFIX}"),
            Dtype::F32,
            scale_shape,
            scale_bytes,
        ));
        out.push((name, Dtype::I8, shape, q));
    }
    serialize(&out)
}

fn serialize(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| BundleError::Write(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| BundleError::Write(e.to_string()))
}

/// The header of a safetensors file: names, dtypes and shapes, checked for consistency by
/// the safetensors crate (offsets inside the buffer, sizes matching shapes).
pub fn read_header(bytes: &[u8], entry: &str) -> Result<Vec<StoredTensor>, BundleError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| BundleError::Entry {
        name: entry.into(),
        reason: format!("not a valid safetensors file ({e})"),
    })?;
    let bad = |reason: String| BundleError::Entry {
        name: entry.into(),
        reason,
    };
    let mut all: HashMap<String, StoredTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = StoredTensor {
                name: name.clone(),
                dtype: format!("{:?}", view.dtype()).to_lowercase(),
                shape: view.shape().to_vec(),
                scale: None,
            };
            (name, t)
        })
        .collect();
    // Fold each int8 tensor's scales into it; a `_scale` tensor without an int8 partner is
    // an ordinary tensor (and is then judged against the configuration like any other).
    let int8: Vec<String> = all
        .values()
        .filter(|t| t.dtype == "i8")
        .map(|t| t.name.clone())
        .collect();
    for name in int8 {
        let scale_name = format!("{name}{SCALE_SUFFIX}");
        let scale = all
            .remove(&scale_name)
            .ok_or_else(|| bad(format!("{name} is int8 without its scales {scale_name}")))?;
        let t = &all[&name];
        let broadcasts = scale.shape.len() == t.shape.len()
            && scale
                .shape
                .iter()
                .zip(&t.shape)
                .all(|(s, d)| *s == 1 || s == d);
        if scale.dtype != "f32" || !broadcasts {
            return Err(bad(format!(
                "{scale_name} is {} {:?}; the scales of {name} {:?} must be f32 with each dimension 1 or the tensor's",
                scale.dtype, scale.shape, t.shape
            )));
        }
        if let Some(t) = all.get_mut(&name) {
            t.scale = Some(scale.shape);
        }
    }
    let mut out: Vec<StoredTensor> = all.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// An int8 file's tensors made f32 again (value = int8 × its channel's scale), every other
/// tensor as stored; refuses scales that are not finite and non-negative.
fn dequantise(bytes: &[u8], stored: &[StoredTensor], entry: &str) -> Result<Vec<u8>, BundleError> {
    let bad = |reason: String| BundleError::Entry {
        name: entry.into(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(stored.len());
    for t in stored {
        let view = st.tensor(&t.name).map_err(|e| bad(e.to_string()))?;
        let Some(scale_shape) = &t.scale else {
            out.push((
                t.name.clone(),
                view.dtype(),
                t.shape.clone(),
                view.data().to_vec(),
            ));
            continue;
        };
        let scale_name = format!("{}{SCALE_SUFFIX}", t.name);
        let scales = st
            .tensor(&scale_name)
            .ok()
            .and_then(|v| float_values(&v))
            .ok_or_else(|| bad(format!("{scale_name}: not a float tensor")))?;
        if let Some(s) = scales.iter().find(|s| !s.is_finite() || **s < 0.0) {
            return Err(bad(format!(
                "{scale_name} holds {s}; scales must be finite and ≥ 0"
            )));
        }
        // Each element's scale: its index with the broadcast dimensions dropped.
        let rank = t.shape.len();
        let mut scale_stride = vec![0usize; rank];
        let mut step = 1;
        for d in (0..rank).rev() {
            if scale_shape[d] != 1 {
                scale_stride[d] = step;
                step *= scale_shape[d];
            }
        }
        let mut index = vec![0usize; rank];
        let mut values = Vec::with_capacity(view.data().len() * 4);
        for &q in view.data() {
            let s: usize = index.iter().zip(&scale_stride).map(|(i, st)| i * st).sum();
            values.extend_from_slice(&(f32::from(q as i8) * scales[s]).to_le_bytes());
            for d in (0..rank).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        out.push((t.name.clone(), Dtype::F32, t.shape.clone(), values));
    }
    serialize(&out).map_err(|e| bad(e.to_string()))
}

/// Loads `bytes` into `model` (built from the bundle's configuration) after checking that
/// the file holds exactly the model's tensors, with its shapes, as f32, f16 or int8. `stored`
/// is the file's header as [`read_header`] returned it.
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
        if !matches!(t.dtype.as_str(), "f32" | "f16" | "i8") {
            problems.push(format!("{} is {}, not f32, f16 or int8", t.name, t.dtype));
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
    let bytes = if stored.iter().any(|t| t.scale.is_some()) {
        dequantise(bytes, stored, entry)?
    } else {
        bytes.to_vec()
    };
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
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
