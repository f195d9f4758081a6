//! The T5 encoder (T5 v1.0 with ReLU feed-forward, v1.1 / mT5 with gated GELU): pre-norm
//! layers with RMSNorm, no biases, unscaled attention plus a learned bias per relative
//! position bucket (from the first layer, shared by all).

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

use super::config_keys::ConfigKeys;
use super::{Activation, HfError, attend, merge_heads, split_heads};

/// Our parameter paths → HF tensor names; `a|b` = `a`, or else `b`.
pub const HF_NAMES: &[(&str, &str)] = &[
    (
        "embeddings.weight",
        "shared.weight|encoder.embed_tokens.weight",
    ),
    (
        "relative_bias.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    (
        "layers.{i}.query.weight",
        "encoder.block.{i}.layer.0.SelfAttention.q.weight",
    ),
    (
        "layers.{i}.key.weight",
        "encoder.block.{i}.layer.0.SelfAttention.k.weight",
    ),
    (
        "layers.{i}.value.weight",
        "encoder.block.{i}.layer.0.SelfAttention.v.weight",
    ),
    (
        "layers.{i}.attention_out.weight",
        "encoder.block.{i}.layer.0.SelfAttention.o.weight",
    ),
    (
        "layers.{i}.attention_norm.gamma",
        "encoder.block.{i}.layer.0.layer_norm.weight",
    ),
    (
        "layers.{i}.ff_act.weight",
        "encoder.block.{i}.layer.1.DenseReluDense.wi.weight|encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight",
    ),
    (
        "layers.{i}.ff_linear.weight",
        "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight",
    ),
    (
        "layers.{i}.ff_out.weight",
        "encoder.block.{i}.layer.1.DenseReluDense.wo.weight",
    ),
    (
        "layers.{i}.ff_norm.gamma",
        "encoder.block.{i}.layer.1.layer_norm.weight",
    ),
    ("final_norm.gamma", "encoder.final_layer_norm.weight"),
];

#[derive(Config, Debug)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    pub activation: Activation,
    /// Gated feed-forward (`gated-gelu`, T5 v1.1): `act(x W₀) ⊙ (x W₁)`.
    pub gated: bool,
    pub pad_token_id: usize,
}

impl T5Config {
    pub(super) fn from_keys(keys: &ConfigKeys) -> Result<Self, HfError> {
        let proj = keys.string("feed_forward_proj", "relu")?;
        let (gated, act) = match proj.strip_prefix("gated-") {
            Some(act) => (true, act.to_string()),
            None => (false, proj.clone()),
        };
        // transformers maps "gated-gelu" to the tanh approximation.
        let act = if act == "gelu" {
            "gelu_new".into()
        } else {
            act
        };
        let activation = Activation::from_name(&act).ok_or_else(|| {
            keys.error(format!(
                "feed_forward_proj `{proj}`: unknown activation `{act}` (relu, gelu, silu)"
            ))
        })?;
        Ok(T5Config::new(
            keys.usize("vocab_size", None)?,
            keys.usize("d_model", Some(512))?,
            keys.usize("d_kv", Some(64))?,
            keys.usize("d_ff", Some(2048))?,
            keys.usize("num_layers", Some(6))?,
            keys.usize("num_heads", Some(8))?,
            keys.usize("relative_attention_num_buckets", Some(32))?,
            keys.usize("relative_attention_max_distance", Some(128))?,
            keys.f64("layer_norm_epsilon", 1e-6)?,
            activation,
            gated,
            keys.usize("pad_token_id", Some(0))?,
        ))
    }

    /// Trainable values, from the configuration alone (see [`super::HfEncoderConfig::parameter_count`]).
    pub fn parameter_count(&self) -> u64 {
        let (d, inner, ff) = (
            self.d_model as u64,
            (self.num_heads * self.d_kv) as u64,
            self.d_ff as u64,
        );
        let feed_forward = if self.gated { 3 } else { 2 } * d * ff;
        let layer = 4 * d * inner + feed_forward + 2 * d;
        self.vocab_size as u64 * d
            + (self.relative_attention_num_buckets * self.num_heads) as u64
            + self.num_layers as u64 * layer
            + d
    }

