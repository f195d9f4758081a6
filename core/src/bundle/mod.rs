//! Portable checkpoint bundles: one zip that native xtal and the browser load from bytes,
//! verify and search with. The format is described in `docs/bundle-format.md`.
//!
//! ```text
//! manifest.json                  format, version, model config, normalisers, sizes, sha256s
//! weights.safetensors            the model (f32, f16 or int8 matrices)
//! structure_input.safetensors    standardisation and/or FTCP min–max, element table
//! tokenizer.json                 a HuggingFace text encoder's tokenizer (byte-level: none)
//! tensor_head.safetensors        optional: a tensor-regression head over the CLIP embeddings
//! index/records.json             optional: ids, formulas, descriptions
//! index/embeddings.safetensors   optional: structure / text embeddings, 2-D map
//! README.md                      optional model card
//! ```
//!
//! Every bundle is untrusted input: [`Bundle::from_bytes`] refuses unsafe or oversized
//! entries, unknown versions, hash, size and shape mismatches before anything is built.

mod archive;
mod arrays;
mod index;
mod manifest;
mod structure_input;
mod weights;
mod zero_shot;

pub use archive::{Entry, Limits, sha256_hex};
pub use index::{Hit, IndexRecords, RetrievalIndex, Side, dot, top_k};
pub use manifest::{
    BundledModel, CARD, EntrySection, FORMAT, FORMAT_VERSION, INDEX_EMBEDDINGS, INDEX_RECORDS,
    IndexSection, MANIFEST, Manifest, ModelSection, PropertyTarget, STRUCTURE_INPUT,
    StructureInputSection, TENSOR_HEAD, TOKENIZER, TensorHeadSection, TokenizerSection, WEIGHTS,
    check_config, check_property,
};
pub use structure_input::{FtcpInput, GraphInput, StructureInput};
pub use weights::{Precision, StoredTensor, read_header};
pub use zero_shot::{PhraseScore, temperature_scale, zero_shot};

use burn::prelude::*;

use crate::data::StructureItem;
use crate::featurize::{GraphBatch, GraphTensors};
use crate::models::clip::{Clip, ClipConfig, StructureBatch, TextTokenizer};
use crate::models::ftcp_ssl::{FEATURE_DIM, SslEncoder, SslEncoderConfig};
use crate::models::hf::HfError;
use crate::models::property::{PropertyModel, PropertyModelConfig};
use crate::models::tensor_head::{TensorHead, TensorHeadConfig};
use crate::train::spec::Modality;
use crate::train::ssl::SslData;
use crate::train::tensor::TensorTargets;
use crate::train::to_host;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a bundle: {0}")]
    NotABundle(String),
    #[error("entry '{name}': {reason}")]
    Entry { name: String, reason: String },
    #[error("manifest.json: {0}")]
    Manifest(String),
    #[error("bundle format version {found} is not supported; this xtal reads version {supported}")]
    Version { found: u64, supported: u32 },
    #[error("{0}")]
    Input(String),
    #[error("the bundle holds a {found} model; this needs a {needed} bundle")]
    Kind {
        found: &'static str,
        needed: &'static str,
    },
    #[error("cannot write the bundle: {0}")]
    Write(String),
}

/// A verified bundle in memory. The model itself is built per backend by [`Bundle::model`].
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub structure_input: StructureInput,
    pub index: Option<RetrievalIndex>,
    pub card: Option<String>,
    /// A CLIP bundle's text tokenizer (a HF one from the `tokenizer.json` entry).
    tokenizer: Option<TextTokenizer>,
    /// The `tokenizer.json` entry as stored (kept for repacking).
    tokenizer_json: Option<Vec<u8>>,
    /// The weights entry as stored; its tensors' names, dtypes and shapes are in `tensors`.
    weights: Vec<u8>,
    pub tensors: Vec<StoredTensor>,
    /// The tensor head's entry as stored, with its header.
    tensor_head: Option<(Vec<u8>, Vec<StoredTensor>)>,
    /// Size of the bundle in bytes.
    pub size: usize,
}

