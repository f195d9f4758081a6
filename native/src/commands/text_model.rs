//! Pretrained HuggingFace text encoders from a local folder: `xtal embed text --model DIR`,
//! and the folder reader the CLIP trainer uses for `text_backend: "huggingface"`.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::clip::l2_normalize;
use xtal_core::models::hf::{HfFiles, HfLoaded, Pooling, load};

use crate::exit::BadInput;

/// Loads a model folder (config.json, tokenizer.json, safetensors) onto `device`.
pub fn load_folder<B: Backend>(
    dir: &Path,
    max_len: usize,
    device: &B::Device,
) -> anyhow::Result<HfLoaded<B>> {
    if !dir.is_dir() {
        return Err(BadInput(format!(
            "{}: not a folder (expected a HuggingFace model folder with config.json, tokenizer.json and model.safetensors)",
            dir.display()
        ))
        .into());
    }
    let read = |name: &str| match std::fs::read(dir.join(name)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let files = HfFiles {
        folder: dir.display().to_string(),
        read: &read,
    };
    Ok(load::<B>(&files, max_len, device)?)
}

/// The pooling named on the command line or in a config.
pub fn parse_pooling(name: &str) -> anyhow::Result<Pooling> {
    Pooling::from_name(name).ok_or_else(|| {
        BadInput(format!(
            "unknown pooling `{name}` (expected {})",
            Pooling::NAMES
        ))
        .into()
    })
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
            out.extend(pooled.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| {
                anyhow::anyhow!("reading embeddings from the device: {e:?}")
            })?);
        }
        Ok((out, width))
    }
}

/// `xtal embed text --model DIR …`.
pub fn embed(
    dir: &Path,
    texts: &[String],
    pooling: &str,
    normalize: bool,
    max_len: usize,
    device: &str,
) -> anyhow::Result<(Vec<f32>, usize)> {
    let task = EmbedTexts {
        dir,
        texts,
        pooling: parse_pooling(pooling)?,
        normalize,
        max_len,
    };
    run_on(&super::one_device(device)?, task)?
}
