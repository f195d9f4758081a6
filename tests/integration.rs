//! The cross-crate tests, one native binary (each file a module, so burn is compiled into one
//! test executable, not twelve). `browser.rs` is the wasm target's own; `site.rs` is ignored
//! by default and run by tests/run.sh once the page and the CLI are built.

mod anchor;
mod backends;
mod bundle;
mod cif_corpus;
mod clip;
mod clip_training;
mod graph_encoders;
mod hf_encoders;
mod linear_probes;
mod site;
mod ssl;
mod structures;
mod tensor_regression;
