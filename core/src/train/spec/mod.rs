//! The run configuration: a JSON file with `model` and `training` sections (plus
//! `tokenizer`, `visualization`), accepting every key of the original system's
//! `run_spec.json` — but, unlike it, an unknown key or a mistyped choice is an error naming
//! the key (and the allowed values), and a key whose value xtal cannot honour is a warning
//! naming it ([`RunSpec::from_json`]). Choices are enums, parsed once here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::clip::{ClipConfig, StructureProjectorConfig, TextEncoderConfig};
use crate::models::hf::{Freezing, Pooling};
use crate::models::structure::{GraphBackbone, Readout, StructureEncoderConfig};

mod ignored;
mod tensor;
mod training;

pub use ignored::{IGNORED_KEYS, IgnoredKey};
pub use tensor::{HeadType, LossName, Modality, TensorRegressionSpec, TensorTask, TrainingPhase};
pub use training::{TENSOR_METRICS, TRACKED_METRICS, TrainingSpec};

use super::early_stopping::Mode;

/// `model.text_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextBackend {
    /// xtal's byte-level Transformer.
    Custom,
    /// A pretrained encoder from a local folder (`text_model_name`).
    Huggingface,
}

/// `model.graph_backbone`: a graph encoder trained with the rest, or where the dataset's
/// precomputed structure vectors came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StructureSource {
    Cgcnn,
    Painn,
    /// Precomputed vectors from the original system's Equiformer (its default).
    Equiformer,
    /// Precomputed vectors of any other origin (e.g. `xtal prepare`'s FTCP).
    Precomputed,
}

impl StructureSource {
    /// The graph encoder this names (`None`: precomputed structure vectors).
    pub fn encoder(self) -> Option<GraphBackbone> {
        match self {
            Self::Cgcnn => Some(GraphBackbone::Cgcnn),
            Self::Painn => Some(GraphBackbone::Painn),
            Self::Equiformer | Self::Precomputed => None,
        }
    }
}

/// `model.graph_projector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projector {
    Linear,
    /// Hidden layers of `graph_hidden_dims` (default one of `clip_dim`).
    Mlp,
}

/// `model.text_pooling` by its name (`mean`, `first` or `cls`, `last`, `max`); the enum's own
/// serde form is the bundles' and runs' (burn's `Config`).
mod pooling_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::models::hf::Pooling;

    pub fn serialize<S: Serializer>(p: &Pooling, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pooling, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// The original's dataset directory; `--data` takes precedence.
    pub data_dir: Option<String>,
    pub model: ModelSpec,
    pub training: TrainingSpec,
    pub tokenizer: TokenizerSpec,
    pub visualization: VisualizationSpec,
    /// Only for `xtal train tensor`: the heads over frozen CLIP embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_regression: Option<TensorRegressionSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub clip_dim: usize,
    pub text_backend: TextBackend,
    pub text_model_name: Option<String>,
    pub text_model_id: Option<String>,
    #[serde(with = "pooling_name")]
    pub text_pooling: Pooling,
    pub text_dropout: f64,
    pub freeze_text_backbone: bool,
    pub train_text_layernorm_only: bool,
    pub train_top_n_layers: Option<usize>,
    pub text_width: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    /// Bytes: always 256 (xtal's special tokens come on top, see `ByteTokenizer`).
    pub vocab_size: usize,
    pub max_seq_length: usize,
    pub dropout: f64,
    pub graph_backbone: StructureSource,
    pub graph_backbone_name: Option<String>,
    pub graph_backbone_id: Option<String>,
    pub graph_projector: Projector,
    pub graph_projector_id: Option<String>,
    /// Hidden widths of the "mlp" projector (default: one layer of `clip_dim`).
    pub graph_hidden_dims: Option<Vec<usize>>,
    /// Graph encoder: atom feature width, message-passing layers, readout, width of the
    /// structure embedding, and graph settings (default: the backbone's own — CGCNN 8 Å /
    /// 12 nearest, PaiNN 5 Å / all).
    pub graph_width: usize,
    pub graph_layers: usize,
    pub graph_readout: Readout,
    pub graph_embedding_dim: usize,
    pub graph_cutoff: Option<f64>,
    pub graph_max_neighbors: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            clip_dim: 512,
            text_backend: TextBackend::Custom,
            text_model_name: None,
            text_model_id: None,
            text_pooling: Pooling::Mean,
            text_dropout: 0.0,
            freeze_text_backbone: true,
            train_text_layernorm_only: true,
            train_top_n_layers: None,
            text_width: 512,
            text_layers: 6,
            text_heads: 8,
            vocab_size: 256,
            max_seq_length: 256,
            dropout: 0.0,
            graph_backbone: StructureSource::Equiformer,
            graph_backbone_name: None,
            graph_backbone_id: None,
            graph_projector: Projector::Linear,
            graph_projector_id: None,
            graph_hidden_dims: None,
            graph_width: 64,
            graph_layers: 3,
            graph_readout: Readout::Mean,
            graph_embedding_dim: 128,
            graph_cutoff: None,
            graph_max_neighbors: None,
        }
    }
}

