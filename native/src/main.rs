//! `xtal`: prepare crystal data, train and evaluate models on CPU or GPU, pack bundles.

mod bench;
mod collective;
mod commands;
mod data;
mod exit;
mod output;
mod panic_guard;
mod plots;
mod run_dir;
mod structure_picture;
mod tracking;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtal", version, about = "Learn and search representations of crystalline materials", long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the devices this build can compute on (cpu, wgpu adapters, CUDA GPUs).
    Devices(commands::devices::Args),
    /// Measure compute throughput (GFLOP/s) of the CPU and GPU backends.
    Bench(bench::Args),
    /// Read CIF files and print lattice, density, formula and space group of each structure.
    Cif(commands::cif::Args),
    /// Turn a CSV of materials into a dataset: FTCP tensors, crystal graphs, splits, normaliser.
    Prepare(commands::prepare::Args),
    /// Train a model (clip: structure–text CLIP; tensor: property-tensor heads on CLIP;
    /// property: a graph encoder predicting one property).
    #[command(subcommand)]
    Train(Train),
    /// Evaluate a trained model on its validation split or another dataset.
    #[command(subcommand)]
    Eval(Eval),
    /// Portable bundles: `pack` a run into one zip, `inspect` it, `verify` every hash and shape.
    #[command(subcommand)]
    Bundle(commands::bundle::Command),
    /// Embed texts or CIFs with a bundle's model, CIFs or a whole dataset with a graph-encoder
    /// run (`--run R`), or texts with a HuggingFace model folder (`--model DIR`); `.npy` with
    /// --out, JSON with --json.
    Embed(commands::bundle::EmbedArgs),
    /// Search a bundle's index with a text (or --cif) query: rank, id, formula, score, description.
    Search(commands::bundle::SearchArgs),
    /// Predict a property for CIFs with a property bundle (`xtal train property`, packed).
    Predict(commands::bundle::PredictArgs),
    /// Score phrases against a CIF's structure with a bundle's model: cosine and softmax
    /// probability at the model's temperature, best first (the page's zero-shot scoring).
    ZeroShot(commands::bundle::ZeroShotArgs),
    /// FTCP self-supervised encoders: `train` six blocks, `extract` 2048-D features,
    /// `bottleneck` them, `eval` them in three scenarios.
    #[command(subcommand)]
    Ssl(commands::ssl::Command),
    /// Plot a CLIP run: loss and retrieval curves, t-SNE of pairs, similarity heatmap, cosine histogram.
    Visualize(commands::clip::VisualizeArgs),
}

#[derive(Subcommand)]
enum Train {
    /// Structure–text CLIP: `xtal train clip --config C --data D --out RUN`.
    Clip(commands::clip::TrainArgs),
    /// Property-tensor heads over frozen CLIP embeddings:
    /// `xtal train tensor --clip-run RUN --config C --out TRUN`.
    Tensor(commands::tensor::TrainArgs),
    /// A graph encoder (CGCNN or PaiNN) predicting one scalar property, with the held-out
    /// MAE against a composition-only baseline:
    /// `xtal train property --data D --target band_gap --source mp40 --out RUN`.
    Property(commands::property::TrainArgs),
}

#[derive(Subcommand)]
enum Eval {
    /// Retrieval metrics of a CLIP run: `xtal eval clip --run RUN [--data D]`.
    Clip(commands::clip::EvalArgs),
    /// Per-component MAE and R² of a tensor head: `xtal eval tensor --run TRUN [--data D]`.
    Tensor(commands::tensor::EvalArgs),
}

/// Freed memory stays with the process for the next tensor of the same size: burn's CPU
/// backends allocate fresh buffers for every operation, and returning them to the kernel soon
/// after (mimalloc's default: after a second) cost training much of its time in page faults:
/// 24,700 page faults in 20 small CLIP steps, against 1,000 when kept (168 against 195 pairs/s).
/// Memory unused for a minute still goes back. `MIMALLOC_PURGE_DELAY` set by the user wins.
fn keep_freed_memory() {
    // SAFETY: reads and sets one of mimalloc's global options, once, before any other thread.
    // The default value guards against the index naming another option.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT_MS
            && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, KEEP_FREED_MS);
        }
    }
}

/// `mi_option_purge_delay` in mimalloc.h (v3, the version libmimalloc-sys 0.1.49 builds by
/// default), which the bindings do not name, and its default there.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_DEFAULT_MS: std::os::raw::c_long = 1000;
const KEEP_FREED_MS: std::os::raw::c_long = 60_000;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with code 0, usage errors with code 2.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    keep_freed_memory();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Devices(args) => commands::devices::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Cif(args) => commands::cif::run(args),
        Command::Prepare(args) => commands::prepare::run(args),
        Command::Train(Train::Clip(args)) => commands::clip::train(args),
        Command::Eval(Eval::Clip(args)) => commands::clip::eval(args),
        Command::Train(Train::Tensor(args)) => commands::tensor::train(args),
        Command::Train(Train::Property(args)) => commands::property::train(args),
        Command::Eval(Eval::Tensor(args)) => commands::tensor::eval(args),
        Command::Visualize(args) => commands::clip::visualize(args),
        Command::Bundle(command) => commands::bundle::run(command),
        Command::Ssl(command) => commands::ssl::run(command),
        Command::Embed(args) => commands::bundle::embed(args),
        Command::Search(args) => commands::bundle::search(args),
        Command::ZeroShot(args) => commands::bundle::zero_shot(args),
        Command::Predict(args) => commands::bundle::predict(args),
    };
    if let Err(error) = result {
        std::process::exit(exit::report(&error));
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // moyo warns about every low-symmetry cell it meets; only its errors matter to users.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},moyo=error")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    /// The option index and its default match the mimalloc that is built: a mismatch (v2's
    /// default of 10 ms was checked against v3's 1000 ms before) silently keeps nothing.
    #[test]
    fn freed_memory_is_kept_for_a_minute() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        super::keep_freed_memory();
        // SAFETY: reads one of mimalloc's global options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(delay, super::KEEP_FREED_MS);
    }
}
