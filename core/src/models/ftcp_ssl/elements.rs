//! Block 1 — the element matrix (rows 0–102 × the element columns) → 256.
//!
//! Each element column (one-hot over Z) becomes a token through a 1-D CNN along Z, so that
//! neighbours in the periodic table share filters; self-attention mixes the tokens of one
//! material. Pretext: masked element modelling — one element column of a material with two or
//! more elements is removed from the input and its element predicted from the others.
//!
//! The features read the pooled column states *beside* the pooled element tokens, and the
//! masked element is scored by cosine against every element's token. With the states alone and
//! a free output layer, pretraining collapsed the features to a few directions (effective rank
//! 3.8 against 15.2 at initialisation) and lost the element identity a heat of formation needs;
//! scoring against unit-length tokens keeps the element tokens spread apart.

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{
    FtcpSample, bools2, float2, float3, hide, ints1, mask_embedding, masked_mean,
    weighted_cross_entropy,
};
use crate::data::SeededRng;
use crate::featurize::FtcpPart;
use crate::models::clip::l2_normalize;
use crate::structure::elements::NUM_ELEMENTS;

const CHANNELS: usize = 8;
/// Temperature of the cosine scores of the masked element.
const TEMPERATURE: f64 = 0.1;

pub struct ElementsBatch<B: Backend> {
    /// `[b, columns, 103]`, the masked column zeroed.
    pub columns: Tensor<B, 3>,
    /// `[b, columns]`: 1 where the column is hidden.
    pub masked: Tensor<B, 2>,
    /// `[b, columns]`: true for an empty column (attention ignores it).
    pub padding: Tensor<B, 2, Bool>,
    /// `[b, columns]`: 1 for a column holding an element (hidden or not).
    pub present: Tensor<B, 2>,
    /// `[b]`: the hidden element's index (Z − 1), and whether there is one.
    pub target: Tensor<B, 1, Int>,
    pub has_target: Tensor<B, 1>,
}

impl<B: Backend> ElementsBatch<B> {
    pub fn build(
        samples: &[FtcpSample],
        mut rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        let n = samples.len();
        let e = samples.first().map_or(4, |s| s.layout.element_columns());
        let mut columns = vec![0f32; n * e * NUM_ELEMENTS];
        let (mut masked, mut present) = (vec![0f32; n * e], vec![0f32; n * e]);
        let mut padding = vec![true; n * e];
        let (mut target, mut has_target) = (vec![0i64; n], vec![0f32; n]);
        for (b, s) in samples.iter().enumerate() {
            let raw = s
                .layout
                .region(FtcpPart::Elements)
                .extract(s.raw, s.layout.cols());
            let scaled = s.scaled(FtcpPart::Elements);
            // Column c holds element z when raw[z][c] is set.
            let element = |c: usize| (0..NUM_ELEMENTS).find(|&z| raw[z * e + c] > 0.5);
            let held: Vec<usize> = (0..e).filter(|&c| element(c).is_some()).collect();
            let hidden = match rng.as_deref_mut() {
                Some(r) if held.len() >= 2 => Some(held[r.below(held.len())]),
                _ => None,
            };
            for &c in &held {
                present[b * e + c] = 1.0;
                padding[b * e + c] = false;
                if Some(c) == hidden {
                    masked[b * e + c] = 1.0;
                    target[b] = element(c).unwrap_or(0) as i64;
                    has_target[b] = 1.0;
                    continue;
                }
                for z in 0..NUM_ELEMENTS {
                    columns[(b * e + c) * NUM_ELEMENTS + z] = scaled[z * e + c];
                }
            }
            if held.is_empty() {
                padding[b * e] = false; // attention over nothing is undefined
            }
        }
        Self {
            columns: float3(columns, [n, e, NUM_ELEMENTS], device),
            masked: float2(masked, [n, e], device),
            padding: bools2(padding, [n, e], device),
            present: float2(present, [n, e], device),
            target: ints1(target, device),
            has_target: Tensor::from_data(TensorData::new(has_target, [n]), device),
        }
    }
}

#[derive(Config, Debug)]
pub struct ElementsEncoderConfig {
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub output_dim: usize,
}

#[derive(Module, Debug)]
pub struct ElementsEncoder<B: Backend> {
    conv: Conv1d<B>,
    token: Linear<B>,
    mask_embedding: Param<Tensor<B, 1>>,
    attention: TransformerEncoder<B>,
    output: Linear<B>,
    element_head: Linear<B>,
}

impl ElementsEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ElementsEncoder<B> {
        let w = self.width;
        ElementsEncoder {
            conv: Conv1dConfig::new(1, CHANNELS, 5)
                .with_padding(PaddingConfig1d::Explicit(2, 2))
                .init(device),
            token: LinearConfig::new(CHANNELS * NUM_ELEMENTS, w).init(device),
            mask_embedding: mask_embedding(w, device),
            attention: TransformerEncoderConfig::new(w, 2 * w, self.heads, self.layers)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            output: LinearConfig::new(2 * w, self.output_dim).init(device),
            element_head: LinearConfig::new(w + self.output_dim, w).init(device),
        }
    }
}

impl<B: Backend> ElementsEncoder<B> {
    /// Features `[b, output_dim]` and the column states `[b, columns, width]`.
    pub fn forward(&self, batch: &ElementsBatch<B>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let tokens = hide(
            self.tokens(batch.columns.clone()),
            batch.masked.clone(),
            &self.mask_embedding,
        );
        let states = self
            .attention
            .forward(TransformerEncoderInput::new(tokens.clone()).mask_pad(batch.padding.clone()));
        let pooled = Tensor::cat(
            vec![
                masked_mean(states.clone(), batch.present.clone()),
                masked_mean(tokens, batch.present.clone()),
            ],
            1,
        );
        (self.output.forward(pooled), states)
    }

    /// Element tokens `[b, columns, width]` of one-hot columns `[b, columns, 103]`.
    fn tokens(&self, columns: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, e, z] = columns.dims();
        let conv = relu(self.conv.forward(columns.reshape([b * e, 1, z])));
        self.token.forward(conv.reshape([b, e, CHANNELS * z]))
    }

    pub fn pretext(&self, batch: &ElementsBatch<B>) -> Vec<(&'static str, Tensor<B, 1>)> {
        let (features, states) = self.forward(batch);
        let hidden = (states * batch.masked.clone().unsqueeze_dim::<3>(2))
            .sum_dim(1)
            .squeeze_dim::<2>(1);
        let query = l2_normalize(
            self.element_head
                .forward(Tensor::cat(vec![hidden, features], 1)),
        );
        // Every element's token, from its one-hot column.
        let device = query.device();
        let one_hots = Tensor::<B, 2>::eye(NUM_ELEMENTS, &device).unsqueeze_dim::<3>(0);
        let elements = l2_normalize(self.tokens(one_hots).squeeze_dim::<2>(0));
        let logits = query.matmul(elements.transpose()) / TEMPERATURE;
        vec![(
            "masked_element",
            weighted_cross_entropy(logits, batch.target.clone(), batch.has_target.clone()),
        )]
    }
}
