//! `manifest.json`: what a bundle holds, described completely enough to rebuild the model
//! and check every byte. Versioned; see `docs/bundle-format.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BundleError;
use crate::featurize::FtcpConfig;
use crate::models::clip::ClipConfig;
use crate::models::ftcp_ssl::{FEATURE_DIM, SslEncoderConfig};
use crate::models::hf::SUPPORTED_MODEL_TYPES;
use crate::models::property::PropertyModelConfig;
use crate::models::structure::StructureEncoderConfig;
use crate::models::tensor_head::TensorHeadConfig;
use crate::train::TargetScale;
use crate::train::spec::Modality;
use crate::train::tensor::TensorTargets;

pub const FORMAT: &str = "xtal-bundle";
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST: &str = "manifest.json";
pub const WEIGHTS: &str = "weights.safetensors";
pub const STRUCTURE_INPUT: &str = "structure_input.safetensors";
pub const INDEX_RECORDS: &str = "index/records.json";
pub const INDEX_EMBEDDINGS: &str = "index/embeddings.safetensors";
pub const CARD: &str = "README.md";
/// A HF text encoder's `tokenizer.json`, as transformers saves it.
pub const TOKENIZER: &str = "tokenizer.json";
/// A CLIP bundle's tensor-regression head (`tensor_head` section).
pub const TENSOR_HEAD: &str = "tensor_head.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The xtal that packed it.
    pub xtal_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub model: ModelSection,
    /// The text side's tokenizer (CLIP bundles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerSection>,
    pub structure_input: StructureInputSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexSection>,
    /// A tensor-regression head over the CLIP model's embeddings (CLIP bundles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_head: Option<TensorHeadSection>,
    /// Accuracy of f16 storage against the f32 model, measured when the bundle was packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_check: Option<Value>,
    /// The same for int8 storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_check: Option<Value>,
    /// Where the model came from (run, checkpoint, epoch, validation metrics); informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Every other entry of the zip with its size and hash.
    pub entries: Vec<EntrySection>,
}

/// The model a bundle holds: `model.kind` with its `model.config` (and `model.target`).
#[derive(Debug, Clone)]
pub enum BundledModel {
    /// Structure–text CLIP (`kind: clip`, `config`: `ClipConfig`).
    Clip(ClipConfig),
    /// A graph encoder predicting one scalar property (`kind: property`, `config`:
    /// `PropertyModelConfig`, `target`: what it predicts and in which units).
    Property(PropertyModelConfig, PropertyTarget),
    /// The six self-supervised FTCP blocks (`kind: ssl`, `config`: `SslEncoderConfig`):
    /// FTCP tensor → 2048-D features.
    Ssl(SslEncoderConfig),
}

impl BundledModel {
    /// The manifest's `model.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Clip(_) => "clip",
            Self::Property(..) => "property",
            Self::Ssl(_) => "ssl",
        }
    }

    pub fn parameter_count(&self) -> u64 {
        match self {
            Self::Clip(c) => c.parameter_count(),
            Self::Property(c, _) => c.parameter_count(),
            Self::Ssl(c) => c.parameter_count(),
        }
    }

    /// Width of the structure embedding (CLIP's shared space; a property model's encoder;
    /// the SSL features).
    pub fn embed_dim(&self) -> usize {
        match self {
            Self::Clip(c) => c.text.embed_dim,
            Self::Property(c, _) => c.encoder.output_dim,
            Self::Ssl(_) => FEATURE_DIM,
        }
    }

    /// `structure_input.dim`: what the structure side reads after the bundle's input
    /// pipeline (a vector, or the graph encoder's output); for SSL blocks, which read the
    /// FTCP tensor itself, the layout decides (`None`).
    pub fn structure_input_dim(&self) -> Option<usize> {
        match self {
            Self::Clip(c) => Some(c.structure.input_dim),
            Self::Property(c, _) => Some(c.encoder.output_dim),
            Self::Ssl(_) => None,
        }
    }

    /// The graph encoder's settings, for a bundle that reads CIFs as crystal graphs.
    pub fn graph_encoder(&self) -> Option<&StructureEncoderConfig> {
        match self {
            Self::Clip(c) => c.graph.as_ref(),
            Self::Property(c, _) => Some(&c.encoder),
            Self::Ssl(_) => None,
        }
    }
}

