mod conventional_cell;
mod conventional_coordinate_system;
mod layer_standardize;
mod magnetic_standardize;
mod standardize;
mod symmetrization;
mod wyckoff;

pub(super) use layer_standardize::StandardizedLayerCell;
pub(super) use magnetic_standardize::StandardizedMagneticCell;
pub(super) use standardize::StandardizedCell;
pub(super) use wyckoff::{orbits_in_cell, wyckoff_positions_under_normalizer};
