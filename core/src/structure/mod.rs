//! Crystal structures: elements, lattices, the [`Structure`] type, CIF reading and symmetry.
//! The CIF becomes a `Structure` in [`cif`]; [`crate::featurize`] turns structures into tensors.

pub mod cif;
mod crystal;
pub mod elements;
pub mod lattice;
mod summary;
pub mod symmetry;

pub use cif::{CifError, CifOptions, CifStructure, CifWarning, read_cif, read_cif_bytes};
pub use crystal::{DisorderedSite, Site, Species, Structure};
pub use lattice::Lattice;
pub use summary::StructureSummary;
pub use symmetry::{CrystalSystem, SpaceGroupInfo, SymmetryError, SymmetryTolerance, space_group};