/// The model [`pack`] stores, with what its kind needs besides weights.
pub enum PackModel<'a, B: Backend> {
    Clip {
        model: &'a Clip<B>,
        config: &'a ClipConfig,
        /// The `tokenizer.json` of a HF text encoder (required exactly then).
        tokenizer_json: Option<&'a [u8]>,
    },
    Property {
        model: &'a PropertyModel<B>,
        config: &'a PropertyModelConfig,
        target: PropertyTarget,
    },
    /// The six SSL blocks; the structure input must be [`StructureInput::FtcpTensor`].
    Ssl {
        model: &'a SslEncoder<B>,
        config: &'a SslEncoderConfig,
    },
}

/// A tensor-regression head packed with its CLIP model.
pub struct PackTensorHead<'a, B: Backend> {
    pub model: &'a TensorHead<B>,
    pub config: &'a TensorHeadConfig,
    pub targets: TensorTargets,
    pub modality: Modality,
}

/// Everything [`pack`] writes besides what it derives (hashes, sizes, parameter count).
pub struct PackInput<'a, B: Backend> {
    pub model: PackModel<'a, B>,
    /// CLIP bundles only.
    pub tensor_head: Option<PackTensorHead<'a, B>>,
    pub structure_input: &'a StructureInput,
    pub element_table_source: Option<String>,
    pub fitted_on: Option<usize>,
    pub index: Option<(&'a RetrievalIndex, Option<String>)>,
    pub card: Option<String>,
    /// Weights as f32, f16 or int8; the index is f16 unless the weights are f32.
    pub precision: Precision,
    pub created: String,
    pub xtal_version: String,
    pub source: Option<serde_json::Value>,
    /// What the reduced precision changes, measured by the packer (f16 and int8 only).
    pub precision_check: Option<serde_json::Value>,
}

/// Who wrote a bundle, when, and from what (the front ends know; core has no clock).
pub struct Provenance {
    pub created: String,
    pub xtal_version: String,
    pub source: serde_json::Value,
}

