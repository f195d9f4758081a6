//! From per-token states to one vector per text, with padding excluded whichever side it is on.

use burn::prelude::*;

use crate::models::masked_mean;

/// How a sequence of token states becomes one vector.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Pooling {
    /// Mean over real tokens (sentence-transformers' default).
    Mean,
    /// The first token (`[CLS]`, `<s>`).
    First,
    /// The last real token, found from the mask, so left- and right-padded batches agree.
    Last,
    /// Element-wise maximum over real tokens.
    Max,
}

impl std::str::FromStr for Pooling {
    type Err = String;

    /// A pooling by name, or an error listing the names (for the CLI and configurations).
    fn from_str(name: &str) -> Result<Self, String> {
        Self::from_name(name)
            .ok_or_else(|| format!("unknown pooling `{name}`, expected one of {}", Self::NAMES))
    }
}

impl Pooling {
    pub const NAMES: &'static str = "mean, first (or cls), last, max";

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "mean" => Pooling::Mean,
            "first" | "cls" => Pooling::First,
            "last" => Pooling::Last,
            "max" => Pooling::Max,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::First => "first",
            Pooling::Last => "last",
            Pooling::Max => "max",
        }
    }

    /// `x [batch, len, d]`, `pad [batch, len]` (true = padding) → `[batch, d]`.
    pub fn forward<B: Backend>(&self, x: Tensor<B, 3>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
        let [batch, len, d] = x.dims();
        match self {
            Pooling::Mean => masked_mean(x, pad),
            Pooling::First => x.slice([0..batch, 0..1, 0..d]).squeeze_dim::<2>(1),
            Pooling::Last => {
                let positions = Tensor::<B, 1, Int>::arange(0..len as i64, &x.device())
                    .unsqueeze_dim::<2>(0)
                    .expand([batch, len]);
                let last = positions.mask_fill(pad, -1).max_dim(1); // [batch, 1]
                let index = last.unsqueeze_dim::<3>(2).expand([batch, 1, d]);
                x.gather(1, index).squeeze_dim::<2>(1)
            }
            Pooling::Max => {
                let pad = pad.unsqueeze_dim::<3>(2).expand([batch, len, d]);
                x.mask_fill(pad, f32::MIN).max_dim(1).squeeze_dim::<2>(1)
            }
        }
    }
}
