//! What the bundle commands share: opening a bundle within the limits a user may raise, and
//! how sizes and texts are shown.

use std::path::Path;

use anyhow::Context;
use xtal_core::bundle::{Bundle, Limits};

use crate::exit::BadInput;

/// What a bundle may hold; a bundle over a limit is refused before it is decompressed.
#[derive(clap::Args, Clone)]
pub struct LimitArgs {
    /// Largest accepted entry, in MiB (uncompressed).
    #[arg(long, default_value_t = 2048)]
    max_entry_mib: u64,
    /// Largest accepted total of all entries, in MiB (uncompressed).
    #[arg(long, default_value_t = 4096)]
    max_total_mib: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_entry_bytes: self.max_entry_mib << 20,
            max_total_bytes: self.max_total_mib << 20,
            ..Limits::default()
        }
    }
}

/// Reads and verifies a bundle file.
pub fn open(path: &Path, limits: &Limits) -> anyhow::Result<Bundle> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Bundle::from_bytes(&bytes, limits).with_context(|| format!("{}", path.display()))
}

/// Reads and verifies a bundle whose model must be one of `kinds` (`clip`, `property`,
/// `ssl`); another kind is refused naming the command that runs it.
pub fn open_kind(path: &Path, limits: &Limits, kinds: &[&str]) -> anyhow::Result<Bundle> {
    let bundle = open(path, limits)?;
    let found = bundle.manifest.model.model.kind();
    if !kinds.contains(&found) {
        let runs_it = match found {
            "property" => "`xtal predict` runs property bundles",
            "ssl" => "`xtal embed --bundle B cif FILE…` runs SSL bundles, giving 2048-D features",
            _ => {
                "`xtal embed`, `search` and `zero-shot` run CLIP bundles, `xtal predict` one with a tensor head"
            }
        };
        let holds = match found {
            "ssl" => "the SSL encoder".to_string(),
            _ => format!("a {found} model"),
        };
        return Err(BadInput(format!(
            "{}: the bundle holds {holds}; this needs a {} bundle ({runs_it})",
            path.display(),
            kinds.join(" or ")
        ))
        .into());
    }
    Ok(bundle)
}

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The start of `text` on one line, at most `n` characters.
pub fn preview(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let cut: String = one_line.chars().take(n.saturating_sub(1)).collect();
    format!("{cut}…")
}
