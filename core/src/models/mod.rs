//! Model families, one file each: [`clip`] (structure–text CLIP), [`hf`] (pretrained
//! HuggingFace text encoders, one file per architecture) and [`tensor_head`] (property-tensor
//! regression over frozen CLIP embeddings), [`structure`] (graph networks over crystal
//! structures, one file per backbone) and [`property`] (scalar property regression on them).

pub mod clip;
pub mod ftcp_ssl;
pub mod hf;
pub mod property;
pub mod structure;
pub mod tensor_head;
pub mod tokens;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Mean over the positions that are not padding: `[batch, len, d]` → `[batch, d]` (text
/// pooling, graph readout).
pub fn masked_mean<B: Backend>(x: Tensor<B, 3>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
    let keep = pad.bool_not().float().unsqueeze_dim::<3>(2); // [batch, len, 1]
    let summed = (x * keep.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let count = keep.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1.0);
    summed / count
}

/// Linear layers `input → hidden… → output` (the activations are the caller's).
pub(crate) fn linear_stack<B: Backend>(
    input: usize,
    hidden: &[usize],
    output: usize,
    device: &B::Device,
) -> Vec<Linear<B>> {
    let mut dims = vec![input];
    dims.extend(hidden);
    dims.push(output);
    dims.windows(2)
        .map(|w| LinearConfig::new(w[0], w[1]).init(device))
        .collect()
}

/// Values in the weights and biases of [`linear_stack`]`(input, hidden, output)`.
pub(crate) fn linear_stack_parameters(input: usize, hidden: &[usize], output: usize) -> u64 {
    let mut dims = vec![input];
    dims.extend(hidden);
    dims.push(output);
    dims.windows(2)
        .map(|w| (w[0] as u64 + 1) * w[1] as u64)
        .sum()
}