/// A bundle's bytes: manifest first (so a reader can stop early), then the entries.
pub fn pack<B: Backend>(input: PackInput<'_, B>) -> Result<Vec<u8>, BundleError> {
    let (model, weights, tokenizer_json, tokenizer) = match input.model {
        PackModel::Clip {
            model,
            config: c,
            tokenizer_json,
        } => {
            check_config(c).map_err(BundleError::Write)?;
            // The tokenizer is checked as a reader will check it (ids within the vocabulary).
            c.text
                .text_tokenizer(tokenizer_json.map(|b| (b, TOKENIZER)))
                .map_err(|e| BundleError::Write(e.to_string()))?;
            if c.text.huggingface.is_none() && tokenizer_json.is_some() {
                return Err(BundleError::Write(
                    "a byte-level text encoder has no tokenizer.json".into(),
                ));
            }
            let tokenizer = TokenizerSection {
                kind: if c.text.huggingface.is_some() {
                    "huggingface"
                } else {
                    "bytes"
                }
                .into(),
                max_len: c.text.max_len,
            };
            (
                BundledModel::Clip(c.clone()),
                weights::to_safetensors(model, input.precision)?,
                tokenizer_json,
                Some(tokenizer),
            )
        }
        PackModel::Property {
            model,
            config,
            target,
        } => {
            check_property(config, &target).map_err(BundleError::Write)?;
            if input.index.is_some() {
                return Err(BundleError::Write(
                    "a property bundle has no retrieval index".into(),
                ));
            }
            (
                BundledModel::Property(config.clone(), target),
                weights::to_safetensors(model, input.precision)?,
                None,
                None,
            )
        }
        PackModel::Ssl { model, config } => {
            config.check().map_err(BundleError::Write)?;
            if input.index.is_some() {
                return Err(BundleError::Write(
                    "an SSL bundle has no retrieval index".into(),
                ));
            }
            if !matches!(input.structure_input, StructureInput::FtcpTensor(_)) {
                return Err(BundleError::Write(
                    "the SSL blocks read the FTCP tensor (structure input 'ftcp_tensor')".into(),
                ));
            }
            (
                BundledModel::Ssl(config.clone()),
                weights::to_safetensors(model, input.precision)?,
                None,
                None,
            )
        }
    };
    let mut entries = vec![
        Entry {
            name: WEIGHTS.into(),
            data: weights,
        },
        Entry {
            name: STRUCTURE_INPUT.into(),
            data: input.structure_input.to_entry()?,
        },
    ];
    let tensor_head = match input.tensor_head {
        None => None,
        Some(head) => {
            let section = TensorHeadSection {
                modality: head.modality,
                config: head.config.clone(),
                targets: head.targets,
                parameters: head.config.parameter_count(),
            };
            if !matches!(model, BundledModel::Clip(_)) {
                return Err(BundleError::Write(
                    "only a CLIP bundle carries a tensor head".into(),
                ));
            }
            section
                .check(model.embed_dim())
                .map_err(|m| BundleError::Write(format!("tensor head: {m}")))?;
            entries.push(Entry {
                name: TENSOR_HEAD.into(),
                data: weights::to_safetensors(head.model, input.precision)?,
            });
            Some(section)
        }
    };
    if let Some(json) = tokenizer_json {
        entries.push(Entry {
            name: TOKENIZER.into(),
            data: json.to_vec(),
        });
    }
    let index_section = match input.index {
        None => None,
        Some((index, dataset)) => {
            let (records, embeddings) = index.to_entries(input.precision.index_half())?;
            entries.push(Entry {
                name: INDEX_RECORDS.into(),
                data: records,
            });
            entries.push(Entry {
                name: INDEX_EMBEDDINGS.into(),
                data: embeddings,
            });
            Some(IndexSection {
                entries: index.len(),
                dtype: if input.precision.index_half() {
                    "f16"
                } else {
                    "f32"
                }
                .into(),
                structure: index.structure.is_some(),
                text: index.text.is_some(),
                map: index.map.is_some(),
                dataset,
            })
        }
    };
    if let Some(card) = input.card {
        entries.push(Entry {
            name: CARD.into(),
            data: card.into_bytes(),
        });
    }
    let structure_dim = match input.structure_input {
        StructureInput::FtcpTensor(f) => f.config.rows() * f.config.cols(),
        _ => model.structure_input_dim().unwrap_or_default(),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        xtal_version: input.xtal_version,
        created: input.created,
        model: ModelSection {
            embed_dim: model.embed_dim(),
            parameters: model.parameter_count(),
            weights_dtype: input.precision.name().into(),
            model,
        },
        tokenizer,
        structure_input: StructureInputSection {
            kind: input.structure_input.kind().into(),
            dim: structure_dim,
            ftcp: match input.structure_input {
                StructureInput::Ftcp(f, _) | StructureInput::FtcpTensor(f) => Some(f.config),
                _ => None,
            },
            element_table: input.element_table_source,
            fitted_on: input.fitted_on,
        },
        index: index_section,
        tensor_head,
        f16_check: input
            .precision_check
            .clone()
            .filter(|_| input.precision == Precision::F16),
        int8_check: input
            .precision_check
            .filter(|_| input.precision == Precision::Int8),
        source: input.source,
        entries: entries
            .iter()
            .map(|e| EntrySection {
                name: e.name.clone(),
                size: e.data.len() as u64,
                sha256: sha256_hex(&e.data),
            })
            .collect(),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Write(e.to_string()))?;
    entries.insert(
        0,
        Entry {
            name: MANIFEST.into(),
            data: json,
        },
    );
    archive::write_zip(&entries)
}

