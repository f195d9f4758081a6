//! How a bundle turns a structure into what its model reads: for `ftcp` bundles the whole
//! path from CIF text (FTCP tensor → per-row min–max → flatten → standardise), for `graph`
//! bundles the crystal graph its graph encoder reads, for `ftcp_tensor` (SSL) bundles the
//! FTCP tensor itself with its row min–max scaling, for `vector` bundles the
//! standardisation of a precomputed embedding.

use safetensors::tensor::Dtype;

use super::BundleError;
use super::arrays::{Array, Arrays, write_arrays};
use super::manifest::{STRUCTURE_INPUT, StructureInputSection};
use crate::data::{FeatureScaler, StructureItem};
use crate::featurize::{
    CrystalGraph, ELEMENT_FEATURES, ElementTable, FtcpConfig, GraphConfig, RowMinMax, ftcp,
};
use crate::structure::{CifOptions, Structure, read_cif};

#[derive(Debug, Clone, PartialEq)]
pub struct FtcpInput {
    pub config: FtcpConfig,
    pub table: ElementTable,
    pub minmax: RowMinMax,
}

/// A graph bundle's structure side: graphs built with the model's graph settings, node
/// features from the element table the model was trained with.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    pub config: GraphConfig,
    pub table: ElementTable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StructureInput {
    /// Precomputed structure vectors (e.g. EquiformerV2), standardised.
    Vector(FeatureScaler),
    /// CIF → FTCP → row min–max → flatten → standardise.
    Ftcp(FtcpInput, FeatureScaler),
    /// CIF → crystal graph; the model's graph encoder makes the projector's input.
    Graph(GraphInput),
    /// CIF → FTCP tensor, kept whole: the SSL blocks read its parts, each scaled by
    /// `minmax` as in training.
    FtcpTensor(FtcpInput),
}

