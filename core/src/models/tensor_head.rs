//! Tensor-regression heads (the CLIP family's extension): an MLP from a frozen CLIP embedding
//! of either modality to components of a 3×3 property tensor, such as an elastic tensor.

use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Which components of the row-major 3×3 tensor are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorMode {
    /// All nine components.
    #[serde(rename = "full")]
    Full,
    /// c11, c12, c22, c33.
    #[serde(rename = "2d")]
    TwoD,
    /// The 2-D elastic tensor in Voigt order: C11, C22, C12, C66, C16, C26.
    #[serde(rename = "voigt2d")]
    Voigt2d,
}

impl TensorMode {
    pub const NAMES: [&'static str; 3] = ["full", "2d", "voigt2d"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "full" => Some(Self::Full),
            "2d" => Some(Self::TwoD),
            "voigt2d" => Some(Self::Voigt2d),
            _ => None,
        }
    }

    /// The configuration's name of the mode (`full`, `2d`, `voigt2d`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::TwoD => "2d",
            Self::Voigt2d => "voigt2d",
        }
    }

    /// Row-major positions (0 … 8) of the predicted components.
    pub fn indices(self) -> &'static [usize] {
        match self {
            Self::Full => &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            Self::TwoD => &[0, 1, 4, 8],
            Self::Voigt2d => &[0, 4, 1, 8, 2, 5],
        }
    }

    pub fn component_names(self) -> &'static [&'static str] {
        match self {
            Self::Full => &[
                "T11", "T12", "T13", "T21", "T22", "T23", "T31", "T32", "T33",
            ],
            Self::TwoD => &["c11", "c12", "c22", "c33"],
            Self::Voigt2d => &["C11", "C22", "C12", "C66", "C16", "C26"],
        }
    }

    /// The selected components of a row-major tensor.
    pub fn select(self, tensor: &[f64; 9]) -> Vec<f64> {
        self.indices().iter().map(|&i| tensor[i]).collect()
    }
}

#[derive(Config, Debug)]
pub struct TensorHeadConfig {
    /// Width of the CLIP embedding it reads.
    pub input_dim: usize,
    /// Number of predicted components (`TensorMode::indices().len()`).
    pub output_dim: usize,
    /// Hidden widths; empty = a single linear layer.
    #[config(default = "vec![256, 128]")]
    pub hidden: Vec<usize>,
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// `[Linear → ReLU → Dropout] × hidden → Linear`, as the original's `RegressionHead`.
#[derive(Module, Debug)]
pub struct TensorHead<B: Backend> {
    layers: Vec<Linear<B>>,
    activation: Relu,
    dropout: Dropout,
}

impl TensorHeadConfig {
    /// Values in the head's weights and biases.
    pub fn parameter_count(&self) -> u64 {
        super::linear_stack_parameters(self.input_dim, &self.hidden, self.output_dim)
    }

    /// Bounds that keep a configuration read from a bundle from allocating without limit.
    pub fn check(&self) -> Result<(), String> {
        let in_range = |name: &str, v: usize| {
            if (1..=1 << 16).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is outside 1 … 65536"))
            }
        };
        in_range("input_dim", self.input_dim)?;
        in_range("output_dim", self.output_dim)?;
        if self.hidden.len() > 16 {
            return Err("hidden has more than 16 layers".into());
        }
        for &h in &self.hidden {
            in_range("hidden", h)?;
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("dropout must be in [0, 1)".into());
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> TensorHead<B> {
        TensorHead {
            layers: super::linear_stack(self.input_dim, &self.hidden, self.output_dim, device),
            activation: Relu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl<B: Backend> TensorHead<B> {
    /// `[batch, input_dim]` embeddings → `[batch, output_dim]` (normalised) components.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.dropout.forward(self.activation.forward(x));
            }
        }
        x
    }
}

/// The training loss, each the mean over batch and components (as torch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegressionLoss {
    Mse,
    Mae,
    Huber { delta: f32 },
}

impl RegressionLoss {
    pub fn forward<B: Backend>(self, pred: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 1> {
        match self {
            Self::Mse => MseLoss::new().forward(pred, target, Reduction::Mean),
            Self::Mae => (pred - target).abs().mean(),
            Self::Huber { delta } => {
                HuberLossConfig::new(delta)
                    .init()
                    .forward(pred, target, Reduction::Mean)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NdArray as B;

    #[test]
    fn parameter_count_is_burns() {
        for hidden in [vec![], vec![32], vec![256, 128]] {
            let config = TensorHeadConfig::new(16, 6).with_hidden(hidden);
            let head = config.init::<B>(&Default::default());
            assert_eq!(config.parameter_count(), head.num_params() as u64);
        }
    }
}
