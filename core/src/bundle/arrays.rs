//! Plain named arrays (index embeddings, normalisers, the element table) as safetensors.

use half::f16;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::BundleError;

/// One array to write: values are kept as f64 here and narrowed to `dtype` on write.
pub struct Array {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Array {
    pub fn new(name: &str, dtype: Dtype, shape: Vec<usize>, values: Vec<f64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Self {
            name: name.into(),
            dtype,
            shape,
            values,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self.dtype {
            Dtype::F16 => self
                .values
                .iter()
                .flat_map(|v| f16::from_f64(*v).to_le_bytes())
                .collect(),
            Dtype::F64 => self.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::I64 => self
                .values
                .iter()
                .flat_map(|v| (*v as i64).to_le_bytes())
                .collect(),
            _ => self
                .values
                .iter()
                .flat_map(|v| (*v as f32).to_le_bytes())
                .collect(),
        }
    }
}

pub fn write_arrays(arrays: &[Array]) -> Result<Vec<u8>, BundleError> {
    let bytes: Vec<Vec<u8>> = arrays.iter().map(Array::bytes).collect();
    let views = arrays
        .iter()
        .zip(&bytes)
        .map(|(a, b)| {
            TensorView::new(a.dtype, a.shape.clone(), b)
                .map(|v| (a.name.clone(), v))
                .map_err(|e| BundleError::Write(format!("{}: {e}", a.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| BundleError::Write(e.to_string()))
}

/// A parsed arrays file; reads check names, shapes and that every value is finite.
pub struct Arrays<'a> {
    entry: &'a str,
    file: SafeTensors<'a>,
}

impl<'a> Arrays<'a> {
    pub fn parse(bytes: &'a [u8], entry: &'a str) -> Result<Self, BundleError> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| BundleError::Entry {
            name: entry.into(),
            reason: format!("not a valid safetensors file ({e})"),
        })?;
        Ok(Self { entry, file })
    }

    fn bad(&self, reason: String) -> BundleError {
        BundleError::Entry {
            name: self.entry.into(),
            reason,
        }
    }

    /// `name` as f64 values with its shape, which must match `shape` (`None` = any size there).
    pub fn read(
        &self,
        name: &str,
        shape: &[Option<usize>],
    ) -> Result<(Vec<f64>, Vec<usize>), BundleError> {
        let view = self
            .file
            .tensor(name)
            .map_err(|_| self.bad(format!("array '{name}' is missing")))?;
        let found = view.shape().to_vec();
        if found.len() != shape.len()
            || found
                .iter()
                .zip(shape)
                .any(|(f, s)| s.is_some_and(|s| s != *f))
        {
            return Err(self.bad(format!(
                "array '{name}' has shape {found:?}, expected {}",
                describe(shape)
            )));
        }
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64)
                .collect(),
            other => {
                return Err(self.bad(format!("array '{name}' has unsupported dtype {other:?}")));
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.bad(format!("array '{name}' holds NaN or infinite values")));
        }
        Ok((values, found))
    }
}

fn describe(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("any".into(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}
