//! The facts people look at first about a structure, as `xtal cif` prints them.

use serde::{Deserialize, Serialize};

use super::crystal::Structure;
use super::symmetry::{SymmetryError, SymmetryTolerance, space_group};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructureSummary {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    /// Å³
    pub volume: f64,
    /// g/cm³
    pub density: f64,
    pub nsites: usize,
    pub reduced_formula: String,
    pub spacegroup_number: u16,
    pub spacegroup_symbol: String,
    pub crystal_system: String,
}

impl StructureSummary {
    pub fn of(structure: &Structure, tolerance: SymmetryTolerance) -> Result<Self, SymmetryError> {
        let [a, b, c] = structure.lattice.lengths();
        let [alpha, beta, gamma] = structure.lattice.angles();
        let sg = space_group(structure, tolerance)?;
        Ok(Self {
            a,
            b,
            c,
            alpha,
            beta,
            gamma,
            volume: structure.volume(),
            density: structure.density(),
            nsites: structure.sites.len(),
            reduced_formula: structure.reduced_formula(),
            spacegroup_number: sg.number,
            spacegroup_symbol: sg.symbol,
            crystal_system: sg.crystal_system.name().to_string(),
        })
    }
}
