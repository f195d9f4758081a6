//! Pretrained HuggingFace text encoders, rebuilt as burn modules and loaded from a local model
//! folder (`config.json`, `tokenizer.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`). One file per family: [`bert`] (BERT, RoBERTa,
//! XLM-RoBERTa, ELECTRA), [`distilbert`], [`t5`] (encoder), [`deberta_v2`] (v2 and v3).
//!
//! [`load`] reads the folder through a caller-supplied reader (core does no file I/O),
//! dispatches on `model_type`, maps HF tensor names to module paths with each family's
//! table ([`HfEncoder::hf_name`]) and checks every shape against `config.json`.

pub mod bert;
mod config_keys;
pub mod deberta_v2;
pub mod distilbert;
mod loader;
mod pooling;
pub mod t5;
mod tokenizer;

pub(crate) use loader::float_values;
pub use loader::{HfFiles, HfLoaded, Weights, load, load_weights, parse_config, read_folder};
pub use pooling::Pooling;
pub use tokenizer::{HfTokenizer, TokenBatch};

use burn::prelude::*;
use burn::tensor::activation;

/// `model_type`s this module can load.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "electra",
    "distilbert",
    "t5",
    "mt5",
    "deberta-v2",
];

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("{file}: tensor `{tensor}`: {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: String,
    },
}

impl HfError {
    pub(crate) fn file(file: impl Into<String>, reason: impl Into<String>) -> Self {
        HfError::File {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

/// The feed-forward nonlinearity, by its `hidden_act` name in `config.json`.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Activation {
    /// Exact (erf) GELU: `gelu`.
    Gelu,
    /// tanh approximation: `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`.
    GeluTanh,
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }

    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Gelu => activation::gelu(x),
            Activation::GeluTanh => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
            Activation::Silu => activation::silu(x),
        }
    }
}

/// Bounds on a configuration's sizes: far above every supported checkpoint, low enough that
/// a hostile `config.json` (in a folder or a bundle) cannot ask for unbounded memory.
const MAX_VOCAB: usize = 1 << 20;
const MAX_WIDTH: usize = 8192;
const MAX_LAYERS: usize = 96;
const MAX_POSITIONS: usize = 1 << 16;

/// One of the supported architectures, as read from `config.json`.
#[derive(Config, Debug)]
pub enum HfEncoderConfig {
    Bert(bert::BertConfig),
    DistilBert(bert::BertConfig),
    T5(t5::T5Config),
    DebertaV2(deberta_v2::DebertaV2Config),
}

/// A pretrained encoder: token ids → `last_hidden_state`.
#[derive(Module, Debug)]
pub enum HfEncoder<B: Backend> {
    Bert(bert::Bert<B>),
    DistilBert(bert::Bert<B>),
    T5(t5::T5Encoder<B>),
    DebertaV2(deberta_v2::DebertaV2<B>),
}

