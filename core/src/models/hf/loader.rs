//! A HF model folder → [`HfEncoder`] + [`HfTokenizer`]: `config.json` dispatch, safetensors
//! (single or sharded; f32, f16 or bf16) mapped through each family's name table, every
//! shape checked before anything is applied.

use std::collections::HashMap;

use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::config_keys::ConfigKeys;
use super::{
    HfEncoder, HfEncoderConfig, HfError, HfTokenizer, SUPPORTED_MODEL_TYPES, bert::BertConfig,
    deberta_v2::DebertaV2Config, distilbert, t5::T5Config,
};

/// Reads the files of one model folder: `read("config.json")` is `Ok(None)` when the file
/// does not exist. `folder` names the folder in errors.
pub struct HfFiles<'a> {
    pub folder: String,
    pub read: &'a dyn Fn(&str) -> std::io::Result<Option<Vec<u8>>>,
}

impl HfFiles<'_> {
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.folder.trim_end_matches('/'))
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, HfError> {
        (self.read)(name).map_err(|e| HfError::file(self.path(name), e.to_string()))
    }

    fn require(&self, name: &str, why: &str) -> Result<Vec<u8>, HfError> {
        self.get(name)?
            .ok_or_else(|| HfError::file(self.path(name), format!("missing ({why})")))
    }
}

/// A loaded model folder.
#[derive(Debug)]
pub struct HfLoaded<B: Backend> {
    pub config: HfEncoderConfig,
    pub model_type: String,
    pub encoder: HfEncoder<B>,
    pub tokenizer: HfTokenizer,
}

/// Loads config, weights and tokenizer; texts are cut to `max_len` tokens (or fewer if the
/// model's positions end sooner).
pub fn load<B: Backend>(
    files: &HfFiles,
    max_len: usize,
    device: &B::Device,
) -> Result<HfLoaded<B>, HfError> {
    let (model_type, config, weights) = read_folder(files)?;
    let encoder = load_weights(config.init::<B>(device), &weights)?;
    let tokenizer = HfTokenizer::from_bytes(
        &files.require("tokenizer.json", "the fast tokenizer transformers saves")?,
        &files.path("tokenizer.json"),
        config.vocab_size(),
        config.pad_token_id(),
        max_len.min(config.max_tokens()),
    )?;
    Ok(HfLoaded {
        config,
        model_type,
        encoder,
        tokenizer,
    })
}

/// `model_type`, the architecture exactly as [`load`] builds it — `config.json` plus what
/// only the weights tell (whether a BERT-family checkpoint carries a pooler) — and the weights.
pub fn read_folder(files: &HfFiles) -> Result<(String, HfEncoderConfig, Weights), HfError> {
    let config_bytes = files.require("config.json", "the model's configuration")?;
    let (model_type, mut config) = parse_config(&config_bytes, &files.path("config.json"))?;
    let weights = Weights::read(files)?;
    if let HfEncoderConfig::Bert(c) = &mut config {
        c.pooler = weights.contains_suffix("pooler.dense.weight");
    }
    Ok((model_type, config, weights))
}

/// `config.json` → (`model_type`, the architecture's configuration).
pub fn parse_config(bytes: &[u8], file: &str) -> Result<(String, HfEncoderConfig), HfError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| HfError::file(file, format!("not valid JSON ({e})")))?;
    let map = value
        .as_object()
        .ok_or_else(|| HfError::file(file, "expected a JSON object"))?;
    let keys = ConfigKeys::new(file, map);
    let model_type = keys.string("model_type", "")?;
    let config = match model_type.as_str() {
        "bert" | "roberta" | "xlm-roberta" | "electra" => {
            HfEncoderConfig::Bert(BertConfig::from_keys(&keys, &model_type)?)
        }
        "distilbert" => HfEncoderConfig::DistilBert(distilbert::config(&keys)?),
        "t5" | "mt5" => HfEncoderConfig::T5(T5Config::from_keys(&keys)?),
        "deberta-v2" => HfEncoderConfig::DebertaV2(DebertaV2Config::from_keys(&keys)?),
        other => {
            return Err(keys.error(format!(
                "model_type `{other}` is not supported; supported: {}",
                SUPPORTED_MODEL_TYPES.join(", ")
            )));
        }
    };
    config.check().map_err(|m| HfError::file(file, m))?;
    Ok((model_type, config))
}

/// The safetensors shards of a folder, parsed lazily per tensor (checkpoints also carry
/// tensors we do not need, such as int64 `position_ids` buffers or a T5 decoder).
pub struct Weights {
    shards: Vec<(String, Vec<u8>)>,
    /// tensor name → shard
    names: HashMap<String, usize>,
}

