//! The optional bottleneck: an MLP autoencoder `2048 → hidden → K → hidden → 2048` trained to
//! reconstruct the (standardised) concatenated block features; its K-wide code is the
//! compressed feature.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

#[derive(Config, Debug)]
pub struct BottleneckConfig {
    #[config(default = 2048)]
    pub input_dim: usize,
    #[config(default = 1024)]
    pub hidden: usize,
    pub dim: usize,
}

#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    encode_hidden: Linear<B>,
    encode: Linear<B>,
    decode_hidden: Linear<B>,
    decode: Linear<B>,
}

impl BottleneckConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Bottleneck<B> {
        Bottleneck {
            encode_hidden: LinearConfig::new(self.input_dim, self.hidden).init(device),
            encode: LinearConfig::new(self.hidden, self.dim).init(device),
            decode_hidden: LinearConfig::new(self.dim, self.hidden).init(device),
            decode: LinearConfig::new(self.hidden, self.input_dim).init(device),
        }
    }
}

impl<B: Backend> Bottleneck<B> {
    /// The code `[b, dim]` of features `[b, input_dim]`.
    pub fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.encode.forward(gelu(self.encode_hidden.forward(x)))
    }

    /// Mean squared reconstruction error of `x`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let code = self.encode(x.clone());
        let back = self.decode.forward(gelu(self.decode_hidden.forward(code)));
        (back - x).powi_scalar(2).mean()
    }
}
