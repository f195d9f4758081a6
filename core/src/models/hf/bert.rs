//! BERT and the encoders built like it (DistilBERT's layers compute the same, under other
//! names: see [`super::distilbert`]): RoBERTa and XLM-RoBERTa (position ids counted from
//! `pad_token_id + 1`, as fairseq did), ELECTRA's discriminator (embeddings narrower than
//! the encoder, widened by `embeddings_project`). Post-norm layers: attention → add & norm →
//! feed-forward → add & norm.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::config_keys::ConfigKeys;
use super::{Activation, HfError, arange_ids, attend, merge_heads, split_heads};

/// Our parameter paths → HF tensor names (without the `bert.`/`roberta.`/… prefix).
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
    ("embeddings.norm.gamma", "embeddings.LayerNorm.weight"),
    ("embeddings.norm.beta", "embeddings.LayerNorm.bias"),
    ("embeddings.projection.weight", "embeddings_project.weight"),
    ("embeddings.projection.bias", "embeddings_project.bias"),
    (
        "layers.{i}.query.weight",
        "encoder.layer.{i}.attention.self.query.weight",
    ),
    (
        "layers.{i}.query.bias",
        "encoder.layer.{i}.attention.self.query.bias",
    ),
    (
        "layers.{i}.key.weight",
        "encoder.layer.{i}.attention.self.key.weight",
    ),
    (
        "layers.{i}.key.bias",
        "encoder.layer.{i}.attention.self.key.bias",
    ),
    (
        "layers.{i}.value.weight",
        "encoder.layer.{i}.attention.self.value.weight",
    ),
    (
        "layers.{i}.value.bias",
        "encoder.layer.{i}.attention.self.value.bias",
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
    ("pooler.weight", "pooler.dense.weight"),
    ("pooler.bias", "pooler.dense.bias"),
];

#[derive(Config, Debug)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    /// 0: no token-type embeddings (DistilBERT).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    /// ELECTRA: the embedding width when it differs from `hidden_size`.
    #[config(default = "None")]
    pub embedding_size: Option<usize>,
    /// RoBERTa / XLM-RoBERTa: position ids start after the padding id.
    #[config(default = false)]
    pub positions_after_padding: bool,
    /// Whether the checkpoint carries a pooler (dense + tanh over the first token).
    #[config(default = false)]
    pub pooler: bool,
}

impl BertConfig {
    /// From `config.json` of a `bert`, `roberta`, `xlm-roberta` or `electra` model.
    pub(super) fn from_keys(keys: &ConfigKeys, model_type: &str) -> Result<Self, HfError> {
        let roberta = model_type.contains("roberta");
        let hidden = keys.usize("hidden_size", Some(768))?;
        let embedding = keys.usize("embedding_size", Some(hidden))?;
        Ok(BertConfig::new(
            keys.usize("vocab_size", None)?,
            hidden,
            keys.usize("num_hidden_layers", Some(12))?,
            keys.usize("num_attention_heads", Some(12))?,
            keys.usize("intermediate_size", Some(3072))?,
            keys.activation("hidden_act", "gelu")?,
            keys.usize("max_position_embeddings", Some(512))?,
            keys.usize("type_vocab_size", Some(2))?,
            keys.f64("layer_norm_eps", if roberta { 1e-5 } else { 1e-12 })?,
            keys.usize("pad_token_id", Some(if roberta { 1 } else { 0 }))?,
        )
        .with_embedding_size((embedding != hidden).then_some(embedding))
        .with_positions_after_padding(roberta))
    }

    /// Offset of the first position id (RoBERTa: `pad_token_id + 1`).
    pub fn position_offset(&self) -> usize {
        if self.positions_after_padding {
            self.pad_token_id + 1
        } else {
            0
        }
    }

