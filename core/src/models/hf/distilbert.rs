//! DistilBERT: BERT's post-norm layers without token types, under its own tensor names; the
//! module is [`super::bert::Bert`], only the name table and the configuration keys differ.

use super::HfError;
use super::bert::BertConfig;
use super::config_keys::ConfigKeys;

/// Our parameter paths → HF tensor names (without the `distilbert.` prefix).
pub const HF_NAMES: &[(&str, &str)] = &[
    (
        "embeddings.words.weight",
        "embeddings.word_embeddings.weight",
    ),
    (
        "embeddings.positions.weight",
        "embeddings.position_embeddings.weight",
    ),
    ("embeddings.norm.gamma", "embeddings.LayerNorm.weight"),
    ("embeddings.norm.beta", "embeddings.LayerNorm.bias"),
    (
        "layers.{i}.query.weight",
        "transformer.layer.{i}.attention.q_lin.weight",
    ),
    (
        "layers.{i}.query.bias",
        "transformer.layer.{i}.attention.q_lin.bias",
    ),
    (
        "layers.{i}.key.weight",
        "transformer.layer.{i}.attention.k_lin.weight",
    ),
    (
        "layers.{i}.key.bias",
        "transformer.layer.{i}.attention.k_lin.bias",
    ),
    (
        "layers.{i}.value.weight",
        "transformer.layer.{i}.attention.v_lin.weight",
    ),
    (
        "layers.{i}.value.bias",
        "transformer.layer.{i}.attention.v_lin.bias",
    ),
    (
        "layers.{i}.attention_out.weight",
        "transformer.layer.{i}.attention.out_lin.weight",
    ),
    (
        "layers.{i}.attention_out.bias",
        "transformer.layer.{i}.attention.out_lin.bias",
    ),
    (
        "layers.{i}.attention_norm.gamma",
        "transformer.layer.{i}.sa_layer_norm.weight",
    ),
    (
        "layers.{i}.attention_norm.beta",
        "transformer.layer.{i}.sa_layer_norm.bias",
    ),
    (
        "layers.{i}.intermediate.weight",
        "transformer.layer.{i}.ffn.lin1.weight",
    ),
    (
        "layers.{i}.intermediate.bias",
        "transformer.layer.{i}.ffn.lin1.bias",
    ),
    (
        "layers.{i}.output.weight",
        "transformer.layer.{i}.ffn.lin2.weight",
    ),
    (
        "layers.{i}.output.bias",
        "transformer.layer.{i}.ffn.lin2.bias",
    ),
    (
        "layers.{i}.output_norm.gamma",
        "transformer.layer.{i}.output_layer_norm.weight",
    ),
    (
        "layers.{i}.output_norm.beta",
        "transformer.layer.{i}.output_layer_norm.bias",
    ),
];

/// DistilBERT's `config.json` keys (`dim`, `n_layers`, `hidden_dim`, …) as a BERT layout.
pub(super) fn config(keys: &ConfigKeys) -> Result<BertConfig, HfError> {
    Ok(BertConfig::new(
        keys.usize("vocab_size", None)?,
        keys.usize("dim", Some(768))?,
        keys.usize("n_layers", Some(6))?,
        keys.usize("n_heads", Some(12))?,
        keys.usize("hidden_dim", Some(3072))?,
        keys.activation("activation", "gelu")?,
        keys.usize("max_position_embeddings", Some(512))?,
        0,
        1e-12,
        keys.usize("pad_token_id", Some(0))?,
    ))
}
