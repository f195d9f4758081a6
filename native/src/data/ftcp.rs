//! FTCP tensors for the self-supervised blocks: a dataset from `xtal prepare` (its
//! `ftcp.npy`, ids and records) or a bare `.npy` of tensors with an ids file, split here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xtal_core::data::TensorRows;
use xtal_core::data::validation_mask;
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::structure::CrystalSystem;
use xtal_core::train::ssl::SslData;

use super::mapped::{NpyTensors, SelectedRows};

use crate::exit::BadInput;

/// Where the FTCP tensors come from (recorded in the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SslSource {
    /// A prepared dataset directory, or an `.npy` of FTCP tensors with `ids`.
    pub data: PathBuf,
    pub ids: Option<PathBuf>,
    /// With an `.npy`: the validation fraction and the seed of the split.
    pub val_fraction: f64,
    pub split_seed: u64,
}

/// What a loader reads: ids, layout, raw tensors (mapped, not loaded), their scaling,
/// crystal systems, split and dataset records, one entry per tensor.
type Columns = (
    Vec<String>,
    FtcpConfig,
    std::sync::Arc<dyn TensorRows>,
    RowMinMax,
    Vec<Option<CrystalSystem>>,
    Vec<bool>,
    Vec<Option<Value>>,
);

/// The loaded rows plus each row's `source` and `properties` from the dataset, when it has
/// records.
pub struct LoadedData {
    pub data: SslData,
    pub records: Vec<Option<Value>>,
}

impl SslSource {
    /// Reads the tensors; `normalizer` (a trained run's) replaces the data's own scaling.
    pub fn load(&self, normalizer: Option<&RowMinMax>) -> anyhow::Result<LoadedData> {
        let (ids, layout, raw, own, systems, is_val, records) = if self.data.is_dir() {
            self.load_prepared()?
        } else {
            self.load_npy()?
        };
        let normalizer = normalizer.cloned().unwrap_or(own);
        let data = SslData::from_rows(ids, layout, raw, normalizer, systems, is_val)
            .map_err(|e| BadInput(format!("{}: {e}", self.data.display())))?;
        if data.indices(false).len() < 2 || data.indices(true).is_empty() {
            return Err(BadInput(format!(
                "{}: {} training and {} validation tensors; need at least 2 and 1",
                self.data.display(),
                data.indices(false).len(),
                data.indices(true).len()
            ))
            .into());
        }
        Ok(LoadedData { data, records })
    }

    fn load_prepared(&self) -> anyhow::Result<Columns> {
        let dir = &self.data;
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| BadInput(format!("{}: cannot read ({e})", p.display())))
        };
        let summary: Value = serde_json::from_slice(&read("summary.json")?)
            .map_err(|e| BadInput(format!("{}: {e}", dir.join("summary.json").display())))?;
        let layout: FtcpConfig = serde_json::from_value(summary["config"]["ftcp"].clone())
            .map_err(|e| {
                BadInput(format!(
                    "{}: config.ftcp: {e}",
                    dir.join("summary.json").display()
                ))
            })?;
        let normalizer: RowMinMax = serde_json::from_slice(&read("ftcp_normalizer.json")?)
            .map_err(|e| {
                BadInput(format!(
                    "{}: {e}",
                    dir.join("ftcp_normalizer.json").display()
                ))
            })?;
        let per = layout.rows() * layout.cols();
        let mut raw = SelectedRows::new(per);
        let (mut ids, mut systems, mut is_val, mut records) = (vec![], vec![], vec![], vec![]);
        // A dataset prepared in shards reads shard by shard, in order.
        for part in super::shards::parts(dir)? {
            let npy_path = part.dir.join("ftcp.npy");
            let npy = NpyTensors::open_tensors(&npy_path, layout.rows(), layout.cols())?;
            let count = npy.shape[0];
            let file = raw.add_file(npy);
            let jsonl = part.dir.join("dataset.jsonl");
            // Line by line: the records of 129k materials are hundreds of MB of text.
            let lines = std::fs::File::open(&jsonl)
                .map_err(|e| BadInput(format!("{}: cannot read ({e})", jsonl.display())))?;
            for (line, l) in std::io::BufRead::lines(std::io::BufReader::new(lines)).enumerate() {
                let at = |m: String| BadInput(format!("{}:{}: {m}", jsonl.display(), line + 1));
                let l = l.map_err(|e| at(e.to_string()))?;
                if l.trim().is_empty() {
                    continue;
                }
                let r: Value = serde_json::from_str(&l).map_err(|e| at(e.to_string()))?;
                let Some(k) = r.get("ftcp_index").and_then(Value::as_u64) else {
                    continue;
                };
                let k = k as usize;
                if k >= count {
                    return Err(at(format!(
                        "ftcp_index {k} is past the {count} tensors of ftcp.npy"
                    ))
                    .into());
                }
                let group = r.get("group").and_then(Value::as_str);
                let system =
                    group.and_then(|g| CrystalSystem::ALL.into_iter().find(|c| c.name() == g));
                if group.is_some() && system.is_none() {
                    return Err(at(format!("group {group:?} is not a crystal system")).into());
                }
                ids.push(
                    r.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
                raw.select(file, k);
                systems.push(system);
                is_val.push(r.get("split").and_then(Value::as_str) == Some("val"));
                // Only what the probes read: whole records (structure summaries and all) of
                // 129k materials would take a gigabyte.
                records.push(Some(serde_json::json!({
                    "source": r.get("source"),
                    "properties": r.get("properties"),
                })));
            }
        }
        Ok((
            ids,
            layout,
            raw.into_shared(),
            normalizer,
            systems,
            is_val,
            records,
        ))
    }

    fn load_npy(&self) -> anyhow::Result<Columns> {
        let path = &self.data;
        let Some(ids_path) = &self.ids else {
            return Err(BadInput(format!(
                "{}: an .npy of FTCP tensors needs --ids (one id per line, in row order)",
                path.display()
            ))
            .into());
        };
        let layout = FtcpConfig::default();
        let npy = NpyTensors::open_tensors(path, layout.rows(), layout.cols())?;
        let ids: Vec<String> = std::fs::read_to_string(ids_path)
            .map_err(|e| BadInput(format!("{}: cannot read ({e})", ids_path.display())))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if ids.len() != npy.shape[0] {
            return Err(BadInput(format!(
                "{}: {} ids for the {} tensors of {}",
                ids_path.display(),
                ids.len(),
                npy.shape[0],
                path.display()
            ))
            .into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(BadInput("--val-fraction must be in [0, 1)".into()).into());
        }
        let is_val = validation_mask(ids.len(), self.val_fraction, self.split_seed);
        let n = ids.len();
        let mut raw = SelectedRows::new(layout.rows() * layout.cols());
        raw.add_all(npy);
        let raw = raw.into_shared();
        let normalizer = RowMinMax::fit(
            layout.rows(),
            layout.cols(),
            (0..n).filter(|&i| !is_val[i]).map(|i| raw.row(i)),
        )
        .ok_or_else(|| BadInput(format!("{}: no training rows", path.display())))?;
        Ok((
            ids,
            layout,
            raw,
            normalizer,
            vec![None; n],
            is_val,
            vec![None; n],
        ))
    }
}