impl HfEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> HfEncoder<B> {
        match self {
            HfEncoderConfig::Bert(c) => HfEncoder::Bert(c.init(device)),
            HfEncoderConfig::DistilBert(c) => HfEncoder::DistilBert(c.init(device)),
            HfEncoderConfig::T5(c) => HfEncoder::T5(c.init(device)),
            HfEncoderConfig::DebertaV2(c) => HfEncoder::DebertaV2(c.init(device)),
        }
    }

    /// Trainable values, from the configuration alone: a bundle's weights are checked
    /// against it before anything is allocated.
    pub fn parameter_count(&self) -> u64 {
        match self {
            HfEncoderConfig::Bert(c) | HfEncoderConfig::DistilBert(c) => c.parameter_count(),
            HfEncoderConfig::T5(c) => c.parameter_count(),
            HfEncoderConfig::DebertaV2(c) => c.parameter_count(),
        }
    }

    /// Every size within bounds (see [`MAX_WIDTH`]) and heads that divide the width; the
    /// error names the `config.json` key.
    pub fn check(&self) -> Result<(), String> {
        let (sizes, heads) = match self {
            HfEncoderConfig::Bert(c) | HfEncoderConfig::DistilBert(c) => {
                (c.sizes(), Some(c.num_attention_heads))
            }
            HfEncoderConfig::T5(c) => (c.sizes(), None),
            HfEncoderConfig::DebertaV2(c) => (c.sizes(), Some(c.num_attention_heads)),
        };
        for (key, value, least, most) in sizes {
            if !(least..=most).contains(&value) {
                return Err(format!("{key} = {value} is outside {least} … {most}"));
            }
        }
        if let Some(heads) = heads
            && !self.hidden_size().is_multiple_of(heads)
        {
            return Err(format!(
                "hidden size {} is not divisible by {heads} attention heads",
                self.hidden_size()
            ));
        }
        Ok(())
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            HfEncoderConfig::Bert(c) => c.hidden_size,
            HfEncoderConfig::DistilBert(c) => c.hidden_size,
            HfEncoderConfig::T5(c) => c.d_model,
            HfEncoderConfig::DebertaV2(c) => c.hidden_size,
        }
    }

    pub fn layers(&self) -> usize {
        match self {
            HfEncoderConfig::Bert(c) => c.num_hidden_layers,
            HfEncoderConfig::DistilBert(c) => c.num_hidden_layers,
            HfEncoderConfig::T5(c) => c.num_layers,
            HfEncoderConfig::DebertaV2(c) => c.num_hidden_layers,
        }
    }

    /// The model's vocabulary (rows of the word embedding).
    pub fn vocab_size(&self) -> usize {
        match self {
            HfEncoderConfig::Bert(c) | HfEncoderConfig::DistilBert(c) => c.vocab_size,
            HfEncoderConfig::T5(c) => c.vocab_size,
            HfEncoderConfig::DebertaV2(c) => c.vocab_size,
        }
    }

    /// Longest input the position embeddings allow (T5's relative positions have no limit;
    /// 512 is what it was trained with).
    pub fn max_tokens(&self) -> usize {
        match self {
            HfEncoderConfig::Bert(c) | HfEncoderConfig::DistilBert(c) => {
                c.max_position_embeddings - c.position_offset()
            }
            HfEncoderConfig::T5(_) => 512,
            HfEncoderConfig::DebertaV2(c) => c.max_position_embeddings,
        }
    }

    /// The id padding positions carry (RoBERTa's position ids depend on it).
    pub fn pad_token_id(&self) -> usize {
        match self {
            HfEncoderConfig::Bert(c) | HfEncoderConfig::DistilBert(c) => c.pad_token_id,
            HfEncoderConfig::T5(c) => c.pad_token_id,
            HfEncoderConfig::DebertaV2(c) => c.pad_token_id,
        }
    }
}

impl<B: Backend> HfEncoder<B> {
    /// `ids [batch, len]`, `pad [batch, len]` (true = padding) → `[batch, len, hidden]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        match self {
            HfEncoder::Bert(m) | HfEncoder::DistilBert(m) => m.forward(ids, pad),
            HfEncoder::T5(m) => m.forward(ids, pad),
            HfEncoder::DebertaV2(m) => m.forward(ids, pad),
        }
    }

    /// The HF tensor name of one of our parameter paths (`layers.3.query.weight` →
    /// `encoder.layer.3.attention.self.query.weight`): each family's table, with `{i}` for
    /// the layer index.
    pub fn hf_name(&self, path: &str) -> Option<String> {
        let table = match self {
            HfEncoder::Bert(_) => bert::HF_NAMES,
            HfEncoder::DistilBert(_) => distilbert::HF_NAMES,
            HfEncoder::T5(_) => t5::HF_NAMES,
            HfEncoder::DebertaV2(_) => deberta_v2::HF_NAMES,
        };
        let (pattern, layer) = layer_pattern(path);
        let hf = table.iter().find(|(ours, _)| *ours == pattern)?.1;
        Some(match layer {
            Some(i) => hf.replace("{i}", &i.to_string()),
            None => hf.to_string(),
        })
    }

    /// Prefixes the family's task checkpoints put before the base model's names
    /// (`bert.encoder…` in a `BertForMaskedLM`).
    pub fn hf_prefixes(&self) -> &'static [&'static str] {
        match self {
            HfEncoder::Bert(_) => &["bert.", "roberta.", "electra.", "model."],
            HfEncoder::DistilBert(_) => &["distilbert.", "model."],
            HfEncoder::T5(_) => &["model."],
            HfEncoder::DebertaV2(_) => &["deberta.", "model."],
        }
    }
}

/// `layers.3.query.weight` → (`layers.{i}.query.weight`, Some(3)).
pub(crate) fn layer_pattern(path: &str) -> (String, Option<usize>) {
    let parts: Vec<&str> = path.split('.').collect();
    if let Some(at) = parts.iter().position(|p| *p == "layers")
        && let Some(i) = parts.get(at + 1).and_then(|p| p.parse::<usize>().ok())
    {
        let mut pattern = parts.clone();
        pattern[at + 1] = "{i}";
        return (pattern.join("."), Some(i));
    }
    (path.to_string(), None)
}

