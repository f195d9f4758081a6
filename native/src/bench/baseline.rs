//! What the workload benchmarks share: the PyTorch baseline runner and fixed inputs.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::Context;

/// Runs a Python baseline script (native/benches/*.py) and reads the JSON object it prints
/// on its last line.
pub fn python_baseline(
    script: &Path,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("{} printed {last:?}", script.display()))
}

/// A PyTorch baseline script (`--torch`) and where it runs (`--torch-device`): every run gets
/// `--device`, and its rows are labelled by the device it ran on.
#[derive(Clone, Copy)]
pub struct TorchBaseline<'a> {
    pub script: &'a Path,
    /// `cpu` or `cuda`.
    pub device: &'a str,
}

impl TorchBaseline<'_> {
    /// Runs the script with `args` and `--device`, returning the JSON it printed last.
    pub fn run(
        &self,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> anyhow::Result<serde_json::Value> {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .chain(["--device".into(), self.device.into()])
            .collect();
        python_baseline(self.script, args)
    }

    /// A row label: `pytorch cpu (2 threads)` or `pytorch cuda (NVIDIA H200)`, from the
    /// `threads` / `gpu` fields the scripts print.
    pub fn label(&self, what: &str, printed: &serde_json::Value) -> String {
        match printed["gpu"].as_str() {
            Some(gpu) if self.device == "cuda" => format!("{what} cuda ({gpu})"),
            _ => format!("{what} cpu ({} threads)", printed["threads"]),
        }
    }
}

/// `n` values in [-0.5, 0.5) from a seeded LCG: fixed benchmark inputs without a random crate.
pub fn uniform_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}
