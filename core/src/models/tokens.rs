//! Token ids of a set of texts, from either tokenizer (byte-level or HuggingFace), batched
//! with padding for either text encoder.

use burn::prelude::*;

/// Token ids of a set of texts, padded per batch.
#[derive(Debug, Clone)]
pub struct TokenizedTexts {
    ids: Vec<Vec<i64>>,
    pad_id: i64,
    /// Byte-level: always `max_len` (as the encoder was built); HF: the batch's longest.
    pad_to: Option<usize>,
}

impl TokenizedTexts {
    /// `pad_to`: a fixed length, or `None` for each batch's longest.
    pub fn new(ids: Vec<Vec<i64>>, pad_id: i64, pad_to: Option<usize>) -> Self {
        TokenizedTexts {
            ids,
            pad_id,
            pad_to,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every text, in order, as one batch.
    pub fn batch_all<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        let all: Vec<usize> = (0..self.ids.len()).collect();
        self.batch(&all, device)
    }

    /// Ids `[batch, len]` and padding mask (true = pad) of the texts `idx`.
    pub fn batch<B: Backend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
        let longest = idx
            .iter()
            .map(|&i| self.ids[i].len())
            .max()
            .unwrap_or(0)
            .max(1);
        let len = self.pad_to.unwrap_or(longest);
        let (mut ids, mut pad) = (Vec::with_capacity(idx.len() * len), Vec::new());
        for &i in idx {
            let row = &self.ids[i];
            ids.extend(row.iter().copied());
            ids.extend(std::iter::repeat_n(self.pad_id, len - row.len()));
            pad.extend((0..len).map(|p| p >= row.len()));
        }
        let shape = [idx.len(), len];
        (
            Tensor::from_data(TensorData::new(ids, shape), device),
            Tensor::from_data(TensorData::new(pad, shape), device),
        )
    }
}
