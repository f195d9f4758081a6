//! DeBERTa-v2 / v3: post-norm BERT-like layers whose attention adds disentangled
//! content→position and position→content terms over log-bucketed relative positions, with
//! relative embeddings shared by all layers (LayerNorm-ed in v3).

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::config_keys::ConfigKeys;
use super::{Activation, HfError, arange_ids, merge_heads, split_heads};

/// Our parameter paths → HF tensor names (without the `deberta.` prefix).
pub const HF_NAMES: &[(&str, &str)] = &[
    (
        "embeddings.words.weight",
        "embeddings.word_embeddings.weight",
    ),
    (
        "embeddings.positions.weight",
        "embeddings.position_embeddings.weight",
    ),
    (
        "embeddings.token_types.weight",
        "embeddings.token_type_embeddings.weight",
    ),
    (
        "embeddings.projection.weight",
        "embeddings.embed_proj.weight",
    ),
    ("embeddings.norm.gamma", "embeddings.LayerNorm.weight"),
    ("embeddings.norm.beta", "embeddings.LayerNorm.bias"),
    (
        "layers.{i}.query.weight",
        "encoder.layer.{i}.attention.self.query_proj.weight",
    ),
    (
        "layers.{i}.query.bias",
        "encoder.layer.{i}.attention.self.query_proj.bias",
    ),
    (
        "layers.{i}.key.weight",
        "encoder.layer.{i}.attention.self.key_proj.weight",
    ),
    (
        "layers.{i}.key.bias",
        "encoder.layer.{i}.attention.self.key_proj.bias",
    ),
    (
        "layers.{i}.value.weight",
        "encoder.layer.{i}.attention.self.value_proj.weight",
    ),
    (
        "layers.{i}.value.bias",
        "encoder.layer.{i}.attention.self.value_proj.bias",
    ),
    (
        "layers.{i}.pos_key.weight",
        "encoder.layer.{i}.attention.self.pos_key_proj.weight",
    ),
    (
        "layers.{i}.pos_key.bias",
        "encoder.layer.{i}.attention.self.pos_key_proj.bias",
    ),
    (
        "layers.{i}.pos_query.weight",
        "encoder.layer.{i}.attention.self.pos_query_proj.weight",
    ),
    (
        "layers.{i}.pos_query.bias",
        "encoder.layer.{i}.attention.self.pos_query_proj.bias",
    ),
    (
        "layers.{i}.attention_out.weight",
        "encoder.layer.{i}.attention.output.dense.weight",
    ),
    (
        "layers.{i}.attention_out.bias",
        "encoder.layer.{i}.attention.output.dense.bias",
    ),
    (
        "layers.{i}.attention_norm.gamma",
        "encoder.layer.{i}.attention.output.LayerNorm.weight",
    ),
    (
        "layers.{i}.attention_norm.beta",
        "encoder.layer.{i}.attention.output.LayerNorm.bias",
    ),
    (
        "layers.{i}.intermediate.weight",
        "encoder.layer.{i}.intermediate.dense.weight",
    ),
    (
        "layers.{i}.intermediate.bias",
        "encoder.layer.{i}.intermediate.dense.bias",
    ),
    (
        "layers.{i}.output.weight",
        "encoder.layer.{i}.output.dense.weight",
    ),
    (
        "layers.{i}.output.bias",
        "encoder.layer.{i}.output.dense.bias",
    ),
    (
        "layers.{i}.output_norm.gamma",
        "encoder.layer.{i}.output.LayerNorm.weight",
    ),
    (
        "layers.{i}.output_norm.beta",
        "encoder.layer.{i}.output.LayerNorm.bias",
    ),
    ("relative.weight", "encoder.rel_embeddings.weight"),
    ("relative_norm.gamma", "encoder.LayerNorm.weight"),
    ("relative_norm.beta", "encoder.LayerNorm.bias"),
];

#[derive(Config, Debug)]
pub struct DebertaV2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    pub embedding_size: usize,
    /// Absolute position embeddings added to the input (v2 base: yes, v3: no).
    pub position_biased_input: bool,
    pub relative_attention: bool,
    /// After defaulting: never below 1 (`max_position_embeddings` when unset).
    pub max_relative_positions: usize,
    /// 0: no log buckets.
    pub position_buckets: usize,
    pub c2p: bool,
    pub p2c: bool,
    pub share_att_key: bool,
    pub norm_relative_embeddings: bool,
}

