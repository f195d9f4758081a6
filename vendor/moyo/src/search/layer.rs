pub(super) mod layer_bravais_group;
pub(super) mod layer_primitive_cell;
pub(super) mod layer_symmetry_search;

pub use layer_symmetry_search::LayerPrimitiveSymmetrySearch;

pub(crate) use layer_bravais_group::is_layer_block_form;
pub(crate) use layer_primitive_cell::LayerPrimitiveCell;
