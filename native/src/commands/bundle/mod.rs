//! `xtal bundle pack|inspect|verify`, `xtal embed`, `xtal search` and `xtal zero-shot`: bundles on the command
//! line. Reading, verifying, embedding and searching are core's (`xtal_core::bundle`), the
//! same code the browser runs; these files only move bytes and print.

mod common;
mod embed;
mod embed_structures;
mod fine_tune;
mod index_structures;
mod inspect;
mod pack;
mod pack_property;
mod pack_ssl;
mod pack_tensor;
mod predict;
mod search;
mod zero_shot;

pub use embed::{EmbedArgs, embed};
pub use predict::{PredictArgs, predict};
pub use search::{SearchArgs, search};
pub use zero_shot::{ZeroShotArgs, zero_shot};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Pack a CLIP, property, SSL or tensor-head run into one portable zip:
    /// `xtal bundle pack --run RUN [--index DATASET] -o B.xtal`.
    Pack(pack::PackArgs),
    /// Summarise a bundle: model, inputs, index, entries (`--json` for machines).
    Inspect(inspect::InspectArgs),
    /// Check every hash, every size and every tensor shape against the configuration.
    Verify(inspect::InspectArgs),
    /// Fine-tune the text projection (and temperature, optionally LayerNorms) on a CSV of
    /// pairs, structure tower locked; writes a new bundle with the index's text side redone.
    FineTune(fine_tune::FineTuneArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pack(args) => pack::pack_run(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Verify(args) => inspect::verify(args),
        Command::FineTune(args) => fine_tune::run(args),
    }
}
