//! Scalar property regression on a structure encoder: crystal graph → encoder → MLP → one
//! value (in standardised target units; the trainer keeps the scaling).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::structure::{StructureEncoder, StructureEncoderConfig};
use crate::featurize::GraphTensors;

#[derive(Config, Debug)]
pub struct PropertyModelConfig {
    pub encoder: StructureEncoderConfig,
    #[config(default = 64)]
    pub head_hidden: usize,
}

#[derive(Module, Debug)]
pub struct PropertyModel<B: Backend> {
    pub encoder: StructureEncoder<B>,
    hidden: Linear<B>,
    output: Linear<B>,
}

impl PropertyModelConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> PropertyModel<B> {
        PropertyModel {
            encoder: self.encoder.init(device),
            hidden: LinearConfig::new(self.encoder.output_dim, self.head_hidden).init(device),
            output: LinearConfig::new(self.head_hidden, 1).init(device),
        }
    }
}

impl<B: Backend> PropertyModel<B> {
    /// Standardised predictions `[graphs]`.
    pub fn forward(&self, graph: &GraphTensors<B>) -> Tensor<B, 1> {
        let x = self.encoder.forward(graph);
        self.output
            .forward(silu(self.hidden.forward(x)))
            .squeeze_dim::<1>(1)
    }
}
