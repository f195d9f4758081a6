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
