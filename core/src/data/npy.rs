//! `.npy` arrays from bytes (float32 or float64; anything else is an error naming the dtype).

use npyz::{DType, NpyFile, TypeChar};

#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Decodes a float array; float64 is narrowed to float32 as the models compute in f32.
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    let npy = NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let data = match &dtype {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 4 => npy
            .into_vec::<f32>()
            .map_err(|e| format!("cannot read float32 data: {e}"))?,
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 8 => npy
            .into_vec::<f64>()
            .map_err(|e| format!("cannot read float64 data: {e}"))?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        other => return Err(format!("dtype {} is not float32 or float64", other.descr())),
    };
    Ok(NpyArray { shape, data })
}
