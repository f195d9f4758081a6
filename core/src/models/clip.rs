//! Structure–text CLIP: a text encoder (our byte-level Transformer, or a pretrained
//! HuggingFace encoder from [`super::hf`] with pooling) and a projector over structure
//! embeddings, both L2-normalised into one space, trained with the symmetric cross-entropy
//! under a learnable temperature.
//!
//! Differences from the original system, on purpose: special tokens have their own ids (the
//! original's SOT = 2 and EOT = 3 collided with bytes 2 and 3), padded queries are excluded
//! from pooling as padded keys are from attention, and the logit scale is clamped at 100.

use burn::module::{Module, Param};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Embedding, EmbeddingConfig, Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PositionalEncoding, PositionalEncodingConfig,
};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::hf::{Freezing, HfEncoder, HfEncoderConfig, HfError, HfTokenizer, Pooling, TokenBatch};
use super::masked_mean;
use super::structure::{StructureEncoder, StructureEncoderConfig};
pub use super::tokens::TokenizedTexts;
use crate::featurize::{CrystalGraph, ElementTable, GraphBatch, GraphError, GraphTensors};

/// Bytes become ids 3 … 258; 0 pads, 1 starts, 2 ends a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteTokenizer {
    pub max_len: usize,
}

impl ByteTokenizer {
    pub const PAD: i64 = 0;
    pub const SOT: i64 = 1;
    pub const EOT: i64 = 2;
    pub const BYTE_OFFSET: i64 = 3;
    pub const VOCAB: usize = 259;

    /// `[SOT] bytes… [EOT]`, cut to `max_len`.
    pub fn ids(&self, text: &str) -> Vec<i64> {
        let keep = self.max_len.saturating_sub(2);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(Self::SOT);
        ids.extend(
            text.bytes()
                .take(keep)
                .map(|b| b as i64 + Self::BYTE_OFFSET),
        );
        ids.push(Self::EOT);
        ids
    }

    /// [`Self::ids`] padded with PAD to `max_len`; also the padding mask (true = pad).
    pub fn encode(&self, text: &str) -> (Vec<i64>, Vec<bool>) {
        let mut ids = self.ids(text);
        let used = ids.len();
        ids.resize(self.max_len, Self::PAD);
        let mask = (0..self.max_len).map(|i| i >= used).collect();
        (ids, mask)
    }

    /// Every text's ids, padded to `max_len` in batches (as the encoder was built).
    pub fn tokenized(&self, texts: &[&str]) -> TokenizedTexts {
        TokenizedTexts::new(
            texts.iter().map(|t| self.ids(t)).collect(),
            Self::PAD,
            Some(self.max_len),
        )
    }

    /// A batch as tensors: ids `[batch, max_len]` and the padding mask.
    pub fn batch<B: Backend>(
        &self,
        texts: &[&str],
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        self.tokenized(texts).batch_all(device)
    }
}

/// The tokenizer of a CLIP text encoder.
#[derive(Debug, Clone)]
pub enum TextTokenizer {
    Bytes(ByteTokenizer),
    HuggingFace(Box<HfTokenizer>),
}

impl TextTokenizer {
    /// Every text's ids, once (training reads them every epoch); an error names the text.
    pub fn encode_all(&self, texts: &[&str]) -> Result<TokenizedTexts, HfError> {
        match self {
            TextTokenizer::Bytes(t) => Ok(t.tokenized(texts)),
            TextTokenizer::HuggingFace(t) => t.tokenized(texts),
        }
    }

    /// Texts as one batch: ids `[batch, len]` and the padding mask (true = pad).
    pub fn batch<B: Backend>(
        &self,
        texts: &[&str],
        device: &B::Device,
    ) -> Result<TokenBatch<B>, HfError> {
        Ok(self.encode_all(texts)?.batch_all(device))
    }
}

#[derive(Config, Debug)]
pub struct TextEncoderConfig {
    #[config(default = 512)]
    pub width: usize,
    #[config(default = 6)]
    pub layers: usize,
    #[config(default = 8)]
    pub heads: usize,
    #[config(default = 256)]
    pub max_len: usize,
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Size of the shared embedding space.
    #[config(default = 512)]
    pub embed_dim: usize,
    /// A pretrained HuggingFace encoder instead of the byte-level Transformer (whose
    /// width/layers/heads are then unused; `max_len` caps the tokens).
    #[config(default = "None")]
    pub huggingface: Option<HfTextConfig>,
}

