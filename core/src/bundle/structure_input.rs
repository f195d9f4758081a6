//! How a bundle turns a structure into the vector its projector reads: for `ftcp` bundles
//! the whole path from CIF text (FTCP tensor → per-row min–max → flatten → standardise), for
//! `vector` bundles the standardisation of a precomputed embedding.

use safetensors::tensor::Dtype;

use super::BundleError;
use super::arrays::{Array, Arrays, write_arrays};
use super::manifest::{STRUCTURE_INPUT, StructureInputSection};
use crate::data::FeatureScaler;
use crate::featurize::{ELEMENT_FEATURES, ElementTable, FtcpConfig, RowMinMax, ftcp};
use crate::structure::{CifOptions, read_cif};

#[derive(Debug, Clone, PartialEq)]
pub struct FtcpInput {
    pub config: FtcpConfig,
    pub table: ElementTable,
    pub minmax: RowMinMax,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructureInput {
    /// `None`: the bundle reads precomputed vectors.
    pub ftcp: Option<FtcpInput>,
    pub scaler: FeatureScaler,
}

impl StructureInput {
    pub fn dim(&self) -> usize {
        self.scaler.mean.len()
    }

    /// The standardised vector of a raw structure vector.
    pub fn standardize(&self, raw: &[f32]) -> Result<Vec<f32>, BundleError> {
        if raw.len() != self.dim() {
            return Err(BundleError::Input(format!(
                "structure vector has {} values, the model reads {}",
                raw.len(),
                self.dim()
            )));
        }
        if raw.iter().any(|x| !x.is_finite()) {
            return Err(BundleError::Input(
                "structure vector holds NaN or infinite values".into(),
            ));
        }
        Ok(raw
            .iter()
            .zip(&self.scaler.mean)
            .zip(&self.scaler.std)
            .map(|((x, m), s)| (x - m) / s)
            .collect())
    }

    /// The standardised input vector of the first structure in a CIF, for FTCP bundles.
    pub fn from_cif(&self, cif: &str) -> Result<Vec<f32>, BundleError> {
        let f = self.ftcp.as_ref().ok_or_else(|| {
            BundleError::Input(
                "this bundle reads precomputed structure vectors; it cannot embed a CIF".into(),
            )
        })?;
        let structures = read_cif(cif, &CifOptions::default())
            .map_err(|e| BundleError::Input(format!("CIF {e}")))?;
        let t = ftcp(&structures[0].structure, &f.config, &f.table)
            .map_err(|e| BundleError::Input(format!("FTCP: {e}")))?;
        let mut data = t.data;
        f.minmax.transform(&mut data);
        let raw: Vec<f32> = data.into_iter().map(|x| x as f32).collect();
        self.standardize(&raw)
    }

    pub fn to_entry(&self) -> Result<Vec<u8>, BundleError> {
        let d = self.dim();
        let f32s = |v: &[f32]| v.iter().map(|x| *x as f64).collect();
        let mut arrays = vec![
            Array::new(
                "standardize.mean",
                Dtype::F32,
                vec![d],
                f32s(&self.scaler.mean),
            ),
            Array::new(
                "standardize.std",
                Dtype::F32,
                vec![d],
                f32s(&self.scaler.std),
            ),
        ];
        if let Some(f) = &self.ftcp {
            let rows = f.minmax.rows;
            arrays.push(Array::new(
                "ftcp.row_min",
                Dtype::F64,
                vec![rows],
                f.minmax.min.clone(),
            ));
            arrays.push(Array::new(
                "ftcp.row_max",
                Dtype::F64,
                vec![rows],
                f.minmax.max.clone(),
            ));
            let entries: Vec<(u8, &[f32])> = f.table.entries().collect();
            arrays.push(Array::new(
                "elements.atomic_number",
                Dtype::I64,
                vec![entries.len()],
                entries.iter().map(|(z, _)| *z as f64).collect(),
            ));
            arrays.push(Array::new(
                "elements.features",
                Dtype::F32,
                vec![entries.len(), ELEMENT_FEATURES],
                entries
                    .iter()
                    .flat_map(|(_, v)| v.iter().map(|x| *x as f64))
                    .collect(),
            ));
        }
        write_arrays(&arrays)
    }

    pub fn from_entry(section: &StructureInputSection, bytes: &[u8]) -> Result<Self, BundleError> {
        let a = Arrays::parse(bytes, STRUCTURE_INPUT)?;
        let d = section.dim;
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let mean = f32s(a.read("standardize.mean", &[Some(d)])?.0);
        let std = f32s(a.read("standardize.std", &[Some(d)])?.0);
        if std.iter().any(|s| *s <= 0.0) {
            return Err(BundleError::Entry {
                name: STRUCTURE_INPUT.into(),
                reason: "standardize.std must be positive".into(),
            });
        }
        let ftcp = match &section.ftcp {
            None => None,
            Some(config) => {
                let rows = config.rows();
                let min = a.read("ftcp.row_min", &[Some(rows)])?.0;
                let max = a.read("ftcp.row_max", &[Some(rows)])?.0;
                let (z, shape) = a.read("elements.atomic_number", &[None])?;
                let features = a
                    .read(
                        "elements.features",
                        &[Some(shape[0]), Some(ELEMENT_FEATURES)],
                    )?
                    .0;
                let entries =
                    z.iter()
                        .zip(features.chunks_exact(ELEMENT_FEATURES))
                        .map(|(z, v)| {
                            (
                                z.clamp(0.0, 255.0) as u8,
                                v.iter().map(|x| *x as f32).collect(),
                            )
                        });
                let source = section.element_table.as_deref().unwrap_or("bundle");
                let table = ElementTable::from_entries(source, entries).map_err(|e| {
                    BundleError::Entry {
                        name: STRUCTURE_INPUT.into(),
                        reason: format!("element table: {e}"),
                    }
                })?;
                Some(FtcpInput {
                    config: *config,
                    table,
                    minmax: RowMinMax {
                        rows,
                        cols: config.cols(),
                        min,
                        max,
                    },
                })
            }
        };
        Ok(Self {
            ftcp,
            scaler: FeatureScaler { mean, std },
        })
    }
}
