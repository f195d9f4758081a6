//! `tokenizer.json` through the `tokenizers` crate (the library transformers' fast
//! tokenizers are), with special tokens, truncation to what the model's positions allow and
//! right padding with the model's padding id.

use burn::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

use super::HfError;
use crate::models::tokens::TokenizedTexts;

/// Token ids `[batch, len]` and the padding mask (true = pad).
pub type TokenBatch<B> = (Tensor<B, 2, Int>, Tensor<B, 2, Bool>);

#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    pad_id: i64,
    max_len: usize,
    file: String,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("file", &self.file)
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl HfTokenizer {
    /// Parses `bytes` (named `file` in errors) and checks every id it can produce fits a
    /// model of `vocab_size` rows.
    pub fn from_bytes(
        bytes: &[u8],
        file: &str,
        vocab_size: usize,
        pad_id: usize,
        max_len: usize,
    ) -> Result<Self, HfError> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| HfError::file(file, format!("not a tokenizer.json ({e})")))?;
        let largest = inner.get_vocab(true).into_values().max().unwrap_or(0) as usize;
        if largest >= vocab_size {
            return Err(HfError::file(
                file,
                format!(
                    "the tokenizer has {} tokens (largest id {largest}) but config.json's vocab_size is {vocab_size}: they do not belong to the same model",
                    inner.get_vocab_size(true)
                ),
            ));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| HfError::file(file, format!("cannot truncate to {max_len} ({e})")))?;
        inner.with_padding(None);
        Ok(HfTokenizer {
            inner,
            pad_id: pad_id as i64,
            max_len,
            file: file.into(),
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of each text, special tokens included, truncated to `max_len`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, HfError> {
        texts
            .iter()
            .map(|t| {
                self.inner
                    .encode(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| HfError::file(&self.file, format!("cannot encode `{t}` ({e})")))
            })
            .collect()
    }

    /// Every text's ids, padded to each batch's longest with the model's padding id.
    pub fn tokenized(&self, texts: &[&str]) -> Result<TokenizedTexts, HfError> {
        let ids = self
            .encode(texts)?
            .into_iter()
            .map(|ids| ids.into_iter().map(i64::from).collect())
            .collect();
        Ok(TokenizedTexts::new(ids, self.pad_id, None))
    }

    /// A right-padded batch: ids `[batch, longest]` and the padding mask (true = pad).
    pub fn batch<B: Backend>(
        &self,
        texts: &[&str],
        device: &B::Device,
    ) -> Result<TokenBatch<B>, HfError> {
        Ok(self.tokenized(texts)?.batch_all(device))
    }
}
