//! Model families, one file each: [`clip`] (structure–text CLIP) and [`tensor_head`]
//! (property-tensor regression over frozen CLIP embeddings).

pub mod clip;
pub mod tensor_head;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Linear layers `dims[0] → dims[1] → … → dims[n]` (the activations are the caller's).
pub(crate) fn linear_stack<B: Backend>(dims: &[usize], device: &B::Device) -> Vec<Linear<B>> {
    dims.windows(2)
        .map(|w| LinearConfig::new(w[0], w[1]).init(device))
        .collect()
}
