pub(super) mod layer_arithmetic_crystal_class;
pub(super) mod layer_centering;
pub(super) mod layer_classification;
pub(super) mod layer_hall_symbol_database;
pub(super) mod layer_point_group;
pub(super) mod layer_setting;
pub(super) mod layer_wyckoff;

pub use layer_arithmetic_crystal_class::{
    LayerArithmeticCrystalClassEntry, LayerArithmeticNumber, iter_layer_arithmetic_crystal_entry,
    layer_arithmetic_crystal_class_entry,
};
pub use layer_centering::LayerCentering;
pub use layer_classification::{LayerBravaisClass, LayerCrystalSystem, LayerLatticeSystem};
pub use layer_hall_symbol_database::{
    LayerHallNumber, LayerHallSymbolEntry, LayerNumber, iter_layer_hall_symbol_entry,
    layer_hall_symbol_entry,
};
pub use layer_setting::LayerSetting;

pub use layer_point_group::LayerPointGroupRepresentative;
pub use layer_wyckoff::{
    LayerWyckoffPosition, iter_layer_wyckoff_positions,
    iter_layer_wyckoff_positions_from_hall_number,
};
