//! `xtal`: prepare crystal data, train and evaluate models on CPU or GPU, pack bundles.

mod commands;
mod exit;

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
    Bench(commands::bench::Args),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with code 0, usage errors with code 2.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Devices(args) => commands::devices::run(args),
        Command::Bench(args) => commands::bench::run(args),
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