impl DebertaV2Config {
    pub(super) fn from_keys(keys: &ConfigKeys) -> Result<Self, HfError> {
        if keys.i64("conv_kernel_size", 0)? > 0 {
            return Err(keys.error(
                "conv_kernel_size > 0 (the convolution layer of deberta-v2-xlarge/xxlarge) is not supported"
                    .into(),
            ));
        }
        let hidden = keys.usize("hidden_size", Some(1536))?;
        let max_positions = keys.usize("max_position_embeddings", Some(512))?;
        let max_relative = keys.i64("max_relative_positions", -1)?;
        let attention_types = keys.string_list("pos_att_type")?;
        let norm_rel = keys.string("norm_rel_ebd", "none")?;
        Ok(DebertaV2Config::new(
            keys.usize("vocab_size", None)?,
            hidden,
            keys.usize("num_hidden_layers", Some(24))?,
            keys.usize("num_attention_heads", Some(24))?,
            keys.usize("intermediate_size", Some(6144))?,
            keys.activation("hidden_act", "gelu")?,
            max_positions,
            keys.usize("type_vocab_size", Some(0))?,
            keys.f64("layer_norm_eps", 1e-7)?,
            keys.usize("pad_token_id", Some(0))?,
            keys.usize("embedding_size", Some(hidden))?,
            keys.bool("position_biased_input", true)?,
            keys.bool("relative_attention", false)?,
            if max_relative < 1 {
                max_positions
            } else {
                max_relative as usize
            },
            keys.i64("position_buckets", -1)?.max(0) as usize,
            attention_types.iter().any(|t| t == "c2p"),
            attention_types.iter().any(|t| t == "p2c"),
            keys.bool("share_att_key", false)?,
            norm_rel.split('|').any(|n| n.trim() == "layer_norm"),
        ))
    }