/// The HuggingFace side of a CLIP text encoder: which folder, its architecture (from its
/// `config.json`), how token states are pooled and what trains.
#[derive(Config, Debug)]
pub struct HfTextConfig {
    /// The model folder as the user gave it (read again for the tokenizer).
    pub model: String,
    pub model_type: String,
    pub encoder: HfEncoderConfig,
    pub pooling: Pooling,
    pub freezing: Freezing,
}

/// Our byte-level encoder, or a pretrained one. Saved weights leave the variant out of
/// parameter paths (`text.projection.weight` either way).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model; burn's Module derive does not see through a Box
pub enum TextEncoder<B: Backend> {
    Bytes(ByteTextEncoder<B>),
    HuggingFace(HfTextEncoder<B>),
}

/// Pretrained encoder → pooling over real tokens → linear projection → L2 normalisation.
#[derive(Module, Debug)]
pub struct HfTextEncoder<B: Backend> {
    backbone: HfEncoder<B>,
    projection: Linear<B>,
    #[module(skip)]
    pooling: Pooling,
}

/// Byte embeddings + fixed sinusoidal positions → pre-norm Transformer → final LayerNorm →
/// masked mean over real tokens → linear projection → L2 normalisation.
#[derive(Module, Debug)]
pub struct ByteTextEncoder<B: Backend> {
    tokens: Embedding<B>,
    positions: PositionalEncoding<B>,
    encoder: TransformerEncoder<B>,
    final_norm: LayerNorm<B>,
    projection: Linear<B>,
}

impl TextEncoderConfig {
    /// A HF backbone starts from its config's random initialisation; training loads the
    /// pretrained weights with [`Clip::with_text_backbone`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextEncoder<B> {
        if let Some(hf) = &self.huggingface {
            return TextEncoder::HuggingFace(HfTextEncoder {
                backbone: hf.encoder.init(device),
                projection: LinearConfig::new(hf.encoder.hidden_size(), self.embed_dim)
                    .init(device),
                pooling: hf.pooling,
            });
        }
        TextEncoder::Bytes(ByteTextEncoder {
            tokens: EmbeddingConfig::new(ByteTokenizer::VOCAB, self.width).init(device),
            positions: PositionalEncodingConfig::new(self.width)
                .with_max_sequence_size(self.max_len)
                .init(device),
            encoder: TransformerEncoderConfig::new(
                self.width,
                4 * self.width,
                self.heads,
                self.layers,
            )
            .with_norm_first(true)
            .with_dropout(self.dropout)
            .init(device),
            final_norm: LayerNormConfig::new(self.width).init(device),
            projection: LinearConfig::new(self.width, self.embed_dim).init(device),
        })
    }

    /// What the encoder is, in one line for people (a model card, `bundle inspect`, the page).
    pub fn describe(&self) -> String {
        match &self.huggingface {
            Some(hf) => format!(
                "pretrained HuggingFace {} `{}`: {} layers, width {}, {} pooling, {} tokens at most",
                hf.model_type,
                hf.model
                    .trim_end_matches('/')
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(hf.model.as_str()),
                hf.encoder.layers(),
                hf.encoder.hidden_size(),
                hf.pooling.name(),
                self.max_len.min(hf.encoder.max_tokens())
            ),
            None => format!(
                "byte-level Transformer: width {}, {} layers, {} heads, {} bytes",
                self.width, self.layers, self.heads, self.max_len
            ),
        }
    }

    /// The byte-level tokenizer (of a byte-level encoder; see [`Self::text_tokenizer`]).
    pub fn tokenizer(&self) -> ByteTokenizer {
        ByteTokenizer {
            max_len: self.max_len,
        }
    }

    /// The tokenizer this encoder reads: byte-level, or for a HF encoder its `tokenizer.json`
    /// (`(bytes, name for errors)`), checked against the model's vocabulary and cut to what
    /// both `max_len` and the model's positions allow.
    pub fn text_tokenizer(
        &self,
        tokenizer_json: Option<(&[u8], &str)>,
    ) -> Result<TextTokenizer, HfError> {
        let Some(hf) = &self.huggingface else {
            return Ok(TextTokenizer::Bytes(self.tokenizer()));
        };
        let (bytes, file) = tokenizer_json.ok_or_else(|| {
            HfError::file(
                "tokenizer.json",
                format!("missing (the tokenizer of {})", hf.model),
            )
        })?;
        Ok(TextTokenizer::HuggingFace(Box::new(
            HfTokenizer::from_bytes(
                bytes,
                file,
                hf.encoder.vocab_size(),
                hf.encoder.pad_token_id(),
                self.max_len.min(hf.encoder.max_tokens()),
            )?,
        )))
    }
}

