//! The six trained blocks as one model: what an SSL bundle stores and runs, FTCP tensor in,
//! 2048-D features out (each block's features in [`BlockKind::ALL`] order, as `xtal ssl
//! extract` writes them).

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{BlockKind, SslBlock, SslBlockConfig};

/// The CPU backend the parameters are counted on (nothing is allocated but a few small
/// eagerly made tensors).
#[cfg(feature = "ndarray")]
type CountOn = crate::device::NdArray;
#[cfg(all(feature = "flex", not(feature = "ndarray")))]
type CountOn = crate::device::Flex;
#[cfg(not(any(feature = "ndarray", feature = "flex")))]
compile_error!("xtal-core needs a CPU backend (feature `ndarray` or `flex`) to check SSL bundles");

#[derive(Module, Debug)]
pub struct SslEncoder<B: Backend> {
    /// One per block, in [`BlockKind::ALL`] order.
    pub blocks: Vec<SslBlock<B>>,
}

/// The blocks' settings, one per block in [`BlockKind::ALL`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslEncoderConfig {
    pub blocks: Vec<SslBlockConfig>,
}

impl SslEncoderConfig {
    /// Every block once, in feature order, each within its bounds, all reading the same
    /// number of element columns.
    pub fn check(&self) -> Result<(), String> {
        let kinds: Vec<BlockKind> = self.blocks.iter().map(|b| b.kind).collect();
        if kinds != BlockKind::ALL {
            return Err(format!(
                "blocks must be the six blocks in order ({}), found {:?}",
                BlockKind::ALL.map(BlockKind::name).join(", "),
                kinds.iter().map(|k| k.name()).collect::<Vec<_>>()
            ));
        }
        for b in &self.blocks {
            b.check()
                .map_err(|m| format!("block {} ({}): {m}", b.kind.number(), b.kind.name()))?;
        }
        if self
            .blocks
            .iter()
            .any(|b| b.element_columns != self.blocks[0].element_columns)
        {
            return Err("blocks read different numbers of element columns".into());
        }
        Ok(())
    }

    /// Element columns of the FTCP layout the blocks read.
    pub fn element_columns(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.element_columns)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> SslEncoder<B> {
        SslEncoder {
            blocks: self.blocks.iter().map(|b| b.init(device)).collect(),
        }
    }

    /// Parameters of the blocks, counted from their shapes: burn initialises parameters
    /// lazily, so a (checked) configuration is counted without allocating its weights.
    pub fn parameter_count(&self) -> u64 {
        struct Count(u64);
        impl<B: Backend> ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0 += param.lazy_shape().num_elements() as u64;
            }
        }
        let mut count = Count(0);
        self.init::<CountOn>(&Default::default()).visit(&mut count);
        count.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NdArray;

    #[test]
    fn parameter_count_is_the_built_module() {
        let config = SslEncoderConfig {
            blocks: BlockKind::ALL
                .map(|k| SslBlockConfig::new(k).with_width(16).with_layers(1))
                .to_vec(),
        };
        config.check().unwrap();
        let built = config.init::<NdArray>(&Default::default()).num_params() as u64;
        assert_eq!(config.parameter_count(), built);
        assert!(built > 0);
    }

    #[test]
    fn blocks_out_of_order_are_refused() {
        let mut blocks = BlockKind::ALL.map(SslBlockConfig::new).to_vec();
        blocks.swap(0, 1);
        let err = SslEncoderConfig { blocks }.check().unwrap_err();
        assert!(err.contains("in order"), "{err}");
        let blocks = BlockKind::ALL[..5].iter().map(|k| SslBlockConfig::new(*k));
        assert!(
            SslEncoderConfig {
                blocks: blocks.collect()
            }
            .check()
            .is_err()
        );
    }
}
