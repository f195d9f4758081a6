//! Checkpoints as bytes: the model and optimiser records (MessagePack, full precision) and the
//! training state as JSON. The CLI writes them atomically; a browser can keep them in memory.

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use serde::{Deserialize, Serialize};

use super::early_stopping::EarlyStopping;

/// Everything besides weights and moments that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken (the schedule is a function of it).
    pub step: usize,
    /// Every random stream derives from (seed, epoch): shuffling, dropout.
    pub seed: u64,
    pub early_stopping: Option<EarlyStopping>,
    /// Training stopped early after this epoch.
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct CheckpointError {
    pub what: &'static str,
    pub message: String,
}

pub fn model_to_bytes<B: Backend, M: Module<B>>(model: &M) -> Result<Vec<u8>, CheckpointError> {
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
    Recorder::<B>::record(&recorder, model.clone().into_record(), ()).map_err(|e| CheckpointError {
        what: "model weights",
        message: e.to_string(),
    })
}

/// Loads weights into `model` (built from the same configuration). Bytes that are not a
/// record of this model are an error, never a panic.
pub fn model_from_bytes<B: Backend, M: Module<B>>(
    model: M,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<M, CheckpointError> {
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
    let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| CheckpointError {
        what: "model weights",
        message: format!("not weights of this model ({e})"),
    })?;
    // burn's load_record panics on a shape mismatch; compare shapes first.
    let expected = shapes(&model);
    let loaded = model.load_record(record);
    let found = shapes(&loaded);
    if expected != found {
        return Err(CheckpointError {
            what: "model weights",
            message: format!(
                "parameter shapes differ from the configuration: {} expected, {} found",
                describe(&expected),
                describe(&found)
            ),
        });
    }
    Ok(loaded)
}

fn shapes<B: Backend, M: Module<B>>(model: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(p.shape().to_vec());
        }
    }
    let mut s = Shapes(Vec::new());
    model.visit(&mut s);
    s.0
}

fn describe(shapes: &[Vec<usize>]) -> String {
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    format!("{} tensors / {n} values", shapes.len())
}

/// A checkpoint: training state, model record and optimiser record.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    /// The checkpoint as one file's bytes ([`pack_sections`]: state, model, optimizer).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let state = serde_json::to_vec(&self.state).map_err(|e| CheckpointError {
            what: "training state",
            message: e.to_string(),
        })?;
        Ok(pack_sections(&[
            ("state", &state),
            ("model", &self.model),
            ("optimizer", &self.optimizer),
        ]))
    }

    /// Reads [`Self::to_bytes`]' output; anything else is an error naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut sections = unpack_sections(bytes)?;
        let mut take = |name: &str| {
            sections
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| sections.swap_remove(i).1)
                .ok_or_else(|| CheckpointError {
                    what: "checkpoint",
                    message: format!("no `{name}` section"),
                })
        };
        let state = take("state")?;
        let state: TrainState = serde_json::from_slice(&state).map_err(|e| CheckpointError {
            what: "checkpoint",
            message: format!("state: {e}"),
        })?;
        Ok(Self {
            state,
            model: take("model")?,
            optimizer: take("optimizer")?,
        })
    }
}

const MAGIC: &[u8; 8] = b"XTALCKP1";

/// One file of named sections: `XTALCKP1`, then per section a little-endian u32 name length,
/// the UTF-8 name, a u64 data length and the data.
pub fn pack_sections(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (name, data) in sections {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend(*data);
    }
    out
}

/// The sections of a packed checkpoint; truncated or foreign bytes are an error.
pub fn unpack_sections(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
    let bad = |message: &str| CheckpointError {
        what: "checkpoint",
        message: message.into(),
    };
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("not an xtal checkpoint (bad magic)"))?;
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], CheckpointError> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= rest.len())
            .ok_or_else(|| bad("truncated"))?;
        let s = &rest[at..end];
        at = end;
        Ok(s)
    };
    let mut sections = Vec::new();
    while let Ok(len) = take(4) {
        let name_len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
        let name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| bad("section name is not UTF-8"))?
            .to_string();
        let data_len = u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8]));
        let data_len = usize::try_from(data_len).map_err(|_| bad("section too large"))?;
        sections.push((name, take(data_len)?.to_vec()));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_truncation_is_an_error() {
        let packed = pack_sections(&[("a", b"xyz"), ("state", b"{}")]);
        let s = unpack_sections(&packed).unwrap();
        assert_eq!(s[1], ("state".to_string(), b"{}".to_vec()));
        for cut in 9..packed.len() {
            assert!(
                unpack_sections(&packed[..cut]).is_err()
                    || unpack_sections(&packed[..cut]).unwrap().len() < 2
            );
        }
        assert!(unpack_sections(b"PK\x03\x04").is_err());
    }
}