/// What a property bundle predicts: the model's output is in standardised units,
/// `prediction = scale.mean + scale.std × output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyTarget {
    /// The records' property it was trained on (e.g. `band_gap`).
    pub name: String,
    /// The records' `source` it was trained on (a property can mean different things per
    /// source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The training targets' mean and standard deviation.
    pub scale: TargetScale,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawModelSection", into = "RawModelSection")]
pub struct ModelSection {
    pub model: BundledModel,
    pub embed_dim: usize,
    pub parameters: u64,
    /// `f32`, `f16` or `int8` (weights are f32 in memory whatever the storage).
    pub weights_dtype: String,
}

/// `model` as stored: the configuration's type depends on `kind`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelSection {
    /// `clip`, `property` or `ssl`.
    kind: String,
    /// The full architecture: `ClipConfig`, `PropertyModelConfig` or `SslEncoderConfig` as
    /// JSON.
    config: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<PropertyTarget>,
    embed_dim: usize,
    parameters: u64,
    weights_dtype: String,
}

impl TryFrom<RawModelSection> for ModelSection {
    type Error = String;

    fn try_from(raw: RawModelSection) -> Result<Self, String> {
        let config_error = |e: serde_json::Error| format!("model.config: {e}");
        let model = match (raw.kind.as_str(), raw.target) {
            ("clip", None) => {
                BundledModel::Clip(serde_json::from_value(raw.config).map_err(config_error)?)
            }
            ("property", Some(target)) => BundledModel::Property(
                serde_json::from_value(raw.config).map_err(config_error)?,
                target,
            ),
            ("ssl", None) => {
                BundledModel::Ssl(serde_json::from_value(raw.config).map_err(config_error)?)
            }
            ("clip" | "property" | "ssl", _) => {
                return Err(format!(
                    "model.target is needed exactly when model.kind is 'property' (found kind '{}')",
                    raw.kind
                ));
            }
            (other, _) => {
                return Err(format!(
                    "model.kind '{other}' is not supported (supported: clip, property, ssl)"
                ));
            }
        };
        Ok(Self {
            model,
            embed_dim: raw.embed_dim,
            parameters: raw.parameters,
            weights_dtype: raw.weights_dtype,
        })
    }
}

