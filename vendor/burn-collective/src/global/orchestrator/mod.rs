pub(crate) mod base;
pub(crate) mod state;

pub use base::start_global_orchestrator;
pub use state::registered_nodes; // xtal patch