    /// `(key, value, least, most)` of every size (see [`super::HfEncoderConfig::check`]).
    pub(super) fn sizes(&self) -> Vec<(&'static str, usize, usize, usize)> {
        vec![
            ("vocab_size", self.vocab_size, 1, super::MAX_VOCAB),
            ("d_model", self.d_model, 1, super::MAX_WIDTH),
            ("d_kv", self.d_kv, 1, super::MAX_WIDTH),
            ("d_ff", self.d_ff, 1, 4 * super::MAX_WIDTH),
            ("num_layers", self.num_layers, 1, super::MAX_LAYERS),
            ("num_heads", self.num_heads, 1, 256),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
                2,
                4096,
            ),
            (
                "relative_attention_max_distance",
                self.relative_attention_max_distance,
                1,
                super::MAX_POSITIONS,
            ),
            (
                "pad_token_id",
                self.pad_token_id,
                0,
                self.vocab_size.saturating_sub(1),
            ),
        ]
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> T5Encoder<B> {
        let (d, inner) = (self.d_model, self.num_heads * self.d_kv);
        let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = || {
            RmsNormConfig::new(d)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        T5Encoder {
            embeddings: EmbeddingConfig::new(self.vocab_size, d).init(device),
            relative_bias: EmbeddingConfig::new(
                self.relative_attention_num_buckets,
                self.num_heads,
            )
            .init(device),
            layers: (0..self.num_layers)
                .map(|_| T5Layer {
                    query: linear(d, inner),
                    key: linear(d, inner),
                    value: linear(d, inner),
                    attention_out: linear(inner, d),
                    attention_norm: norm(),
                    ff_act: linear(d, self.d_ff),
                    ff_linear: self.gated.then(|| linear(d, self.d_ff)),
                    ff_out: linear(self.d_ff, d),
                    ff_norm: norm(),
                })
                .collect(),
            final_norm: norm(),
            heads: self.num_heads,
            buckets: self.relative_attention_num_buckets,
            max_distance: self.relative_attention_max_distance,
            activation: self.activation,
        }
    }
}

#[derive(Module, Debug)]
pub struct T5Layer<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attention_out: Linear<B>,
    attention_norm: RmsNorm<B>,
    ff_act: Linear<B>,
    ff_linear: Option<Linear<B>>,
    ff_out: Linear<B>,
    ff_norm: RmsNorm<B>,
}

#[derive(Module, Debug)]
pub struct T5Encoder<B: Backend> {
    embeddings: Embedding<B>,
    relative_bias: Embedding<B>,
    layers: Vec<T5Layer<B>>,
    final_norm: RmsNorm<B>,
    heads: usize,
    buckets: usize,
    max_distance: usize,
    #[module(skip)]
    activation: Activation,
}

impl<B: Backend> T5Encoder<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let [_, len] = ids.dims();
        let device = ids.device();
        let buckets: Vec<i64> = (0..len)
            .flat_map(|q| (0..len).map(move |k| k as i64 - q as i64))
            .map(|r| relative_bucket(r, self.buckets, self.max_distance))
            .collect();
        let buckets = Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [len, len]), &device);
        // [len, len, heads] → [1, heads, len, len]
        let bias = self
            .relative_bias
            .forward(buckets)
            .permute([2, 0, 1])
            .unsqueeze_dim::<4>(0);
        let mut x = self.embeddings.forward(ids);
        for layer in &self.layers {
            let h = layer.attention_norm.forward(x.clone());
            let q = split_heads(layer.query.forward(h.clone()), self.heads);
            let k = split_heads(layer.key.forward(h.clone()), self.heads);
            let v = split_heads(layer.value.forward(h), self.heads);
            let scores = q.matmul(k.swap_dims(2, 3)) + bias.clone();
            x = x + layer
                .attention_out
                .forward(merge_heads(attend(scores, &pad, v)));
            let h = layer.ff_norm.forward(x.clone());
            let mut f = self.activation.forward(layer.ff_act.forward(h.clone()));
            if let Some(linear) = &layer.ff_linear {
                f = f * linear.forward(h);
            }
            x = x + layer.ff_out.forward(f);
        }
        self.final_norm.forward(x)
    }
}

/// T5's bidirectional bucket of `key − query`: half the buckets per direction, exact up to
/// a quarter of them, logarithmic beyond, saturating at `max_distance`. Computed in f32 as
/// transformers does, so boundary cases round the same.
pub fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> i64 {
    let half = (buckets / 2) as i64;
    let offset = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let max_exact = half / 2;
    if distance < max_exact {
        return offset + distance;
    }
    let scale = ((max_distance as f64 / max_exact as f64).ln()) as f32;
    let large = max_exact
        + ((distance as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32) as i64;
    offset + large.min(half - 1)
}