impl From<ModelSection> for RawModelSection {
    fn from(m: ModelSection) -> Self {
        let kind = m.model.kind().to_string();
        let (config, target) = match m.model {
            BundledModel::Clip(c) => (serde_json::to_value(c), None),
            BundledModel::Property(c, t) => (serde_json::to_value(c), Some(t)),
            BundledModel::Ssl(c) => (serde_json::to_value(c), None),
        };
        Self {
            kind,
            // Configurations are plain data; serialising them cannot fail.
            config: config.unwrap_or(Value::Null),
            target,
            embed_dim: m.embed_dim,
            parameters: m.parameters,
            weights_dtype: m.weights_dtype,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSection {
    /// `bytes`: xtal's byte-level tokenizer (no tokenizer.json needed); `huggingface`: the
    /// `tokenizer.json` entry of the HF text encoder in `model.config.text.huggingface`.
    pub kind: String,
    pub max_len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructureInputSection {
    /// `ftcp`: the bundle embeds CIFs itself (FTCP → row min–max → standardise);
    /// `ftcp_tensor`: it makes the FTCP tensor of a CIF, which the SSL blocks read with its
    /// row min–max scaling;
    /// `graph`: it embeds CIFs through its graph encoder (crystal graph → encoder → `dim`);
    /// `vector`: precomputed structure vectors of `dim` (e.g. EquiformerV2), standardised.
    pub kind: String,
    pub dim: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftcp: Option<FtcpConfig>,
    /// Where the element table came from (`default` or the atom_init.json it was read from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_table: Option<String>,
    /// Training rows the normalisers were fitted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSection {
    pub entries: usize,
    /// `f32` or `f16`.
    pub dtype: String,
    pub structure: bool,
    pub text: bool,
    pub map: bool,
    /// The dataset it was built from; informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// A head from `xtal train tensor`, stored in `tensor_head.safetensors` (f32 or f16 as the
/// model): it reads the CLIP model's `modality` embedding and predicts `targets.mode`'s
/// components, `value = targets.mean + targets.std × output`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorHeadSection {
    /// `graph` (the structure embedding) or `text`.
    pub modality: Modality,
    pub config: TensorHeadConfig,
    pub targets: TensorTargets,
    pub parameters: u64,
}

impl TensorHeadSection {
    /// Bounds, and a head that fits the model's embeddings and its own targets.
    pub fn check(&self, embed_dim: usize) -> Result<(), String> {
        let c = &self.config;
        c.check().map_err(|m| format!("config.{m}"))?;
        if c.input_dim != embed_dim {
            return Err(format!(
                "config.input_dim {} is not the model's embed_dim {embed_dim}",
                c.input_dim
            ));
        }
        let t = &self.targets;
        let k = t.mode.indices().len();
        if c.output_dim != k || t.mean.len() != k || t.std.len() != k {
            return Err(format!(
                "targets.mode needs {k} components; config.output_dim is {}, targets.mean and targets.std have {} and {}",
                c.output_dim,
                t.mean.len(),
                t.std.len()
            ));
        }
        if !t
            .mean
            .iter()
            .zip(&t.std)
            .all(|(m, s)| m.is_finite() && s.is_finite() && *s > 0.0)
        {
            return Err("targets: every mean and std must be finite, every std positive".into());
        }
        if self.parameters != c.parameter_count() {
            return Err(format!(
                "parameters is {}, the configuration has {}",
                self.parameters,
                c.parameter_count()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySection {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    /// Parses and checks format and version before anything else, so that a newer bundle
    /// gets "unsupported version", not a confusing field error.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let bad = |m: String| BundleError::Manifest(m);
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        match value.get("format").and_then(Value::as_str) {
            Some(FORMAT) => {}
            other => {
                return Err(bad(format!(
                    "format is {other:?}, expected \"{FORMAT}\" (not an xtal bundle)"
                )));
            }
        }
        let version = value
            .get("format_version")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("format_version is missing".into()))?;
        if version != FORMAT_VERSION as u64 {
            return Err(BundleError::Version {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Internal consistency: the known kinds, dims that agree, bounded sizes.
    fn check(&self) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::Manifest(m));
        let weights = &self.model.weights_dtype;
        if super::Precision::parse(weights).is_none() {
            return bad(format!(
                "model.weights_dtype '{weights}' is not f32, f16 or int8"
            ));
        }
        if let Some(index) = &self.index
            && index.dtype != "f32"
            && index.dtype != "f16"
        {
            return bad(format!("index.dtype '{}' is not f32 or f16", index.dtype));
        }
        let model = &self.model.model;
        match model {
            BundledModel::Clip(c) => self.check_clip(c)?,
            BundledModel::Property(c, target) => {
                check_property(c, target)
                    .map_err(|m| BundleError::Manifest(format!("model: {m}")))?;
                if self.tokenizer.is_some() || self.index.is_some() {
                    return bad("a property bundle has no tokenizer and no index".into());
                }
                if self.structure_input.kind != "graph" {
                    return bad("a property bundle's structure_input.kind must be 'graph'".into());
                }
            }
            BundledModel::Ssl(c) => {
                c.check()
                    .map_err(|m| BundleError::Manifest(format!("model.config: {m}")))?;
                if self.tokenizer.is_some() || self.index.is_some() {
                    return bad("an SSL bundle has no tokenizer and no index".into());
                }
                let input = &self.structure_input;
                if input.kind != "ftcp_tensor" {
                    return bad("an SSL bundle's structure_input.kind must be 'ftcp_tensor'".into());
                }
                if let Some(f) = &input.ftcp
                    && f.element_columns() != c.element_columns()
                {
                    return bad(format!(
                        "the blocks read {} element columns, structure_input.ftcp has {}",
                        c.element_columns(),
                        f.element_columns()
                    ));
                }
            }
        }
        if let Some(head) = &self.tensor_head {
            if !matches!(model, BundledModel::Clip(_)) {
                return bad("tensor_head: only a CLIP bundle carries a tensor head".into());
            }
            head.check(self.model.embed_dim)
                .map_err(|m| BundleError::Manifest(format!("tensor_head.{m}")))?;
        }
        if self.structure_input.kind == "ftcp_tensor" && !matches!(model, BundledModel::Ssl(_)) {
            return bad("structure_input.kind 'ftcp_tensor' is read by SSL bundles only".into());
        }
        if self.model.embed_dim != model.embed_dim() {
            return bad("model.embed_dim disagrees with model.config".into());
        }
        let input = &self.structure_input;
        if model
            .structure_input_dim()
            .is_some_and(|dim| dim != input.dim)
        {
            return bad("structure_input.dim disagrees with model.config".into());
        }
        let encoder = model.graph_encoder();
        if (input.kind == "graph") != encoder.is_some() {
            return bad(format!(
                "structure_input.kind '{}' needs a graph encoder in model.config exactly when it is 'graph'",
                input.kind
            ));
        }
        match (input.kind.as_str(), &input.ftcp) {
            ("vector", None) | ("graph", None) => {}
            ("ftcp" | "ftcp_tensor", Some(f)) => {
                if f.max_sites > 10_000 || f.max_elements > 103 || f.pad_rows > 1000 {
                    return bad("structure_input.ftcp is out of range".into());
                }
                if f.rows() * f.cols() != input.dim {
                    return bad(format!(
                        "structure_input: FTCP {} × {} is not dim {}",
                        f.rows(),
                        f.cols(),
                        input.dim
                    ));
                }
            }
            (kind, _) => {
                return bad(format!(
                    "structure_input.kind '{kind}' needs ftcp settings exactly when it is 'ftcp' or 'ftcp_tensor' (supported: ftcp, ftcp_tensor, graph, vector)"
                ));
            }
        }
        if let Some(index) = &self.index
            && !(index.structure || index.text)
        {
            return bad("index has neither structure nor text embeddings".into());
        }
        if self.model.parameters != model.parameter_count() {
            return bad(format!(
                "model.parameters is {}, the configuration has {}",
                self.model.parameters,
                model.parameter_count()
            ));
        }
        Ok(())
    }

    fn check_clip(&self, c: &ClipConfig) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::Manifest(m));
        let Some(tokenizer) = &self.tokenizer else {
            return bad("a CLIP bundle needs a tokenizer section".into());
        };
        match (tokenizer.kind.as_str(), &c.text.huggingface) {
            ("bytes", None) | ("huggingface", Some(_)) => {}
            ("bytes" | "huggingface", _) => {
                return bad(format!(
                    "tokenizer.kind '{}' needs model.config.text.huggingface exactly when it is 'huggingface'",
                    tokenizer.kind
                ));
            }
            (other, _) => {
                return bad(format!(
                    "tokenizer.kind '{other}' is not supported (supported: bytes, huggingface)"
                ));
            }
        }
        check_config(c).map_err(|m| BundleError::Manifest(format!("model.config: {m}")))?;
        if c.structure.embed_dim != c.text.embed_dim {
            return bad("model.config: structure.embed_dim is not text.embed_dim".into());
        }
        if tokenizer.max_len != c.text.max_len {
            return bad("tokenizer.max_len disagrees with model.config.text.max_len".into());
        }
        Ok(())
    }

    pub fn entry(&self, name: &str) -> Option<&EntrySection> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Bounds that keep a hostile configuration from allocating without limit: the parameter
/// count must then match the weights, whose size the archive limits already bound.
pub fn check_config(c: &ClipConfig) -> Result<(), String> {
    let t = &c.text;
    in_range("text.width", t.width, 8192)?;
    in_range("text.layers", t.layers, 96)?;
    in_range("text.heads", t.heads, 128)?;
    in_range("text.max_len", t.max_len, 8192)?;
    in_range("text.embed_dim", t.embed_dim, 8192)?;
    if let Some(hf) = &t.huggingface {
        if !SUPPORTED_MODEL_TYPES.contains(&hf.model_type.as_str()) {
            return Err(format!(
                "text.huggingface.model_type '{}' is not supported (supported: {})",
                hf.model_type,
                SUPPORTED_MODEL_TYPES.join(", ")
            ));
        }
        hf.encoder
            .check()
            .map_err(|m| format!("text.huggingface.encoder: {m}"))?;
    }
    in_range("structure.input_dim", c.structure.input_dim, 1 << 22)?;
    in_range("structure.embed_dim", c.structure.embed_dim, 8192)?;
    if c.structure.hidden.len() > 16 {
        return Err("structure.hidden has more than 16 layers".into());
    }
    for &h in &c.structure.hidden {
        in_range("structure.hidden", h, 1 << 16)?;
    }
    if let Some(g) = &c.graph {
        check_graph_encoder(g).map_err(|m| format!("graph.{m}"))?;
        if g.output_dim != c.structure.input_dim {
            return Err(format!(
                "graph.output_dim {} is not structure.input_dim {}",
                g.output_dim, c.structure.input_dim
            ));
        }
    }
    if !t.width.is_multiple_of(t.heads) {
        return Err(format!(
            "text.width {} is not divisible by text.heads {}",
            t.width, t.heads
        ));
    }
    if t.max_len < 3 {
        return Err("text.max_len must hold at least one byte besides start and end".into());
    }
    if t.max_len * t.width > 1 << 24 {
        return Err("text.max_len × text.width is too large".into());
    }
    if !(0.0..1.0).contains(&t.dropout) {
        return Err("text.dropout must be in [0, 1)".into());
    }
    Ok(())
}

fn in_range(name: &str, v: usize, hi: usize) -> Result<(), String> {
    if (1..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} = {v} is outside 1 … {hi}"))
    }
}

/// Bounds of a graph encoder's configuration (keys relative to it).
fn check_graph_encoder(g: &StructureEncoderConfig) -> Result<(), String> {
    in_range("hidden", g.hidden, 4096)?;
    in_range("layers", g.layers, 32)?;
    in_range("radial_basis", g.radial_basis, 1024)?;
    in_range("output_dim", g.output_dim, 8192)?;
    let graph = &g.graph;
    if !(0.5..=20.0).contains(&graph.cutoff) {
        return Err(format!(
            "graph.cutoff = {} Å is outside 0.5 … 20",
            graph.cutoff
        ));
    }
    if let Some(k) = graph.max_neighbors {
        in_range("graph.max_neighbors", k, 1000)?;
    }
    if !(graph.gaussian_step >= 0.01
        && graph.gaussian_width > 0.0
        && graph.gaussian_width <= graph.cutoff)
    {
        return Err(
            "graph: gaussian_step must be at least 0.01 Å and gaussian_width in (0, cutoff]".into(),
        );
    }
    Ok(())
}

/// Bounds of a property bundle's model and a usable target scaling.
pub fn check_property(c: &PropertyModelConfig, target: &PropertyTarget) -> Result<(), String> {
    check_graph_encoder(&c.encoder).map_err(|m| format!("config.encoder.{m}"))?;
    in_range("config.head_hidden", c.head_hidden, 1 << 16)?;
    let scale = target.scale;
    if !(scale.mean.is_finite() && scale.std.is_finite() && scale.std > 0.0) {
        return Err(format!(
            "target.scale: mean {} and std {} must be finite, std positive",
            scale.mean, scale.std
        ));
    }
    if target.name.is_empty() || target.name.len() > 256 {
        return Err("target.name must be 1 … 256 bytes".into());
    }
    Ok(())
}