impl Bundle {
    /// Reads and verifies a bundle: the archive's safety, the manifest, every entry's size and
    /// sha256, the weights' tensor count against the configuration, the index and the
    /// normalisers against their declared shapes. No model is built yet.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, BundleError> {
        let mut entries = archive::read_zip(bytes, limits)?;
        let manifest_at = entries
            .iter()
            .position(|e| e.name == MANIFEST)
            .ok_or_else(|| BundleError::NotABundle("no manifest.json".into()))?;
        let manifest = Manifest::parse(&entries.remove(manifest_at).data)?;
        for e in &entries {
            let listed = manifest.entry(&e.name).ok_or_else(|| BundleError::Entry {
                name: e.name.clone(),
                reason: "is not listed in manifest.json".into(),
            })?;
            let bad = |reason: String| BundleError::Entry {
                name: e.name.clone(),
                reason,
            };
            if listed.size != e.data.len() as u64 {
                return Err(bad(format!(
                    "{} bytes, manifest.json says {}",
                    e.data.len(),
                    listed.size
                )));
            }
            if sha256_hex(&e.data) != listed.sha256.to_lowercase() {
                return Err(bad(
                    "sha256 does not match manifest.json (corrupted or altered)".into(),
                ));
            }
        }
        let mut take = |name: &str| {
            entries
                .iter()
                .position(|e| e.name == name)
                .map(|i| entries.swap_remove(i).data)
        };
        let mut require = |name: &str| {
            take(name).ok_or_else(|| BundleError::Entry {
                name: name.into(),
                reason: "is listed in manifest.json but missing from the archive".into(),
            })
        };
        let weights = require(WEIGHTS)?;
        let structure = require(STRUCTURE_INPUT)?;
        let tokenizer_kind = manifest.tokenizer.as_ref().map(|t| t.kind.as_str());
        let tokenizer_json = match tokenizer_kind.unwrap_or("") {
            "huggingface" if manifest.entry(TOKENIZER).is_none() => {
                return Err(BundleError::Entry {
                    name: TOKENIZER.into(),
                    reason: "is missing; tokenizer.kind 'huggingface' needs it".into(),
                });
            }
            "huggingface" => Some(require(TOKENIZER)?),
            _ => None,
        };
        let index_entries = match &manifest.index {
            Some(_) => Some((require(INDEX_RECORDS)?, require(INDEX_EMBEDDINGS)?)),
            None => None,
        };
        let tensor_head = match &manifest.tensor_head {
            Some(section) => {
                let bytes = require(TENSOR_HEAD)?;
                let header = read_header(&bytes, TENSOR_HEAD)?;
                let stored: u64 = header
                    .iter()
                    .map(|t| t.shape.iter().product::<usize>() as u64)
                    .sum();
                if stored != section.parameters {
                    return Err(BundleError::Entry {
                        name: TENSOR_HEAD.into(),
                        reason: format!(
                            "holds {stored} values, tensor_head.config needs {}",
                            section.parameters
                        ),
                    });
                }
                Some((bytes, header))
            }
            None => None,
        };
        let card = take(CARD);
        // Every entry is listed (checked above); what is left is listed but unknown.
        if let Some(e) = entries.first() {
            return Err(BundleError::Entry {
                name: e.name.clone(),
                reason: "is not a bundle entry this format version knows".into(),
            });
        }