impl ModelSpec {
    /// The graph encoder `graph_backbone` asks for (`None`: precomputed structure vectors).
    pub fn graph_encoder(&self) -> Option<StructureEncoderConfig> {
        let backbone = self.graph_backbone.encoder()?;
        let mut graph = backbone.default_graph();
        if let Some(c) = self.graph_cutoff {
            graph.cutoff = c;
        }
        if self.graph_max_neighbors.is_some() {
            graph.max_neighbors = self.graph_max_neighbors;
        }
        Some(
            StructureEncoderConfig::new(backbone, graph)
                .with_hidden(self.graph_width)
                .with_layers(self.graph_layers)
                .with_readout(self.graph_readout)
                .with_output_dim(self.graph_embedding_dim),
        )
    }
}

/// The original's byte-tokenizer ids, accepted with a warning unless they are xtal's: xtal's
/// ids are fixed (PAD 0, SOT 1, EOT 2, bytes from 3) because the original's (SOT 2, EOT 3)
/// collided with bytes 2 and 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSpec {
    pub pad_token: i64,
    pub sot_token: i64,
    pub eot_token: i64,
    pub vocab_size: usize,
    pub tokenizer_padding: String,
}

impl Default for TokenizerSpec {
    fn default() -> Self {
        Self {
            pad_token: 0,
            sot_token: 1,
            eot_token: 2,
            vocab_size: 256,
            tokenizer_padding: "max_length".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisualizationSpec {
    pub n_samples_tsne: usize,
    pub n_samples_metrics: usize,
    pub tsne_perplexity: f64,
    pub tsne_seed: u64,
    /// Pairs joined by a line in the t-SNE plot (the original's `connect_k`, both spellings).
    #[serde(alias = "connect_k")]
    pub tsne_connect_k: usize,
    pub similarity_batch_size: usize,
    /// Side of the similarity heatmap.
    pub heatmap_size: usize,
    pub output_dir: Option<String>,
    pub dpi: Option<u32>,
}

impl Default for VisualizationSpec {
    fn default() -> Self {
        Self {
            n_samples_tsne: 800,
            n_samples_metrics: 4000,
            tsne_perplexity: 30.0,
            tsne_seed: 42,
            tsne_connect_k: 200,
            similarity_batch_size: 64,
            heatmap_size: 64,
            output_dir: None,
            dpi: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("override `{0}`: expected section.key=value, e.g. training.epochs=5")]
    Override(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl RunSpec {
    /// Parses a configuration after applying `section.key=value` overrides to it, with the
    /// keys it sets that xtal accepts but cannot honour (for the front end to warn about).
    pub fn from_json(
        text: &str,
        file: &str,
        overrides: &[String],
    ) -> Result<(Self, Vec<IgnoredKey>), SpecError> {
        let parse = |message: String| SpecError::Parse {
            file: file.into(),
            message,
        };
        let mut value: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(text).map_err(|e| parse(e.to_string()))?
        };
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        // The path names the key of a mistyped value (`model.graph_backbone: unknown variant…`).
        let spec: RunSpec = serde_path_to_error::deserialize(&value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            parse(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            })
        })?;
        spec.validate()?;
        let ignored = spec.ignored_keys(&value);
        Ok((spec, ignored))
    }

    /// The keys of [`IGNORED_KEYS`] that `given` (the configuration as written) sets to
    /// anything but the default.
    fn ignored_keys(&self, given: &Value) -> Vec<IgnoredKey> {
        let with_tensor_defaults = |spec: &RunSpec| {
            let mut v = serde_json::to_value(spec).unwrap_or_default();
            v["tensor_regression"] =
                serde_json::to_value(spec.tensor_regression.clone().unwrap_or_default())
                    .unwrap_or_default();
            v
        };
        let (ours, defaults) = (
            with_tensor_defaults(self),
            with_tensor_defaults(&RunSpec::default()),
        );
        let at = |v: &Value, key: &str| key.split('.').try_fold(v, |v, k| v.get(k)).cloned();
        IGNORED_KEYS
            .iter()
            .filter(|k| at(given, k.key).is_some() && at(&ours, k.key) != at(&defaults, k.key))
            .copied()
            .collect()
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field, message: &str| {
            Err(SpecError::Invalid {
                field,
                message: message.into(),
            })
        };
        let m = &self.model;
        let t = &self.training;
        if m.text_backend == TextBackend::Huggingface
            && m.text_model_name.as_deref().unwrap_or("").is_empty()
        {
            return invalid(
                "model.text_model_name",
                "a local HuggingFace model folder (config.json, tokenizer.json, model.safetensors); nothing is downloaded",
            );
        }
        if m.text_width == 0 || m.text_heads == 0 || !m.text_width.is_multiple_of(m.text_heads) {
            return invalid(
                "model.text_width",
                "must be a positive multiple of model.text_heads",
            );
        }
        if m.text_layers == 0 || m.clip_dim == 0 || m.max_seq_length < 3 {
            return invalid(
                "model",
                "text_layers and clip_dim must be positive, max_seq_length at least 3",
            );
        }
        if m.vocab_size != 256 || self.tokenizer.vocab_size != 256 {
            return invalid("vocab_size", "the byte-level tokenizer has 256 byte values");
        }
        if m.graph_width == 0 || m.graph_layers == 0 || m.graph_embedding_dim == 0 {
            return invalid(
                "model.graph_width",
                "graph_width, graph_layers and graph_embedding_dim must be positive",
            );
        }
        if let Some(c) = m.graph_cutoff
            && !(c.is_finite() && (1.0..=20.0).contains(&c))
        {
            return invalid("model.graph_cutoff", "must be between 1 and 20 Å");
        }
        if m.graph_max_neighbors == Some(0) {
            return invalid("model.graph_max_neighbors", "must be at least 1");
        }
        if m.text_backend == TextBackend::Custom && m.text_pooling != Pooling::Mean {
            return invalid(
                "model.text_pooling",
                "the byte-level encoder pools by masked mean",
            );
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return invalid("model.dropout", "must be in [0, 1)");
        }
        if t.batch_size < 2 {
            return invalid(
                "training.batch_size",
                "a contrastive batch needs at least 2 pairs",
            );
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return invalid("training.learning_rate", "must be a positive number");
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return invalid("training.weight_decay", "must be 0 or more");
        }
        if !(0.0..1.0).contains(&t.val_split) || (t.use_validation && t.val_split == 0.0) {
            return invalid(
                "training.val_split",
                "must be in (0, 1) when use_validation is on",
            );
        }
        if !(0.0..1.0).contains(&t.warmup_fraction) || !(0.0..=1.0).contains(&t.min_lr_ratio) {
            return invalid(
                "training.warmup_fraction",
                "warmup_fraction in [0, 1), min_lr_ratio in [0, 1]",
            );
        }
        if t.grad_accum_steps == 0 {
            return invalid("training.grad_accum_steps", "must be at least 1");
        }
        if !(t.grad_clip_norm.is_finite() && t.grad_clip_norm >= 0.0) {
            return invalid("training.grad_clip_norm", "must be 0 (off) or positive");
        }
        if let Some(tr) = &self.tensor_regression {
            tr.validate()?;
        }
        let tracked = self.tracked_metrics();
        if t.early_stopping && !tracked.iter().any(|(n, _)| *n == t.early_stopping_metric) {
            let names: Vec<&str> = tracked.iter().map(|(n, _)| *n).collect();
            return Err(SpecError::Invalid {
                field: "training.early_stopping_metric",
                message: format!(
                    "unknown metric `{}`; tracked: {}",
                    t.early_stopping_metric,
                    names.join(", ")
                ),
            });
        }
        if t.early_stopping && !t.use_validation && t.early_stopping_metric != "train_loss" {
            return invalid(
                "training.early_stopping_metric",
                "validation metrics need use_validation",
            );
        }
        Ok(())
    }

    /// The metrics a run of this specification records: a tensor-regression section makes it
    /// a head run.
    pub fn tracked_metrics(&self) -> &'static [(&'static str, Mode)] {
        if self.tensor_regression.is_some() {
            TENSOR_METRICS
        } else {
            TRACKED_METRICS
        }
    }

    /// What trains in a HF text backbone: `freeze_text_backbone`, with
    /// `train_top_n_layers` (+ pooler) and `train_text_layernorm_only` opening parts of it.
    pub fn text_freezing(&self) -> Freezing {
        let m = &self.model;
        Freezing::new()
            .with_backbone(m.freeze_text_backbone)
            .with_train_top_layers(m.train_top_n_layers.unwrap_or(0))
            .with_train_norms(m.train_text_layernorm_only)
    }

    /// The model this specification describes, over `structure_dim`-D structure vectors or
    /// its graph encoder's embeddings (a HF text side is added by the front end, which reads
    /// the model folder).
    pub fn clip_config(&self, structure_dim: usize) -> ClipConfig {
        let m = &self.model;
        let graph = m.graph_encoder();
        let structure_dim = graph.as_ref().map_or(structure_dim, |g| g.output_dim);
        let hidden = match m.graph_projector {
            Projector::Mlp => m.graph_hidden_dims.clone().unwrap_or(vec![m.clip_dim]),
            Projector::Linear => Vec::new(),
        };
        ClipConfig::new(
            TextEncoderConfig::new()
                .with_width(m.text_width)
                .with_layers(m.text_layers)
                .with_heads(m.text_heads)
                .with_max_len(m.max_seq_length)
                .with_dropout(m.dropout)
                .with_embed_dim(m.clip_dim),
            StructureProjectorConfig::new(structure_dim)
                .with_embed_dim(m.clip_dim)
                .with_hidden(hidden),
        )
        .with_graph(graph)
    }
}

/// `training.epochs=5` → sets `value["training"]["epochs"] = 5` (JSON if it parses, else a
/// string).
pub fn apply_override(value: &mut Value, text: &str) -> Result<(), SpecError> {
    let (path, raw) = text
        .split_once('=')
        .ok_or_else(|| SpecError::Override(text.into()))?;
    let keys: Vec<&str> = path.split('.').map(str::trim).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(SpecError::Override(text.into()));
    }
    let new = serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.into()));
    let mut at = value;
    for k in &keys[..keys.len() - 1] {
        let obj = at
            .as_object_mut()
            .ok_or_else(|| SpecError::Override(text.into()))?;
        at = obj
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    at.as_object_mut()
        .ok_or_else(|| SpecError::Override(text.into()))?
        .insert(keys[keys.len() - 1].to_string(), new);
    Ok(())
}

#[cfg(test)]
mod tests;
