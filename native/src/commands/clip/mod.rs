//! `xtal train clip`, `xtal eval clip`, `xtal visualize`: structure–text CLIP from the CLI.
//! Everything that computes lives in `xtal_core::train::clip`; these files read and write.

mod eval;
mod plots;
mod run;
mod train;

pub use eval::{EvalArgs, VisualizeArgs, eval, visualize};
pub use run::{EmbedTask, LoadedRun, SpecOverrides, load_clip_run};
pub use train::{TrainArgs, train};
