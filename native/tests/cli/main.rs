//! The CLI's end-to-end tests, one binary (each file a module): running the built `xtal` the
//! way a user does.

mod common;

mod bundle;
mod clip;
mod data_parallel;
mod graph;
mod relocation;
mod shards;
mod ssl;
mod structures;
mod tracking;
mod usage;