impl<B: Backend> TextEncoder<B> {
    /// `ids [batch, len]`, `pad [batch, len]` (true = padding) → unit vectors `[batch, embed_dim]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
        match self {
            TextEncoder::Bytes(m) => m.forward(ids, pad),
            TextEncoder::HuggingFace(m) => l2_normalize(m.projection.forward(m.pooled(ids, pad))),
        }
    }

    /// A pretrained encoder's own sentence embeddings, `[batch, hidden]`: its pooled states,
    /// L2-normalised, before CLIP's projection — what sentence-transformers returns for a
    /// model with a Normalize module. `None` for the byte-level encoder, whose pooled states
    /// mean nothing outside this CLIP.
    pub fn sentence_embeddings(
        &self,
        ids: Tensor<B, 2, Int>,
        pad: Tensor<B, 2, Bool>,
    ) -> Option<Tensor<B, 2>> {
        match self {
            TextEncoder::Bytes(_) => None,
            TextEncoder::HuggingFace(m) => Some(l2_normalize(m.pooled(ids, pad))),
        }
    }
}

impl<B: Backend> HfTextEncoder<B> {
    fn pooled(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
        let states = self.backbone.forward(ids, pad.clone());
        self.pooling.forward(states, pad)
    }
}

impl<B: Backend> ByteTextEncoder<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
        let x = self.positions.forward(self.tokens.forward(ids));
        let x = self
            .encoder
            .forward(TransformerEncoderInput::new(x).mask_pad(pad.clone()));
        let x = self.final_norm.forward(x);
        let pooled = masked_mean(x, pad);
        l2_normalize(self.projection.forward(pooled))
    }
}

/// Rows scaled to unit length (a zero row stays zero).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-8);
    x / norm
}

#[derive(Config, Debug)]
pub struct StructureProjectorConfig {
    pub input_dim: usize,
    #[config(default = 512)]
    pub embed_dim: usize,
    /// Hidden widths of an MLP projector; empty = one linear layer.
    #[config(default = "Vec::new()")]
    pub hidden: Vec<usize>,
}

/// Precomputed structure embeddings → (linear | MLP with GELU) → L2 normalisation.
#[derive(Module, Debug)]
pub struct StructureProjector<B: Backend> {
    layers: Vec<Linear<B>>,
    activation: Gelu,
}

impl StructureProjectorConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> StructureProjector<B> {
        StructureProjector {
            layers: super::linear_stack(self.input_dim, &self.hidden, self.embed_dim, device),
            activation: Gelu::new(),
        }
    }
}

impl<B: Backend> StructureProjector<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.forward(x);
            }
        }
        l2_normalize(x)
    }
}

/// ln(1/0.07): CLIP's initial temperature.
pub const INITIAL_LOGIT_SCALE: f32 = 2.659_26;
/// The logit scale is clamped at ln(100) so the temperature cannot collapse.
pub const MAX_LOGIT_SCALE: f32 = 4.605_17;

#[derive(Config, Debug)]
pub struct ClipConfig {
    pub text: TextEncoderConfig,
    /// Projects the structure vector (precomputed, FTCP or the graph encoder's) to the space.
    pub structure: StructureProjectorConfig,
    /// A graph encoder trained with the rest; `None`: structure vectors come precomputed.
    #[config(default = "None")]
    pub graph: Option<StructureEncoderConfig>,
}

/// A batch of structures as the model's structure side reads them.
#[derive(Debug, Clone)]
pub enum StructureBatch<B: Backend> {
    /// `[batch, structure.input_dim]` vectors.
    Vectors(Tensor<B, 2>),
    Graphs(GraphTensors<B>),
}

impl<B: Backend> StructureBatch<B> {
    /// Graphs as one batch, node features from `table`.
    pub fn graphs(
        graphs: &[&CrystalGraph],
        table: &ElementTable,
        device: &B::Device,
    ) -> Result<Self, GraphError> {
        Ok(Self::Graphs(
            GraphBatch::new(graphs, table)?.to_tensors(device),
        ))
    }