    /// Trainable values, from the configuration alone (see [`super::HfEncoderConfig::parameter_count`]).
    pub fn parameter_count(&self) -> u64 {
        let (h, e, i) = (
            self.hidden_size as u64,
            self.embedding_size.unwrap_or(self.hidden_size) as u64,
            self.intermediate_size as u64,
        );
        let rows = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) as u64;
        let projection = if e != h { e * h + h } else { 0 };
        let embeddings = rows * e + 2 * e + projection;
        let layer = 4 * (h * h + h) + 4 * h + (h * i + i) + (i * h + h);
        let pooler = if self.pooler { h * h + h } else { 0 };
        embeddings + self.num_hidden_layers as u64 * layer + pooler
    }

    /// `(key, value, least, most)` of every size (see [`super::HfEncoderConfig::check`]).
    pub(super) fn sizes(&self) -> Vec<(&'static str, usize, usize, usize)> {
        vec![
            ("vocab_size", self.vocab_size, 1, super::MAX_VOCAB),
            ("hidden_size", self.hidden_size, 1, super::MAX_WIDTH),
            (
                "embedding_size",
                self.embedding_size.unwrap_or(self.hidden_size),
                1,
                super::MAX_WIDTH,
            ),
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
                self.position_offset() + 1,
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

    pub fn init<B: Backend>(&self, device: &B::Device) -> Bert<B> {
        let (h, e) = (
            self.hidden_size,
            self.embedding_size.unwrap_or(self.hidden_size),
        );
        let norm = |w| {
            LayerNormConfig::new(w)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Bert {
            embeddings: BertEmbeddings {
                words: EmbeddingConfig::new(self.vocab_size, e).init(device),
                positions: EmbeddingConfig::new(self.max_position_embeddings, e).init(device),
                token_types: (self.type_vocab_size > 0)
                    .then(|| EmbeddingConfig::new(self.type_vocab_size, e).init(device)),
                norm: norm(e),
                projection: (e != h).then(|| linear(e, h)),
            },
            layers: (0..self.num_hidden_layers)
                .map(|_| BertLayer {
                    query: linear(h, h),
                    key: linear(h, h),
                    value: linear(h, h),
                    attention_out: linear(h, h),
                    attention_norm: norm(h),
                    intermediate: linear(h, self.intermediate_size),
                    output: linear(self.intermediate_size, h),
                    output_norm: norm(h),
                })
                .collect(),
            pooler: self.pooler.then(|| linear(h, h)),
            heads: self.num_attention_heads,
            activation: self.hidden_act,
            positions_after_padding: self.positions_after_padding,
            pad_token_id: self.pad_token_id,
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    words: Embedding<B>,
    positions: Embedding<B>,
    /// DistilBERT has none.
    token_types: Option<Embedding<B>>,
    norm: LayerNorm<B>,
    projection: Option<Linear<B>>,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attention_out: Linear<B>,
    attention_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    embeddings: BertEmbeddings<B>,
    layers: Vec<BertLayer<B>>,
    /// Loaded so a checkpoint round-trips and top-layer fine-tuning can train it; the
    /// encoder's output is `last_hidden_state`, which does not pass through it.
    pooler: Option<Linear<B>>,
    heads: usize,
    #[module(skip)]
    activation: Activation,
    positions_after_padding: bool,
    pad_token_id: usize,
}

impl<B: Backend> Bert<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = if self.positions_after_padding {
            // fairseq: real tokens count 1, 2, … after the padding id; padding keeps it.
            let real = pad.clone().bool_not().int();
            real.clone().cumsum(1) * real + self.pad_token_id as i64
        } else {
            arange_ids(batch, len, &device)
        };
        let e = &self.embeddings;
        let mut x = e.words.forward(ids) + e.positions.forward(positions);
        if let Some(types) = &e.token_types {
            // Single sentences: every token is of type 0.
            x = x + types.forward(Tensor::zeros([batch, len], &device));
        }
        let mut x = e.norm.forward(x);
        if let Some(p) = &e.projection {
            x = p.forward(x);
        }
        for layer in &self.layers {
            x = layer.forward(x, &pad, self.heads, self.activation);
        }
        x
    }
}

impl<B: Backend> BertLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        pad: &Tensor<B, 2, Bool>,
        heads: usize,
        activation: Activation,
    ) -> Tensor<B, 3> {
        let q = split_heads(self.query.forward(x.clone()), heads);
        let k = split_heads(self.key.forward(x.clone()), heads);
        let v = split_heads(self.value.forward(x.clone()), heads);
        let d = q.dims()[3] as f64;
        let context = merge_heads(attend(q.matmul(k.swap_dims(2, 3)) / d.sqrt(), pad, v));
        let x = self
            .attention_norm
            .forward(self.attention_out.forward(context) + x);
        let h = activation.forward(self.intermediate.forward(x.clone()));
        self.output_norm.forward(self.output.forward(h) + x)
    }
}
