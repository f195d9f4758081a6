//! Pretrained HuggingFace text encoders from a local folder: `xtal embed text --model DIR`,
//! and the folder reader the CLIP trainer uses for `text_backend: "huggingface"`.

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::data::PairSet;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::clip::{
    ClipConfig, HfTextConfig, TextEncoderConfig, TextTokenizer, TokenizedTexts, l2_normalize,
};
use xtal_core::models::hf::{HfError, HfFiles, HfLoaded, Pooling, load, read_folder};
use xtal_core::train::spec::{RunSpec, TextBackend};

use crate::exit::BadInput;

/// Loads a model folder (config.json, tokenizer.json, safetensors) onto `device`.
pub fn load_folder<B: Backend>(
    dir: &Path,
    max_len: usize,
    device: &B::Device,
) -> anyhow::Result<HfLoaded<B>> {
    in_folder(dir, |files| load::<B>(files, max_len, device))
}

/// Runs `f` over the files of a model folder (after checking it is one).
fn in_folder<T>(dir: &Path, f: impl FnOnce(&HfFiles) -> Result<T, HfError>) -> anyhow::Result<T> {
    if !dir.is_dir() {
        return Err(BadInput(format!(
            "{}: not a folder (expected a HuggingFace model folder with config.json, tokenizer.json and model.safetensors; nothing is downloaded)",
            dir.display()
        ))
        .into());
    }
    let read = |name: &str| read_optional(&dir.join(name));
    let files = HfFiles {
        folder: dir.display().to_string(),
        read: &read,
    };
    Ok(f(&files)?)
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn required(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_optional(path)?.ok_or_else(|| BadInput(format!("{}: missing", path.display())).into())
}

/// The CLIP text side a specification asks for: `None` for the byte-level encoder; for
/// `text_backend: "huggingface"` the folder's architecture (from its config.json).
pub fn hf_text_config(spec: &RunSpec) -> anyhow::Result<Option<HfTextConfig>> {
    let m = &spec.model;
    if m.text_backend != TextBackend::Huggingface {
        return Ok(None);
    }
    let dir = Path::new(m.text_model_name.as_deref().unwrap_or_default());
    // The architecture as training will load it (the weights decide a BERT pooler).
    let (model_type, encoder, _) = in_folder(dir, read_folder).context("model.text_model_name")?;
    Ok(Some(HfTextConfig::new(
        dir.display().to_string(),
        model_type,
        encoder,
        m.text_pooling,
        spec.text_freezing(),
    )))
}

/// The tokenizer of a CLIP text encoder, and for a HF encoder the bytes of its
/// `tokenizer.json`, read from the model folder the configuration names.
pub fn text_tokenizer(
    text: &TextEncoderConfig,
) -> anyhow::Result<(TextTokenizer, Option<Vec<u8>>)> {
    let Some((path, bytes)) = tokenizer_json(text)? else {
        return Ok((text.text_tokenizer(None)?, None));
    };
    let tokenizer = text.text_tokenizer(Some((&bytes, &path.display().to_string())))?;
    Ok((tokenizer, Some(bytes)))
}

/// For a HF text encoder, the path and bytes of its `tokenizer.json` (not parsed: whoever
/// uses them checks them).
pub fn tokenizer_json(
    text: &TextEncoderConfig,
) -> anyhow::Result<Option<(std::path::PathBuf, Vec<u8>)>> {
    let Some(hf) = &text.huggingface else {
        return Ok(None);
    };
    let path = Path::new(&hf.model).join("tokenizer.json");
    let bytes = required(&path)?;
    Ok(Some((path, bytes)))
}

/// The set's texts tokenized as `config`'s text encoder reads them.
pub fn tokenize(config: &ClipConfig, set: &PairSet) -> anyhow::Result<TokenizedTexts> {
    let texts: Vec<&str> = set.texts.all().iter().map(String::as_str).collect();
    Ok(text_tokenizer(&config.text)?.0.encode_all(&texts)?)
}

/// Embeds `texts` in batches of 32: `(vectors row-major, width)`.
struct EmbedTexts<'a> {
    dir: &'a Path,
    texts: &'a [String],
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
}

impl OnDevice for EmbedTexts<'_> {
    type Output = anyhow::Result<(Vec<f32>, usize)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = load_folder::<B::InnerBackend>(self.dir, self.max_len, &device)?;
        let width = model.config.hidden_size();
        let mut out = Vec::with_capacity(self.texts.len() * width);
        for chunk in self.texts.chunks(32) {
            let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (ids, pad) = model.tokenizer.batch(&texts, &device)?;
            let hidden = model.encoder.forward(ids, pad.clone());
            let mut pooled = self.pooling.forward(hidden, pad);
            if self.normalize {
                pooled = l2_normalize(pooled);
            }
            out.extend(
                pooled
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading embeddings from the device: {e:?}"))?,
            );
        }
        Ok((out, width))
    }
}

/// `xtal embed text --model DIR …`.
pub fn embed(
    dir: &Path,
    texts: &[String],
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
    device: &str,
) -> anyhow::Result<(Vec<f32>, usize)> {
    let task = EmbedTexts {
        dir,
        texts,
        pooling,
        normalize,
        max_len,
    };
    run_on(&super::one_device(device)?, task)?
}
