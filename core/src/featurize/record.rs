//! One CIF in, everything a dataset keeps about it out: the structure's summary, its FTCP
//! tensor and its crystal graph. `xtal prepare` runs this per row, in parallel.

use serde::{Deserialize, Serialize};

use super::element_table::ElementTable;
use super::ftcp::{Ftcp, FtcpConfig, ftcp};
use super::graph::{CrystalGraph, GraphConfig};
use crate::structure::{
    CifOptions, CifWarning, Structure, StructureSummary, SymmetryTolerance, read_cif_bytes,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct FeaturizeConfig {
    pub ftcp: FtcpConfig,
    pub graph: GraphConfig,
    pub symmetry: SymmetryTolerance,
}

#[derive(Debug, Clone)]
pub struct Featurized {
    /// The structure itself (graph encoders build their own graphs from it).
    pub structure: Structure,
    pub summary: StructureSummary,
    /// Err: why this structure has no FTCP tensor (too many elements or sites, disorder).
    pub ftcp: Result<Ftcp, String>,
    pub graph: Result<CrystalGraph, String>,
    /// What the CIF reader assumed to read this structure.
    pub warnings: Vec<CifWarning>,
}

/// Reads the first structure of a CIF (its bytes: UTF-8, or Latin-1 with a warning) and
/// featurizes it. Err: why the CIF is unusable.
pub fn featurize_cif(
    cif: &[u8],
    config: &FeaturizeConfig,
    table: &ElementTable,
) -> Result<Featurized, String> {
    let mut structures =
        read_cif_bytes(cif, &CifOptions::default()).map_err(|e| format!("CIF {e}"))?;
    let first = structures.swap_remove(0);
    let structure = &first.structure;
    let summary = StructureSummary::of(structure, config.symmetry).map_err(|e| e.to_string())?;
    Ok(Featurized {
        summary,
        ftcp: ftcp(structure, &config.ftcp, table).map_err(|e| format!("FTCP: {e}")),
        graph: CrystalGraph::build(structure, &config.graph).map_err(|e| format!("graph: {e}")),
        structure: first.structure,
        warnings: first.warnings,
    })
}