/// Which encoder parameters train, as a user asks for it. Everything not frozen trains; a
/// frozen backbone can still open its top layers (and the pooler) and/or its normalisation
/// layers (LayerNorm, T5's RMSNorm).
#[derive(Config, Debug, PartialEq)]
pub struct Freezing {
    /// Freeze the pretrained backbone.
    #[config(default = true)]
    pub backbone: bool,
    /// With a frozen backbone: these many top layers (and the pooler) still train.
    #[config(default = 0)]
    pub train_top_layers: usize,
    /// With a frozen backbone: every normalisation layer still trains.
    #[config(default = false)]
    pub train_norms: bool,
}

impl Freezing {
    /// Whether the backbone parameter at `path` (relative to the encoder, e.g.
    /// `layers.5.output_norm.gamma`) trains, in an encoder of `layers` layers.
    pub fn trains(&self, path: &str, layers: usize) -> bool {
        if !self.backbone {
            return true;
        }
        let (_, layer) = layer_pattern(path);
        let top = match layer {
            Some(i) => i + self.train_top_layers >= layers,
            None => self.train_top_layers > 0 && path.starts_with("pooler."),
        };
        top || (self.train_norms && is_norm(path))
    }
}

/// Normalisation parameters by our naming (`…norm…` modules).
fn is_norm(path: &str) -> bool {
    path.split('.').any(|p| p.contains("norm"))
}

/// `[batch, len, heads·d]` → `[batch, heads, len, d]`.
pub(crate) fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, w] = x.dims();
    x.reshape([b, l, heads, w / heads]).swap_dims(1, 2)
}

/// `[batch, heads, len, d]` → `[batch, len, heads·d]`.
pub(crate) fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Scores `[batch, heads, len, len]` with padded keys excluded → softmax → weighted values.
pub(crate) fn attend<B: Backend>(
    scores: Tensor<B, 4>,
    pad: &Tensor<B, 2, Bool>,
    values: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, h, l, _] = scores.dims();
    let keys = pad
        .clone()
        .unsqueeze_dims::<4>(&[1, 2])
        .expand([b, h, l, l]);
    let weights = activation::softmax(scores.mask_fill(keys, -1.0e9), 3);
    weights.matmul(values)
}

/// `0 … len-1` for every row: `[batch, len]`.
pub(crate) fn arange_ids<B: Backend>(
    batch: usize,
    len: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::<B, 1, Int>::arange(0..len as i64, device)
        .unsqueeze_dim::<2>(0)
        .expand([batch, len])
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;
    use crate::device::NdArray;

    /// Every fixture architecture (and its variants: BERT with and without a pooler, DeBERTa
    /// with shared and separate position projections): the count from the configuration is
    /// what burn counts in the built module.
    #[test]
    fn parameter_count_is_the_built_modules() {
        let fixtures = [
            include_str!("../../../../tests/fixtures/hf/bert/config.json"),
            include_str!("../../../../tests/fixtures/hf/roberta/config.json"),
            include_str!("../../../../tests/fixtures/hf/xlm-roberta/config.json"),
            include_str!("../../../../tests/fixtures/hf/electra/config.json"),
            include_str!("../../../../tests/fixtures/hf/distilbert/config.json"),
            include_str!("../../../../tests/fixtures/hf/t5/config.json"),
            include_str!("../../../../tests/fixtures/hf/t5-gated/config.json"),
            include_str!("../../../../tests/fixtures/hf/deberta-v2/config.json"),
        ];
        let device = Default::default();
        let mut checked = 0;
        for text in fixtures {
            let (model_type, base) = parse_config(text.as_bytes(), "config.json").unwrap();
            let mut variants = vec![base.clone()];
            match &base {
                HfEncoderConfig::Bert(c) => {
                    variants.push(HfEncoderConfig::Bert(c.clone().with_pooler(!c.pooler)))
                }
                HfEncoderConfig::DebertaV2(c) => {
                    let mut other = c.clone();
                    other.share_att_key = !c.share_att_key;
                    other.norm_relative_embeddings = !c.norm_relative_embeddings;
                    other.position_biased_input = !c.position_biased_input;
                    variants.push(HfEncoderConfig::DebertaV2(other));
                }
                _ => {}
            }
            for config in variants {
                let built = config.init::<NdArray>(&device).num_params() as u64;
                assert_eq!(config.parameter_count(), built, "{model_type}: {config:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 13);
    }

    /// A hostile or mistyped size is refused by name.
    #[test]
    fn check_names_the_key_out_of_bounds() {
        let text = include_str!("../../../../tests/fixtures/hf/bert/config.json");
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        value["num_hidden_layers"] = 100_000.into();
        let e = parse_config(value.to_string().as_bytes(), "m/config.json").unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers = 100000"), "{e}");
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        value["num_attention_heads"] = 7.into();
        let e = parse_config(value.to_string().as_bytes(), "m/config.json").unwrap_err();
        assert!(e.to_string().contains("not divisible by 7"), "{e}");
    }
}
