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

impl PropertyModelConfig {
    /// Values in the model's parameters, from the configuration alone (a bundle reader
    /// checks the weights against it before building anything).
    pub fn parameter_count(&self) -> u64 {
        let (e, h) = (self.encoder.output_dim as u64, self.head_hidden as u64);
        self.encoder.parameter_count() + e * h + h + h + 1
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;
    use crate::device::NdArray;
    use crate::featurize::GraphConfig;
    use crate::models::structure::{GraphBackbone, Readout};

    #[test]
    fn parameter_count_is_the_built_module() {
        for (backbone, readout) in [
            (GraphBackbone::Cgcnn, Readout::Mean),
            (GraphBackbone::Painn, Readout::Attention),
        ] {
            let config = PropertyModelConfig::new(
                StructureEncoderConfig::new(backbone, GraphConfig::default())
                    .with_hidden(8)
                    .with_layers(2)
                    .with_readout(readout)
                    .with_output_dim(6),
            )
            .with_head_hidden(5);
            let model = config.init::<NdArray>(&Default::default());
            assert_eq!(config.parameter_count(), model.num_params() as u64);
        }
    }
}
