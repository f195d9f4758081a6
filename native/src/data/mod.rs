//! Datasets read from disk, one module per layout: `pairs` (structure–text pairs: the
//! original CLIP `dataset.jsonl` with `.npy` embeddings, or a dataset from `xtal prepare` with
//! FTCP tensors or crystal graphs) and `ftcp` (FTCP tensors for the self-supervised blocks);
//! `shards` makes a dataset prepared in shards read as one; `mapped` reads tensors in place and
//! `graphs` the crystal graphs `xtal prepare` wrote.

pub mod ftcp;
pub mod graphs;
pub mod mapped;
pub mod pairs;
pub mod shards;
