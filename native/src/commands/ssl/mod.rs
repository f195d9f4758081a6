//! `xtal ssl`: the FTCP self-supervised blocks — `train` (one block or all, each in its own
//! run directory under the SSL run), `extract` (N × 2048 features in input order, from
//! unmasked inputs), `bottleneck` (an autoencoder to K dimensions) and `eval` (the three
//! scenarios, in `eval.rs`). The models, their training steps and the loop live in core
//! (`models::ftcp_ssl`, `train::ssl`, `train::fit`).
//!
//! ```text
//! RUN/ssl.json                  data, FTCP layout, block settings, task weights
//! RUN/block{N}_{name}/          metrics.jsonl, checkpoints/{last,best}.ckpt, summary.json, plots/
//! ```

mod bottleneck;
mod eval;
mod extract;
pub(crate) mod run_info;
mod train;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Pretrain blocks: `xtal ssl train --data D --out RUN [--block N|all]`.
    Train(train::TrainArgs),
    /// Features of every material (N × 2048, rows in input order) from a trained run:
    /// `xtal ssl extract --run RUN --out features.npy`.
    Extract(extract::ExtractArgs),
    /// Compress features with an autoencoder: `xtal ssl bottleneck --features F.npy --dim K --out DIR`.
    Bottleneck(bottleneck::BottleneckArgs),
    /// The evaluation scenarios (linear probes, attribution, few-shot) on a labelled dataset:
    /// `xtal ssl eval --run RUN --out REPORT`.
    Eval(eval::EvalArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(a) => train::train(a),
        Command::Extract(a) => extract::extract(a),
        Command::Bottleneck(a) => bottleneck::bottleneck(a),
        Command::Eval(a) => eval::eval(a),
    }
}
