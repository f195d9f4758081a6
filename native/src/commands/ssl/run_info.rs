//! The SSL run's own description (`RUN/ssl.json`, [`SslRunInfo`]) and the ids file beside
//! extracted features.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::models::ftcp_ssl::{BlockKind, SslBlockConfig};
use xtal_core::train::spec::TrainingSpec;

use crate::data::ftcp::SslSource;
use crate::exit::BadInput;
use crate::output::write_atomic;
use crate::run_dir::{RunDir, RunPaths};

impl RunPaths for SslRunInfo {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.source.data];
        paths.extend(self.source.ids.as_mut());
        paths
    }
}

/// `RUN/ssl.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SslRunInfo {
    pub family: String,
    pub source: SslSource,
    pub layout: FtcpConfig,
    /// The scaling every later input goes through (fitted on this run's training rows).
    pub normalizer: RowMinMax,
    pub blocks: Vec<SslBlockConfig>,
    pub weights: BTreeMap<String, f64>,
    pub training: TrainingSpec,
    /// `--limit`: the seeded sample of training rows every block of the run trains on.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl SslRunInfo {
    pub fn load(run: &Path) -> anyhow::Result<Self> {
        let p = run.join("ssl.json");
        let info: Self = RunDir::new(run).read_info("ssl.json", None, "not an SSL run")?;
        for b in &info.blocks {
            b.check()
                .map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
        }
        Ok(info)
    }

    pub fn block_dir(run: &Path, kind: BlockKind) -> RunDir {
        RunDir::new(&run.join(format!("block{}_{}", kind.number(), kind.name())))
    }

    pub fn config(&self, kind: BlockKind) -> SslBlockConfig {
        self.blocks
            .iter()
            .find(|b| b.kind == kind)
            .cloned()
            .unwrap_or_else(|| SslBlockConfig::new(kind))
    }
}

/// Writes feature ids, one a line (beside a features `.npy`).
pub fn write_ids(path: &Path, ids: &[&str]) -> anyhow::Result<()> {
    let mut text = ids.join("\n");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The ids file of the features file `npy`.
pub fn ids_path(npy: &Path) -> PathBuf {
    npy.with_extension("ids.txt")
}