impl StructureInput {
    /// The manifest's `structure_input.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Vector(_) => "vector",
            Self::Ftcp(..) => "ftcp",
            Self::Graph(_) => "graph",
            Self::FtcpTensor(_) => "ftcp_tensor",
        }
    }

    /// Whether the bundle embeds CIFs itself.
    pub fn reads_cif(&self) -> bool {
        !matches!(self, Self::Vector(_))
    }

    fn element_table(&self) -> Option<&ElementTable> {
        match self {
            Self::Vector(_) => None,
            Self::Ftcp(f, _) | Self::FtcpTensor(f) => Some(&f.table),
            Self::Graph(g) => Some(&g.table),
        }
    }

    /// The standardised vector of a raw structure vector (vector and FTCP bundles).
    pub fn standardize(&self, raw: &[f32]) -> Result<StructureItem, BundleError> {
        let scaler = match self {
            Self::Vector(s) | Self::Ftcp(_, s) => s,
            Self::Graph(_) | Self::FtcpTensor(_) => {
                return Err(BundleError::Input(
                    "this bundle reads structures (CIFs), not precomputed vectors".into(),
                ));
            }
        };
        if raw.len() != scaler.mean.len() {
            return Err(BundleError::Input(format!(
                "structure vector has {} values, the model reads {}",
                raw.len(),
                scaler.mean.len()
            )));
        }
        if raw.iter().any(|x| !x.is_finite()) {
            return Err(BundleError::Input(
                "structure vector holds NaN or infinite values".into(),
            ));
        }
        Ok(StructureItem::Vector(
            raw.iter()
                .zip(&scaler.mean)
                .zip(&scaler.std)
                .map(|((x, m), s)| (x - m) / s)
                .collect(),
        ))
    }

    /// What the model reads for the first structure in a CIF (FTCP and graph bundles).
    pub fn from_cif(&self, cif: &str) -> Result<StructureItem, BundleError> {
        if !self.reads_cif() {
            return Err(BundleError::Input(
                "this bundle reads precomputed structure vectors; it cannot embed a CIF".into(),
            ));
        }
        let structures = read_cif(cif, &CifOptions::default())
            .map_err(|e| BundleError::Input(format!("CIF {e}")))?;
        self.item_of(&structures[0].structure)
    }

    /// What the model reads for `structure` (FTCP and graph bundles).
    pub fn item_of(&self, structure: &Structure) -> Result<StructureItem, BundleError> {
        match self {
            Self::Vector(_) => Err(BundleError::Input(
                "this bundle reads precomputed structure vectors; it cannot embed a structure"
                    .into(),
            )),
            Self::Ftcp(f, _) => {
                let t = ftcp(structure, &f.config, &f.table)
                    .map_err(|e| BundleError::Input(format!("FTCP: {e}")))?;
                let mut data = t.data;
                f.minmax.transform(&mut data);
                let raw: Vec<f32> = data.into_iter().map(|x| x as f32).collect();
                self.standardize(&raw)
            }
            Self::Graph(g) => CrystalGraph::build_with_table(structure, &g.config, &g.table)
                .map(StructureItem::Graph)
                .map_err(|e| BundleError::Input(format!("graph: {e}"))),
            // Unscaled, as `xtal prepare` stores it: the blocks scale the parts they read.
            Self::FtcpTensor(f) => {
                let t = ftcp(structure, &f.config, &f.table)
                    .map_err(|e| BundleError::Input(format!("FTCP: {e}")))?;
                Ok(StructureItem::Vector(
                    t.data.into_iter().map(|x| x as f32).collect(),
                ))
            }
        }
    }

    pub fn to_entry(&self) -> Result<Vec<u8>, BundleError> {
        let f32s = |v: &[f32]| v.iter().map(|x| *x as f64).collect();
        let mut arrays = vec![];
        if let Self::Vector(s) | Self::Ftcp(_, s) = self {
            let d = s.mean.len();
            arrays.push(Array::new(
                "standardize.mean",
                Dtype::F32,
                vec![d],
                f32s(&s.mean),
            ));
            arrays.push(Array::new(
                "standardize.std",
                Dtype::F32,
                vec![d],
                f32s(&s.std),
            ));
        }
        if let Self::Ftcp(f, _) | Self::FtcpTensor(f) = self {
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
        }
        if let Some(table) = self.element_table() {
            let entries: Vec<(u8, &[f32])> = table.entries().collect();
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

    /// Reads the entry as `section` describes it; `graph` is the model's graph settings
    /// (the manifest check makes it present exactly for `graph` inputs).
    pub fn from_entry(
        section: &StructureInputSection,
        graph: Option<&GraphConfig>,
        bytes: &[u8],
    ) -> Result<Self, BundleError> {
        let a = Arrays::parse(bytes, STRUCTURE_INPUT)?;
        if section.kind == "graph" {
            let config = graph.ok_or_else(|| BundleError::Entry {
                name: STRUCTURE_INPUT.into(),
                reason: "a graph input needs the model's graph settings".into(),
            })?;
            return Ok(Self::Graph(GraphInput {
                config: *config,
                table: read_table(&a, section)?,
            }));
        }
        if section.kind == "ftcp_tensor" {
            let config = section.ftcp.as_ref().ok_or_else(|| BundleError::Entry {
                name: STRUCTURE_INPUT.into(),
                reason: "an ftcp_tensor input needs the FTCP settings".into(),
            })?;
            return Ok(Self::FtcpTensor(read_ftcp(&a, section, config)?));
        }
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
        let scaler = FeatureScaler { mean, std };
        let Some(config) = &section.ftcp else {
            return Ok(Self::Vector(scaler));
        };
        Ok(Self::Ftcp(read_ftcp(&a, section, config)?, scaler))
    }
}

fn read_ftcp(
    a: &Arrays<'_>,
    section: &StructureInputSection,
    config: &FtcpConfig,
) -> Result<FtcpInput, BundleError> {
    let rows = config.rows();
    let min = a.read("ftcp.row_min", &[Some(rows)])?.0;
    let max = a.read("ftcp.row_max", &[Some(rows)])?.0;
    if min.iter().chain(&max).any(|v| !v.is_finite()) {
        return Err(BundleError::Entry {
            name: STRUCTURE_INPUT.into(),
            reason: "ftcp.row_min / ftcp.row_max hold NaN or infinite values".into(),
        });
    }
    Ok(FtcpInput {
        config: *config,
        table: read_table(a, section)?,
        minmax: RowMinMax {
            rows,
            cols: config.cols(),
            min,
            max,
        },
    })
}

fn read_table(
    a: &Arrays<'_>,
    section: &StructureInputSection,
) -> Result<ElementTable, BundleError> {
    let (z, shape) = a.read("elements.atomic_number", &[None])?;
    let features = a
        .read(
            "elements.features",
            &[Some(shape[0]), Some(ELEMENT_FEATURES)],
        )?
        .0;
    let entries = z
        .iter()
        .zip(features.chunks_exact(ELEMENT_FEATURES))
        .map(|(z, v)| {
            (
                z.clamp(0.0, 255.0) as u8,
                v.iter().map(|x| *x as f32).collect(),
            )
        });
    let source = section.element_table.as_deref().unwrap_or("bundle");
    ElementTable::from_entries(source, entries).map_err(|e| BundleError::Entry {
        name: STRUCTURE_INPUT.into(),
        reason: format!("element table: {e}"),
    })
}