impl Weights {
    pub fn read(files: &HfFiles) -> Result<Self, HfError> {
        let files_in_order: Vec<String> = match files.get("model.safetensors.index.json")? {
            Some(index) => {
                let path = files.path("model.safetensors.index.json");
                let v: Value = serde_json::from_slice(&index)
                    .map_err(|e| HfError::file(&path, format!("not valid JSON ({e})")))?;
                let map = v["weight_map"].as_object().ok_or_else(|| {
                    HfError::file(&path, "no `weight_map` object (tensor name → shard file)")
                })?;
                let mut shards: Vec<String> = Vec::new();
                for (tensor, file) in map {
                    let file = file.as_str().ok_or_else(|| {
                        HfError::file(&path, format!("weight_map[{tensor}] is not a file name"))
                    })?;
                    if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                        return Err(HfError::file(
                            &path,
                            format!("weight_map[{tensor}] = `{file}` leaves the folder"),
                        ));
                    }
                    if !shards.iter().any(|s| s == file) {
                        shards.push(file.to_string());
                    }
                }
                shards
            }
            None => vec!["model.safetensors".into()],
        };
        let mut shards = Vec::new();
        let mut names = HashMap::new();
        for file in files_in_order {
            let bytes = match files.get(&file)? {
                Some(b) => b,
                None if file == "model.safetensors" => {
                    return Err(HfError::file(
                        files.path(&file),
                        "missing, and there is no model.safetensors.index.json either (pytorch_model.bin is not read: save the model with safe_serialization)",
                    ));
                }
                None => {
                    return Err(HfError::file(
                        files.path(&file),
                        "missing (listed in model.safetensors.index.json)",
                    ));
                }
            };
            let path = files.path(&file);
            let st = SafeTensors::deserialize(&bytes)
                .map_err(|e| HfError::file(&path, format!("not a valid safetensors file ({e})")))?;
            for name in st.names() {
                names.insert(name.to_string(), shards.len());
            }
            shards.push((path, bytes));
        }
        Ok(Weights { shards, names })
    }

    fn contains_suffix(&self, suffix: &str) -> bool {
        self.names.keys().any(|n| n.ends_with(suffix))
    }

    /// The first of `candidates` present, as f32 with its shape and file.
    fn get(&self, candidates: &[String]) -> Result<Option<Found>, HfError> {
        let Some((name, &shard)) = candidates
            .iter()
            .find_map(|c| self.names.get_key_value(c.as_str()))
        else {
            return Ok(None);
        };
        let (file, bytes) = &self.shards[shard];
        let bad = |reason: String| HfError::Tensor {
            file: file.clone(),
            tensor: name.clone(),
            reason,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let Some(values) = float_values(&view) else {
            return Err(bad(format!(
                "stored as {:?}; expected F32, F16 or BF16",
                view.dtype()
            )));
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("value {i} is {}", values[i])));
        }
        Ok(Some(Found {
            name: name.clone(),
            file: file.clone(),
            shape: view.shape().to_vec(),
            values,
        }))
    }
}

/// One tensor read from a shard, under the name it was found by.
struct Found {
    name: String,
    file: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Copies the folder's weights into `encoder` (built from its config): every parameter must
/// be found under its HF name (or a task checkpoint's prefixed name) with the shape the
/// config implies; HF linear weights `[out, in]` are transposed to burn's `[in, out]`.
pub fn load_weights<B: Backend>(
    mut encoder: HfEncoder<B>,
    weights: &Weights,
) -> Result<HfEncoder<B>, HfError> {
    let params = encoder.collect(None, None, true);
    let mut snapshots = Vec::with_capacity(params.len());
    for p in &params {
        let path = p.full_path();
        let ours: Vec<usize> = p.shape.to_vec();
        let hf = encoder.hf_name(&path).ok_or_else(|| HfError::Tensor {
            file: "(name table)".into(),
            tensor: path.clone(),
            reason: "no HF name for this parameter".into(),
        })?;
        let mut candidates: Vec<String> = Vec::new();
        for name in hf.split('|') {
            candidates.push(name.to_string());
            for prefix in encoder.hf_prefixes() {
                candidates.push(format!("{prefix}{name}"));
            }
        }
        let Found {
            name,
            file,
            shape,
            values,
        } = weights.get(&candidates)?.ok_or_else(|| HfError::Tensor {
            file: weights
                .shards
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tensor: hf.replace('|', "` or `"),
            reason: "missing".into(),
        })?;
        let linear = p.container_type() == "Struct:Linear" && ours.len() == 2;
        let expected: Vec<usize> = if linear {
            vec![ours[1], ours[0]]
        } else {
            ours.clone()
        };
        if shape != expected {
            return Err(HfError::Tensor {
                file,
                tensor: name,
                reason: format!("shape {shape:?}, but config.json implies {expected:?}"),
            });
        }
        let data = if linear {
            TensorData::new(transpose(&values, shape[0], shape[1]), [shape[1], shape[0]])
        } else {
            TensorData::new(values, shape.clone())
        };
        snapshots.push(TensorSnapshot::from_data(
            data,
            p.path_stack.clone().unwrap_or_default(),
            p.container_stack.clone().unwrap_or_default(),
            p.tensor_id.unwrap_or_default(),
        ));
    }
    let result = encoder.apply(snapshots, None, None, true);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(HfError::file(
            "(model)",
            format!(
                "{} tensors could not be applied: {:?}",
                result.errors.len() + result.missing.len(),
                result.errors.iter().take(3).collect::<Vec<_>>()
            ),
        ));
    }
    Ok(encoder)
}

/// A row-major `rows × cols` matrix, transposed.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// A safetensors tensor's values as f32, from F32, F16 or BF16 (little-endian, as the format
/// stores them); `None` for any other type.
pub(crate) fn float_values(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}
