//! Datasets as the models consume them: structure–text pairs from `dataset.jsonl` (the
//! original CLIP layout or one written by `xtal prepare`), seeded splits, `.npy` decoding.

pub mod npy;
pub mod pairs;
mod rows;
mod shuffle;

pub use npy::{NpyArray, decode_npy};
pub use pairs::{
    DataError, FeatureScaler, ItemTexts, Layout, MissingStructure, PairRecord, PairSet, Records,
    SkippedLine, StructureGraphs, StructureItem, StructureStore, StructureVectors, VectorStore,
    is_plain_name, parse_jsonl, parse_tensor,
};
pub use rows::{GraphRows, OwnedGraphs, OwnedRows, TensorRows};
pub use shuffle::{
    SeededRng, batches_per_epoch, bucket_by_size, epoch_batches, seeded_shuffle, split_indices,
    validation_mask,
};
