//! Running the built `xtal` binary the way a user does.

use std::process::{Command, Output};

pub fn xtal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtal"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("xtal runs")
}

#[allow(dead_code)] // not every test file uses it
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CLIP small enough to train in a second or two.
#[allow(dead_code)] // not every test file uses it
pub const TINY_CLIP: &[&str] = &[
    "--set",
    "model.text_width=32",
    "--set",
    "model.text_layers=1",
    "--set",
    "model.text_heads=2",
    "--set",
    "model.max_seq_length=48",
    "--set",
    "model.clip_dim=16",
    "--set",
    "training.val_split=0.25",
    "--set",
    "training.log_interval=1",
    "--batch-size",
    "8",
    "--epochs",
    "3",
];