    /// Relative positions each side (the table holds twice as many rows).
    fn attention_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }

    /// Trainable values, from the configuration alone (see [`super::HfEncoderConfig::parameter_count`]).
    pub fn parameter_count(&self) -> u64 {
        let (h, e, i) = (
            self.hidden_size as u64,
            self.embedding_size as u64,
            self.intermediate_size as u64,
        );
        let positions = if self.position_biased_input {
            self.max_position_embeddings as u64
        } else {
            0
        };
        let projection = if e != h { e * h } else { 0 };
        let embeddings = (self.vocab_size as u64 + positions + self.type_vocab_size as u64) * e
            + projection
            + 2 * h;
        let separate = self.relative_attention && !self.share_att_key;
        let position_projections = (separate && self.c2p) as u64 + (separate && self.p2c) as u64;
        let layer = (4 + position_projections) * (h * h + h) + 4 * h + (h * i + i) + (i * h + h);
        let relative = if self.relative_attention {
            2 * self.attention_span() as u64 * h
                + if self.norm_relative_embeddings {
                    2 * h
                } else {
                    0
                }
        } else {
            0
        };
        embeddings + self.num_hidden_layers as u64 * layer + relative
    }

    /// `(key, value, least, most)` of every size (see [`super::HfEncoderConfig::check`]).
    pub(super) fn sizes(&self) -> Vec<(&'static str, usize, usize, usize)> {
        vec![
            ("vocab_size", self.vocab_size, 1, super::MAX_VOCAB),
            ("hidden_size", self.hidden_size, 1, super::MAX_WIDTH),
            ("embedding_size", self.embedding_size, 1, super::MAX_WIDTH),
            (
                "num_hidden_layers",
                self.num_hidden_layers,
                1,
                super::MAX_LAYERS,
            ),
            (
                "num_attention_heads",
                self.num_attention_heads,
                1,
                self.hidden_size,
            ),
            (
                "intermediate_size",
                self.intermediate_size,
                1,
                4 * super::MAX_WIDTH,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1,
                super::MAX_POSITIONS,
            ),
            (
                "max_relative_positions",
                self.max_relative_positions,
                1,
                super::MAX_POSITIONS,
            ),
            (
                "position_buckets",
                self.position_buckets,
                0,
                super::MAX_POSITIONS,
            ),
            ("type_vocab_size", self.type_vocab_size, 0, 1024),
            (
                "pad_token_id",
                self.pad_token_id,
                0,
                self.vocab_size.saturating_sub(1),
            ),
        ]
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> DebertaV2<B> {
        let (h, e) = (self.hidden_size, self.embedding_size);
        let norm = |w| {
            LayerNormConfig::new(w)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let separate = self.relative_attention && !self.share_att_key;
        DebertaV2 {
            embeddings: DebertaEmbeddings {
                words: EmbeddingConfig::new(self.vocab_size, e).init(device),
                positions: self
                    .position_biased_input
                    .then(|| EmbeddingConfig::new(self.max_position_embeddings, e).init(device)),
                token_types: (self.type_vocab_size > 0)
                    .then(|| EmbeddingConfig::new(self.type_vocab_size, e).init(device)),
                projection: (e != h).then(|| LinearConfig::new(e, h).with_bias(false).init(device)),
                norm: norm(h),
            },
            layers: (0..self.num_hidden_layers)
                .map(|_| DebertaLayer {
                    query: linear(h, h),
                    key: linear(h, h),
                    value: linear(h, h),
                    pos_key: (separate && self.c2p).then(|| linear(h, h)),
                    pos_query: (separate && self.p2c).then(|| linear(h, h)),
                    attention_out: linear(h, h),
                    attention_norm: norm(h),
                    intermediate: linear(h, self.intermediate_size),
                    output: linear(self.intermediate_size, h),
                    output_norm: norm(h),
                })
                .collect(),
            relative: self
                .relative_attention
                .then(|| EmbeddingConfig::new(2 * self.attention_span(), h).init(device)),
            relative_norm: (self.relative_attention && self.norm_relative_embeddings)
                .then(|| norm(h)),
            heads: self.num_attention_heads,
            span: self.attention_span(),
            buckets: self.position_buckets,
            max_relative: self.max_relative_positions,
            c2p: self.c2p,
            p2c: self.p2c,
            activation: self.hidden_act,
        }
    }
}

#[derive(Module, Debug)]
pub struct DebertaEmbeddings<B: Backend> {
    words: Embedding<B>,
    positions: Option<Embedding<B>>,
    token_types: Option<Embedding<B>>,
    projection: Option<Linear<B>>,
    norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct DebertaLayer<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    /// Separate position projections when `share_att_key` is false.
    pos_key: Option<Linear<B>>,
    pos_query: Option<Linear<B>>,
    attention_out: Linear<B>,
    attention_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct DebertaV2<B: Backend> {
    embeddings: DebertaEmbeddings<B>,
    layers: Vec<DebertaLayer<B>>,
    relative: Option<Embedding<B>>,
    relative_norm: Option<LayerNorm<B>>,
    heads: usize,
    span: usize,
    buckets: usize,
    max_relative: usize,
    c2p: bool,
    p2c: bool,
    #[module(skip)]
    activation: Activation,
}

impl<B: Backend> DebertaV2<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let e = &self.embeddings;
        let mut x = e.words.forward(ids);
        if let Some(p) = &e.positions {
            x = x + p.forward(arange_ids(batch, len, &device));
        }
        if let Some(t) = &e.token_types {
            x = x + t.forward(Tensor::zeros([batch, len], &device));
        }
        if let Some(p) = &e.projection {
            x = p.forward(x);
        }
        let real = pad.clone().bool_not().float().unsqueeze_dim::<3>(2);
        let mut x = e.norm.forward(x) * real;

        // A query or key that is padding is masked (transformers: mask ⊗ mask).
        let masked = {
            let keys = pad
                .clone()
                .unsqueeze_dims::<4>(&[1, 2])
                .expand([batch, 1, len, len]);
            let queries = pad
                .unsqueeze_dims::<4>(&[1, 3])
                .expand([batch, 1, len, len]);
            keys.bool_or(queries).expand([batch, self.heads, len, len])
        };
        // Shared by every layer: the (normalised) relative table and, per direction, each
        // (query, key) pair's clamped index into it, [batch, heads, len, len].
        let relative = self.relative.as_ref().map(|table| {
            let mut r = table.weight.val();
            if let Some(norm) = &self.relative_norm {
                r = norm.forward(r);
            }
            let positions: Vec<i64> = (0..len as i64)
                .flat_map(|q| (0..len as i64).map(move |k| q - k))
                .map(|r| log_bucket(r, self.buckets, self.max_relative))
                .collect();
            let span = self.span as i64;
            let index = |sign: i64| {
                let v: Vec<i64> = positions
                    .iter()
                    .map(|r| (sign * r + span).clamp(0, 2 * span - 1))
                    .collect();
                Tensor::<B, 2, Int>::from_data(TensorData::new(v, [len, len]), &device)
                    .unsqueeze_dims::<4>(&[0, 1])
                    .expand([batch, self.heads, len, len])
            };
            RelativePositions {
                table: r.unsqueeze_dim::<3>(0),
                c2p: index(1),
                p2c: index(-1),
            }
        });
        for layer in &self.layers {
            x = self.layer(layer, x, &masked, relative.as_ref());
        }
        x
    }

    fn layer(
        &self,
        layer: &DebertaLayer<B>,
        x: Tensor<B, 3>,
        masked: &Tensor<B, 4, Bool>,
        relative: Option<&RelativePositions<B>>,
    ) -> Tensor<B, 3> {
        let heads = self.heads;
        let q = split_heads(layer.query.forward(x.clone()), heads);
        let k = split_heads(layer.key.forward(x.clone()), heads);
        let v = split_heads(layer.value.forward(x.clone()), heads);
        let d = q.dims()[3];
        let factor = 1 + self.c2p as usize + self.p2c as usize;
        let scale = ((d * factor) as f64).sqrt();
        let mut scores = q.clone().matmul(k.clone().swap_dims(2, 3)) / scale;
        if let Some(relative) = relative {
            let table = relative.table.clone(); // [1, 2·span, hidden]
            if self.c2p {
                let proj = layer.pos_key.as_ref().unwrap_or(&layer.key);
                let pos_key = split_heads(proj.forward(table.clone()), heads);
                let c2p = q
                    .matmul(pos_key.swap_dims(2, 3))
                    .gather(3, relative.c2p.clone());
                scores = scores + c2p / scale;
            }
            if self.p2c {
                let proj = layer.pos_query.as_ref().unwrap_or(&layer.query);
                let pos_query = split_heads(proj.forward(table), heads);
                let p2c = k
                    .matmul(pos_query.swap_dims(2, 3))
                    .gather(3, relative.p2c.clone())
                    .swap_dims(2, 3);
                scores = scores + p2c / scale;
            }
        }
        let weights = softmax(scores.mask_fill(masked.clone(), f32::MIN), 3);
        let context = merge_heads(weights.matmul(v));
        let x = layer
            .attention_norm
            .forward(layer.attention_out.forward(context) + x);
        let h = self
            .activation
            .forward(layer.intermediate.forward(x.clone()));
        layer.output_norm.forward(layer.output.forward(h) + x)
    }
}

/// The relative-position inputs every layer shares.
struct RelativePositions<B: Backend> {
    table: Tensor<B, 3>,
    c2p: Tensor<B, 4, Int>,
    p2c: Tensor<B, 4, Int>,
}

/// DeBERTa's relative position `query − key`, log-bucketed beyond `buckets / 2` up to
/// `max_position` (identity when `buckets` is 0). f32 arithmetic as in transformers.
pub fn log_bucket(relative: i64, buckets: usize, max_position: usize) -> i64 {
    if buckets == 0 {
        return relative;
    }
    let mid = (buckets / 2) as i64;
    if relative.abs() <= mid {
        return relative;
    }
    let abs = relative.abs() as f32;
    let scale = (((max_position - 1) as f64 / mid as f64) as f32).ln();
    let log_pos = ((abs / mid as f32).ln() / scale * (mid - 1) as f32).ceil() + mid as f32;
    log_pos as i64 * relative.signum()
}
