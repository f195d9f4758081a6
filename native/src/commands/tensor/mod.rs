//! `xtal train tensor`, `xtal eval tensor`: property-tensor heads over frozen CLIP
//! embeddings of either modality. The computing lives in `xtal_core::train::tensor`, the
//! loop in `xtal_core::train::fit`.

mod eval;
pub(crate) mod run;
mod train;

pub use eval::{EvalArgs, eval};
pub use train::{TrainArgs, train};