    /// Row-major vectors of `dim` values each.
    pub fn vectors(values: Vec<f32>, dim: usize, device: &B::Device) -> Self {
        let rows = values.len() / dim.max(1);
        Self::Vectors(Tensor::from_data(
            TensorData::new(values, [rows, dim]),
            device,
        ))
    }
}

#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    pub text: TextEncoder<B>,
    pub structure: StructureProjector<B>,
    pub graph: Option<StructureEncoder<B>>,
    /// log of the inverse temperature; trainers leave it out of weight decay.
    pub logit_scale: Param<Tensor<B, 1>>,
}

impl ClipConfig {
    /// Number of trainable values, from the configuration alone (bundles check weights
    /// against it before allocating anything).
    pub fn parameter_count(&self) -> u64 {
        let t = &self.text;
        let (w, e) = (t.width as u64, t.embed_dim as u64);
        let text = match &t.huggingface {
            // Backbone, then the projection of its pooled width.
            Some(hf) => {
                let h = hf.encoder.hidden_size() as u64;
                hf.encoder.parameter_count() + h * e + e
            }
            // Per block: attention 4·(w² + w), feed-forward w·4w + 4w + 4w·w + w, two norms 4w.
            None => {
                let block = 12 * w * w + 13 * w;
                ByteTokenizer::VOCAB as u64 * w + t.layers as u64 * block + 2 * w + w * e + e
            }
        };
        let s = &self.structure;
        let structure = super::linear_stack_parameters(s.input_dim, &s.hidden, s.embed_dim);
        let graph = self.graph.as_ref().map_or(0, |g| g.parameter_count());
        text + structure + graph + 1
    }

    /// Whether the parameter at `path` trains: everything, except the parts of a HF text
    /// backbone its freezing leaves frozen.
    pub fn trains(&self, path: &str) -> bool {
        match (&self.text.huggingface, path.strip_prefix("text.backbone.")) {
            (Some(hf), Some(rest)) => hf.freezing.trains(rest, hf.encoder.layers()),
            _ => true,
        }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Clip<B> {
        Clip {
            text: self.text.init(device),
            structure: self.structure.init(device),
            graph: self.graph.as_ref().map(|g| g.init(device)),
            logit_scale: Param::from_tensor(Tensor::from_floats([INITIAL_LOGIT_SCALE], device)),
        }
    }
}

impl<B: Backend> Clip<B> {
    /// The model with pretrained weights in its HF text backbone (no-op for byte-level text).
    pub fn with_text_backbone(mut self, encoder: HfEncoder<B>) -> Self {
        if let TextEncoder::HuggingFace(m) = &mut self.text {
            m.backbone = encoder;
        }
        self
    }

    /// Unit structure embeddings `[batch, embed_dim]`. Graphs need the graph encoder and
    /// vectors a model without one; callers build batches from the model's configuration.
    pub fn encode_structures(&self, batch: StructureBatch<B>) -> Tensor<B, 2> {
        let vectors = match (batch, &self.graph) {
            (StructureBatch::Vectors(x), None) => x,
            (StructureBatch::Graphs(g), Some(encoder)) => encoder.forward(&g),
            _ => unreachable!("structure batch does not match the model's structure side"),
        };
        self.structure.forward(vectors)
    }

    /// Symmetric cross-entropy of a batch of matched pairs.
    pub fn loss(&self, structure: Tensor<B, 2>, text: Tensor<B, 2>) -> Tensor<B, 1> {
        clip_loss(structure, text, self.logit_scale.val())
    }
}

/// `(CE(logits) + CE(logitsᵀ)) / 2` with `logits = exp(min(scale, ln 100)) · s tᵀ` and the
/// i-th structure matching the i-th text.
pub fn clip_loss<B: Backend>(
    structure: Tensor<B, 2>,
    text: Tensor<B, 2>,
    logit_scale: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let n = structure.dims()[0];
    let scale = logit_scale
        .clamp_max(MAX_LOGIT_SCALE)
        .exp()
        .unsqueeze_dim::<2>(1); // [1, 1]
    let logits = structure.matmul(text.transpose()) * scale;
    let eye = Tensor::<B, 2>::eye(n, &logits.device());
    let rows = -(log_softmax(logits.clone(), 1) * eye.clone()).sum() / n as f64;
    let cols = -(log_softmax(logits, 0) * eye).sum() / n as f64;
    (rows + cols) / 2.0
}
