//! `manifest.json`: what a bundle holds, described completely enough to rebuild the model
//! and check every byte. Versioned; see `docs/bundle-format.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BundleError;
use crate::featurize::FtcpConfig;
use crate::models::clip::ClipConfig;
use crate::models::hf::SUPPORTED_MODEL_TYPES;

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
    pub tokenizer: TokenizerSection,
    pub structure_input: StructureInputSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexSection>,
    /// Accuracy of f16 storage against the f32 model, measured when the bundle was packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_check: Option<Value>,
    /// Where the model came from (run, checkpoint, epoch, validation metrics); informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Every other entry of the zip with its size and hash.
    pub entries: Vec<EntrySection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model family; `clip` for now.
    pub kind: String,
    /// The full architecture: `ClipConfig` as JSON.
    pub config: ClipConfig,
    pub embed_dim: usize,
    pub parameters: u64,
    /// `f32` or `f16` (weights are f32 in memory either way).
    pub weights_dtype: String,
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
        if self.model.kind != "clip" {
            return bad(format!(
                "model.kind '{}' is not supported (supported: clip)",
                self.model.kind
            ));
        }
        match (
            self.tokenizer.kind.as_str(),
            &self.model.config.text.huggingface,
        ) {
            ("bytes", None) | ("huggingface", Some(_)) => {}
            ("bytes" | "huggingface", _) => {
                return bad(format!(
                    "tokenizer.kind '{}' needs model.config.text.huggingface exactly when it is 'huggingface'",
                    self.tokenizer.kind
                ));
            }
            (other, _) => {
                return bad(format!(
                    "tokenizer.kind '{other}' is not supported (supported: bytes, huggingface)"
                ));
            }
        }
        for dtype in [
            Some(&self.model.weights_dtype),
            self.index.as_ref().map(|i| &i.dtype),
        ]
        .into_iter()
        .flatten()
        {
            if dtype != "f32" && dtype != "f16" {
                return bad(format!("dtype '{dtype}' is not f32 or f16"));
            }
        }
        let c = &self.model.config;
        check_config(c).map_err(|m| BundleError::Manifest(format!("model.config: {m}")))?;
        if self.model.embed_dim != c.text.embed_dim || c.structure.embed_dim != c.text.embed_dim {
            return bad("model.embed_dim disagrees with model.config".into());
        }
        if self.tokenizer.max_len != c.text.max_len {
            return bad("tokenizer.max_len disagrees with model.config.text.max_len".into());
        }
        let input = &self.structure_input;
        if input.dim != c.structure.input_dim {
            return bad(
                "structure_input.dim disagrees with model.config.structure.input_dim".into(),
            );
        }
        if (input.kind == "graph") != c.graph.is_some() {
            return bad(format!(
                "structure_input.kind '{}' needs model.config.graph exactly when it is 'graph'",
                input.kind
            ));
        }
        match (input.kind.as_str(), &input.ftcp) {
            ("vector", None) | ("graph", None) => {}
            ("ftcp", Some(f)) => {
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
                    "structure_input.kind '{kind}' needs ftcp settings exactly when it is 'ftcp' (supported: ftcp, graph, vector)"
                ));
            }
        }
        if let Some(index) = &self.index
            && !(index.structure || index.text)
        {
            return bad("index has neither structure nor text embeddings".into());
        }
        if self.model.parameters != c.parameter_count() {
            return bad(format!(
                "model.parameters is {}, the configuration has {}",
                self.model.parameters,
                c.parameter_count()
            ));
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
    let in_range = |name: &str, v: usize, hi: usize| {
        if (1..=hi).contains(&v) {
            Ok(())
        } else {
            Err(format!("{name} = {v} is outside 1 … {hi}"))
        }
    };
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
        in_range("graph.hidden", g.hidden, 4096)?;
        in_range("graph.layers", g.layers, 32)?;
        in_range("graph.radial_basis", g.radial_basis, 1024)?;
        in_range("graph.output_dim", g.output_dim, 8192)?;
        if g.output_dim != c.structure.input_dim {
            return Err(format!(
                "graph.output_dim {} is not structure.input_dim {}",
                g.output_dim, c.structure.input_dim
            ));
        }
        let graph = &g.graph;
        if !(0.5..=20.0).contains(&graph.cutoff) {
            return Err(format!(
                "graph.graph.cutoff = {} Å is outside 0.5 … 20",
                graph.cutoff
            ));
        }
        if let Some(k) = graph.max_neighbors {
            in_range("graph.graph.max_neighbors", k, 1000)?;
        }
        if !(graph.gaussian_step >= 0.01
            && graph.gaussian_width > 0.0
            && graph.gaussian_width <= graph.cutoff)
        {
            return Err("graph.graph: gaussian_step must be at least 0.01 Å and gaussian_width in (0, cutoff]".into());
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