        let tensors = read_header(&weights, WEIGHTS)?;
        let stored: u64 = tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();
        let needed = manifest.model.model.parameter_count();
        if stored != needed {
            return Err(BundleError::Entry {
                name: WEIGHTS.into(),
                reason: format!("holds {stored} values, the configuration needs {needed}"),
            });
        }
        let tokenizer = match &manifest.model.model {
            BundledModel::Clip(c) => Some(
                c.text
                    .text_tokenizer(tokenizer_json.as_deref().map(|b| (b, TOKENIZER)))
                    .map_err(|e| BundleError::Entry {
                        name: TOKENIZER.into(),
                        reason: match e {
                            HfError::File { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })?,
            ),
            BundledModel::Property(..) | BundledModel::Ssl(_) => None,
        };
        let structure_input = StructureInput::from_entry(
            &manifest.structure_input,
            manifest.model.model.graph_encoder().map(|g| &g.graph),
            &structure,
        )?;
        let index = match (&manifest.index, index_entries) {
            (Some(section), Some((records, embeddings))) => Some(RetrievalIndex::from_entries(
                section,
                manifest.model.embed_dim,
                &records,
                &embeddings,
            )?),
            _ => None,
        };
        let card = card
            .map(|c| {
                String::from_utf8(c).map_err(|_| BundleError::Entry {
                    name: CARD.into(),
                    reason: "is not UTF-8".into(),
                })
            })
            .transpose()?;
        Ok(Self {
            manifest,
            structure_input,
            index,
            card,
            tokenizer,
            tokenizer_json,
            weights,
            tensors,
            tensor_head,
            size: bytes.len(),
        })
    }

    /// A CLIP bundle's configuration.
    pub fn clip_config(&self) -> Result<&ClipConfig, BundleError> {
        match &self.manifest.model.model {
            BundledModel::Clip(c) => Ok(c),
            other => Err(BundleError::Kind {
                found: other.kind(),
                needed: "clip",
            }),
        }
    }

    /// A property bundle's configuration and target.
    pub fn property(&self) -> Result<(&PropertyModelConfig, &PropertyTarget), BundleError> {
        match &self.manifest.model.model {
            BundledModel::Property(c, t) => Ok((c, t)),
            other => Err(BundleError::Kind {
                found: other.kind(),
                needed: "property",
            }),
        }
    }

    /// An SSL bundle's block settings.
    pub fn ssl_config(&self) -> Result<&SslEncoderConfig, BundleError> {
        match &self.manifest.model.model {
            BundledModel::Ssl(c) => Ok(c),
            other => Err(BundleError::Kind {
                found: other.kind(),
                needed: "ssl",
            }),
        }
    }

    /// The tensor head a CLIP bundle carries.
    pub fn tensor_head(&self) -> Result<&TensorHeadSection, BundleError> {
        self.manifest.tensor_head.as_ref().ok_or_else(|| {
            BundleError::Input(
                "this bundle has no tensor head (pack an `xtal train tensor` run to get one)"
                    .into(),
            )
        })
    }

    /// The tensor head on `device`, checked like [`Bundle::model`].
    pub fn tensor_head_model<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<TensorHead<B>, BundleError> {
        let section = self.tensor_head()?;
        let (bytes, header) = self
            .tensor_head
            .as_ref()
            .ok_or_else(|| BundleError::Entry {
                name: TENSOR_HEAD.into(),
                reason: "is missing".into(),
            })?;
        weights::load_into(section.config.init(device), bytes, header, TENSOR_HEAD)
    }

    /// The head's components, in physical units, row-major `[n, components]`, of unit
    /// embeddings `[n, embed_dim]` of the head's modality ([`Bundle::embed_structures`] or
    /// [`Bundle::embed_texts`]).
    pub fn predict_tensors<B: Backend>(
        &self,
        head: &TensorHead<B>,
        embeddings: Tensor<B, 2>,
    ) -> Result<Vec<f64>, BundleError> {
        let section = self.tensor_head()?;
        let normalised =
            to_host(head.forward(embeddings)).map_err(|e| BundleError::Input(e.to_string()))?;
        Ok(section.targets.decode(&normalised))
    }

    /// A CLIP bundle's text tokenizer.
    pub fn tokenizer(&self) -> Result<&TextTokenizer, BundleError> {
        // Readers keep a tokenizer exactly for CLIP bundles.
        self.tokenizer.as_ref().ok_or(BundleError::Kind {
            found: self.manifest.model.model.kind(),
            needed: "clip",
        })
    }

    /// A CLIP bundle's model on `device`, after checking every tensor's name and shape
    /// against the configuration.
    pub fn model<B: Backend>(&self, device: &B::Device) -> Result<Clip<B>, BundleError> {
        weights::load_into(
            self.clip_config()?.init(device),
            &self.weights,
            &self.tensors,
            WEIGHTS,
        )
    }

    /// A property bundle's model on `device`, checked like [`Bundle::model`].
    pub fn property_model<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<PropertyModel<B>, BundleError> {
        weights::load_into(
            self.property()?.0.init(device),
            &self.weights,
            &self.tensors,
            WEIGHTS,
        )
    }

    /// An SSL bundle's six blocks on `device`, checked like [`Bundle::model`].
    pub fn ssl_model<B: Backend>(&self, device: &B::Device) -> Result<SslEncoder<B>, BundleError> {
        weights::load_into(
            self.ssl_config()?.init(device),
            &self.weights,
            &self.tensors,
            WEIGHTS,
        )
    }

    /// An SSL bundle's features `[items, 2048]` of FTCP tensors its structure input made
    /// ([`StructureInput::from_cif`]), from unmasked inputs in batches of 64, each block's
    /// features in feature order: what `xtal ssl extract` writes for the same tensors.
    pub fn ssl_features<B: Backend>(
        &self,
        model: &SslEncoder<B>,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, BundleError> {
        self.ssl_config()?;
        let StructureInput::FtcpTensor(input) = &self.structure_input else {
            return Err(BundleError::Input(
                "this bundle's structure input is not the FTCP tensor".into(),
            ));
        };
        let per = input.config.rows() * input.config.cols();
        let mut raw = Vec::with_capacity(items.len() * per);
        for item in items {
            match item {
                StructureItem::Vector(v) if v.len() == per => raw.extend_from_slice(v),
                _ => return Err(structure_mismatch()),
            }
        }
        if items.is_empty() {
            return Ok(Tensor::zeros([0, FEATURE_DIM], device));
        }
        let n = items.len();
        let data = SslData::new(
            (0..n).map(|i| format!("structure {}", i + 1)).collect(),
            input.config,
            raw,
            input.minmax.clone(),
            vec![None; n],
            vec![false; n],
        )
        .map_err(|e| BundleError::Input(format!("FTCP: {e}")))?;
        let all: Vec<usize> = (0..n).collect();
        let parts = all
            .chunks(64)
            .map(|chunk| {
                let blocks = model
                    .blocks
                    .iter()
                    .map(|block| block.features(&data.batch(block.kind(), chunk, None, device)))
                    .collect();
                Tensor::cat(blocks, 1)
            })
            .collect();
        Ok(Tensor::cat(parts, 0))
    }

    /// A property bundle's predictions, in the target's units, for graphs the bundle's
    /// structure input made ([`StructureInput::from_cif`]).
    pub fn predict<B: Backend>(
        &self,
        model: &PropertyModel<B>,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<Vec<f64>, BundleError> {
        let (_, target) = self.property()?;
        let standardized = to_host(self.predict_standardized(model, items, device)?)
            .map_err(|e| BundleError::Input(e.to_string()))?;
        Ok(standardized
            .into_iter()
            .map(|z| target.scale.invert(f64::from(z)))
            .collect())
    }

    /// The model's outputs `[items]` in standardised units (`target.scale` maps them back),
    /// in batches of 64; for front ends that read tensors back asynchronously.
    pub fn predict_standardized<B: Backend>(
        &self,
        model: &PropertyModel<B>,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<Tensor<B, 1>, BundleError> {
        self.property()?;
        let parts = items
            .chunks(64)
            .map(|chunk| Ok(model.forward(&self.graph_tensors(chunk, device)?)))
            .collect::<Result<Vec<_>, BundleError>>()?;
        if parts.is_empty() {
            return Ok(Tensor::zeros([0], device));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// Unit text embeddings `[texts, embed_dim]`, in batches of 64.
    pub fn embed_texts<B: Backend>(
        &self,
        model: &Clip<B>,
        texts: &[&str],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, BundleError> {
        self.over_text_batches(texts, self.manifest.model.embed_dim, device, |ids, pad| {
            Ok(model.text.forward(ids, pad))
        })
    }

    /// The pretrained text encoder's own unit sentence embeddings `[texts, hidden]` (pooled,
    /// before CLIP's projection; see [`TextEncoder::sentence_embeddings`]), in batches of 64.
    /// A bundle with the byte-level text encoder has none.
    ///
    /// [`TextEncoder::sentence_embeddings`]: crate::models::clip::TextEncoder::sentence_embeddings
    pub fn sentence_embeddings<B: Backend>(
        &self,
        model: &Clip<B>,
        texts: &[&str],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, BundleError> {
        let hidden = self
            .clip_config()?
            .text
            .huggingface
            .as_ref()
            .map(|hf| hf.encoder.hidden_size())
            .ok_or_else(|| {
                BundleError::Input(
                    "this bundle's text encoder is xtal's byte-level Transformer, which has no sentence embedding of its own outside the CLIP projection; use the CLIP text embedding (embedTexts / xtal embed)".into(),
                )
            })?;
        self.over_text_batches(texts, hidden, device, |ids, pad| {
            model.text.sentence_embeddings(ids, pad).ok_or_else(|| {
                BundleError::Input("the model's text encoder is not a pretrained one".into())
            })
        })
    }

    /// `encode` over `texts` tokenised in batches of 64, rows concatenated (`[0, width]` for
    /// no texts).
    fn over_text_batches<B: Backend>(
        &self,
        texts: &[&str],
        width: usize,
        device: &B::Device,
        encode: impl Fn(Tensor<B, 2, Int>, Tensor<B, 2, Bool>) -> Result<Tensor<B, 2>, BundleError>,
    ) -> Result<Tensor<B, 2>, BundleError> {
        let parts = texts
            .chunks(64)
            .map(|chunk| {
                let (ids, pad) = self
                    .tokenizer()?
                    .batch::<B>(chunk, device)
                    .map_err(|e| BundleError::Input(e.to_string()))?;
                encode(ids, pad)
            })
            .collect::<Result<Vec<Tensor<B, 2>>, BundleError>>()?;
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, width], device));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// Unit structure embeddings `[items, embed_dim]` of what [`StructureInput`] made, in
    /// batches of 64. Items must be of the bundle's kind (vectors or graphs).
    pub fn embed_structures<B: Backend>(
        &self,
        model: &Clip<B>,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, BundleError> {
        let parts = items
            .chunks(64)
            .map(|chunk| Ok(model.encode_structures(self.structure_batch(chunk, device)?)))
            .collect::<Result<Vec<_>, BundleError>>()?;
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, self.manifest.model.embed_dim], device));
        }
        Ok(Tensor::cat(parts, 0))
    }

    fn structure_batch<B: Backend>(
        &self,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<StructureBatch<B>, BundleError> {
        match &self.structure_input {
            StructureInput::Graph(_) => {
                Ok(StructureBatch::Graphs(self.graph_tensors(items, device)?))
            }
            StructureInput::FtcpTensor(_) => Err(BundleError::Input(
                "this bundle's SSL blocks make features, not CLIP structure embeddings".into(),
            )),
            StructureInput::Vector(_) | StructureInput::Ftcp(..) => {
                let d = self.manifest.structure_input.dim;
                let mut values = Vec::with_capacity(items.len() * d);
                for item in items {
                    match item {
                        StructureItem::Vector(v) if v.len() == d => values.extend_from_slice(v),
                        _ => return Err(structure_mismatch()),
                    }
                }
                Ok(StructureBatch::vectors(values, d, device))
            }
        }
    }

    /// One batch of a graph bundle's structure items (CLIP and property bundles alike).
    fn graph_tensors<B: Backend>(
        &self,
        items: &[StructureItem],
        device: &B::Device,
    ) -> Result<GraphTensors<B>, BundleError> {
        let StructureInput::Graph(input) = &self.structure_input else {
            return Err(BundleError::Input(
                "this bundle's structure input is not a crystal graph".into(),
            ));
        };
        let graphs = items
            .iter()
            .map(|item| match item {
                StructureItem::Graph(graph) => Ok(graph),
                StructureItem::Vector(_) => Err(structure_mismatch()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GraphBatch::new(&graphs, &input.table)
            .map_err(|e| BundleError::Input(format!("graph: {e}")))?
            .to_tensors(device))
    }

    /// A new bundle of `model` (same configuration) that keeps this bundle's structure input,
    /// dataset name and card, with `index` (e.g. recomputed text embeddings) and a note
    /// appended to the card. Weights are written as f32. A tensor head is left out: it was
    /// trained on the old model's embeddings.
    pub fn repack<B: Backend>(
        &self,
        model: &Clip<B>,
        index: Option<&RetrievalIndex>,
        card_note: &str,
        provenance: Provenance,
    ) -> Result<Vec<u8>, BundleError> {
        let m = &self.manifest;
        let card = format!(
            "{}\n{card_note}\n",
            self.card.as_deref().unwrap_or("").trim_end()
        );
        pack(PackInput {
            model: PackModel::Clip {
                model,
                config: self.clip_config()?,
                tokenizer_json: self.tokenizer_json.as_deref(),
            },
            tensor_head: None,
            structure_input: &self.structure_input,
            element_table_source: m.structure_input.element_table.clone(),
            fitted_on: m.structure_input.fitted_on,
            index: index.map(|i| (i, m.index.as_ref().and_then(|s| s.dataset.clone()))),
            card: Some(card.trim_start().to_string()),
            precision: Precision::F32,
            created: provenance.created,
            xtal_version: provenance.xtal_version,
            source: Some(provenance.source),
            precision_check: None,
        })
    }

    /// The first structure of a CIF as a unit embedding `[1, embed_dim]`.
    pub fn embed_cif<B: Backend>(
        &self,
        model: &Clip<B>,
        cif: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, BundleError> {
        let item = self.structure_input.from_cif(cif)?;
        self.embed_structures(model, &[item], device)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (the front ends supply the clock: wasm has none).
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn structure_mismatch() -> BundleError {
    BundleError::Input("structure items do not match the bundle's structure input".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
