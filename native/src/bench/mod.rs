//! `xtal bench`: GFLOP/s of a 1024² matmul and an MLP forward+backward on each device,
//! next to this CPU's nominal fp32 peak, so backends and builds compare in one run; and the
//! workload benchmarks beside their PyTorch baselines (one file each). A developer's tool,
//! apart from the user's commands.

mod baseline;
mod bundle;
mod clip;
mod graphs;
mod scale;
mod ssl;
mod structures;
mod text;

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::structure::GraphBackbone;

#[derive(clap::Args)]
pub struct Args {
    /// Devices to measure, one after another (e.g. `--device cpu:ndarray --device cpu`);
    /// the first is the baseline the others are compared with.
    #[arg(long = "device", default_value = "cpu")]
    devices: Vec<String>,
    /// Matrix size of the matmul workload.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Seconds to spend on each workload after warm-up.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure the structure pipeline (CIF → Structure → FTCP / graph) on this CSV instead.
    #[arg(long, value_name = "CSV")]
    structures: Option<std::path::PathBuf>,
    /// Rows of --structures to use.
    #[arg(long, default_value_t = 2000)]
    limit: usize,
    /// The Python baseline script (native/benches/python_baseline.py) to run beside it.
    #[arg(long, requires = "structures")]
    python: Option<std::path::PathBuf>,
    /// CGCNN's atom_init.json for FTCP (the Python baseline needs it).
    #[arg(long)]
    atom_init: Option<std::path::PathBuf>,
    /// Measure CLIP training throughput (pairs/s) instead.
    #[arg(long)]
    clip: bool,
    /// CLIP configurations to measure: default (512/6/8/256) and/or small (128/2/4/128).
    #[arg(long = "clip-config", default_values_t = ["default".to_string(), "small".to_string()])]
    clip_configs: Vec<String>,
    /// Measured optimiser steps per CLIP configuration and device (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Measure bundles instead: pack/load of a 20M-parameter model, search over 100,000 entries.
    #[arg(long)]
    bundle: bool,
    /// The PyTorch baseline to run beside --clip (native/benches/clip_baseline.py),
    /// --text-model (native/benches/minilm_baseline.py) or --ssl (native/benches/ssl_baseline.py).
    #[arg(long)]
    torch: Option<std::path::PathBuf>,
    /// Where the --torch baseline runs: `cpu` (all threads) or `cuda` (PyTorch's first GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"], requires = "torch")]
    torch_device: String,
    /// Measure a HuggingFace text encoder folder instead (e.g. all-MiniLM-L6-v2): batch-1
    /// latency and batch-32 throughput at 128 tokens.
    #[arg(long, value_name = "DIR")]
    text_model: Option<std::path::PathBuf>,
    /// Measure structure encoders (graphs/s, forward and training) on structures of this
    /// prepared dataset instead.
    #[arg(long, value_name = "DATASET")]
    graphs: Option<std::path::PathBuf>,
    /// Backbones for --graphs.
    #[arg(long = "backbone", default_values = ["cgcnn", "painn"])]
    backbones: Vec<GraphBackbone>,
    /// Structures per --graphs measurement.
    #[arg(long, default_value_t = 512)]
    graph_count: usize,
    /// Graphs per batch for --graphs.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Measure the FTCP self-supervised blocks (training samples/s) on this prepared dataset.
    #[arg(long, value_name = "DATASET")]
    ssl: Option<std::path::PathBuf>,
    /// With --ssl: only these blocks (1–6, comma-separated or repeated; default all six).
    #[arg(long = "block", value_delimiter = ',', requires = "ssl",
          value_parser = clap::value_parser!(u8).range(1..=6))]
    ssl_blocks: Vec<u8>,
    /// Measure the data path at scale instead: this CSV replicated (distinct ids, strained
    /// cells) to each of --sizes rows, then `prepare`, one SSL block epoch, one CLIP epoch on
    /// FTCP and a retrieval evaluation of every pair, each timed with its peak memory.
    #[arg(long, value_name = "CSV")]
    scale: Option<std::path::PathBuf>,
    /// With --scale: also one CLIP epoch with a CGCNN structure encoder.
    #[arg(long)]
    scale_graphs: bool,
    /// Row counts for --scale.
    #[arg(long, value_delimiter = ',', default_values_t = [12_017usize, 48_068, 129_473])]
    sizes: Vec<usize>,
    /// Working directory for --scale (about 100 KB per row of disk).
    #[arg(long, default_value = "runs/bench-scale")]
    work: std::path::PathBuf,
    /// Timed runs per measurement (median; batch 1 runs five times as many).
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

#[derive(serde::Serialize)]
struct Measurement {
    device: String,
    workload: String,
    gflops: f64,
    iterations: usize,
}

#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    layers: Vec<Linear<B>>,
    activation: Relu,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        for layer in &self.layers {
            x = self.activation.forward(layer.forward(x));
        }
        x
    }
}

/// Repeat `step` until `budget` is spent (after two warm-up runs); iterations per second.
fn rate(budget: Duration, mut step: impl FnMut()) -> (usize, f64) {
    step();
    step();
    let start = Instant::now();
    let mut iterations = 0;
    while iterations < 3 || start.elapsed() < budget {
        step();
        iterations += 1;
    }
    (
        iterations,
        iterations as f64 / start.elapsed().as_secs_f64(),
    )
}

struct Workloads {
    size: usize,
    budget: Duration,
}

impl OnDevice for Workloads {
    type Output = Vec<(String, f64, usize)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let n = self.size;
        let uniform = Distribution::Uniform(-1.0, 1.0);
        let a = Tensor::<B::InnerBackend, 2>::random([n, n], uniform, &device);
        let b = Tensor::<B::InnerBackend, 2>::random([n, n], uniform, &device);
        let (iters, per_s) = rate(self.budget, || {
            let c = a.clone().matmul(b.clone());
            let _ = B::InnerBackend::sync(&device);
            drop(c);
        });
        let matmul = 2.0 * (n as f64).powi(3) * per_s / 1e9;

        // MLP: batch 256, three 1024→1024 layers; backward costs about twice the forward.
        let (batch, width, depth) = (256usize, 1024usize, 3usize);
        let mlp = Mlp::<B> {
            layers: (0..depth)
                .map(|_| LinearConfig::new(width, width).init(&device))
                .collect(),
            activation: Relu::new(),
        };
        let x = Tensor::<B, 2>::random([batch, width], uniform, &device);
        let (mlp_iters, mlp_per_s) = rate(self.budget, || {
            let loss = mlp.forward(x.clone()).mean();
            let grads = loss.backward();
            drop(grads);
            let _ = B::sync(&device);
        });
        let mlp_flops = 3.0 * 2.0 * (batch * width * width * depth) as f64;
        vec![
            (format!("matmul {n}x{n}"), matmul, iters),
            (
                format!("mlp fwd+bwd {batch}x{width}x{depth}"),
                mlp_flops * mlp_per_s / 1e9,
                mlp_iters,
            ),
        ]
    }
}

impl Args {
    fn torch_baseline(&self) -> Option<baseline::TorchBaseline<'_>> {
        self.torch.as_deref().map(|script| baseline::TorchBaseline {
            script,
            device: &self.torch_device,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(csv) = &args.structures {
        return structures::run(structures::StructureBench {
            csv,
            limit: args.limit,
            python: args.python.as_deref(),
            atom_init: args.atom_init.as_deref(),
            json: args.json,
        });
    }
    if let Some(data) = &args.ssl {
        return ssl::run(ssl::SslBench {
            data,
            devices: &args.devices,
            samples: args.graph_count,
            batch_size: args.batch_size,
            blocks: &args.ssl_blocks,
            torch: args.torch_baseline(),
            json: args.json,
        });
    }
    if let Some(data) = &args.graphs {
        return graphs::run(graphs::GraphBench {
            data,
            devices: &args.devices,
            backbones: &args.backbones,
            structures: args.graph_count,
            batch_size: args.batch_size,
            json: args.json,
        });
    }
    if args.bundle {
        return bundle::run(args.json);
    }
    if let Some(csv) = &args.scale {
        return scale::run(scale::ScaleBench {
            csv,
            sizes: &args.sizes,
            work: &args.work,
            json: args.json,
            graphs: args.scale_graphs,
        });
    }
    if let Some(model) = &args.text_model {
        return text::run(text::TextBench {
            model,
            devices: &args.devices,
            runs: args.runs.max(1),
            torch: args.torch_baseline(),
            json: args.json,
        });
    }
    if args.clip {
        return clip::run(clip::ClipBench {
            devices: &args.devices,
            configs: &args.clip_configs,
            steps: args.steps.max(1),
            torch: args.torch_baseline(),
            json: args.json,
        });
    }
    let mut results = Vec::new();
    for text in &args.devices {
        let spec = crate::commands::one_device(text)?;
        let workloads = Workloads {
            size: args.size,
            budget: Duration::from_secs_f64(args.seconds),
        };
        for (workload, gflops, iterations) in run_on(&spec, workloads)? {
            results.push(Measurement {
                device: spec.to_string(),
                workload,
                gflops,
                iterations,
            });
        }
    }
    let peak = cpu_peak();
    if args.json {
        let peak_json = peak
            .as_ref()
            .map(|p| serde_json::json!({"gflops": p.gflops, "how": p.how}));
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"results": results, "cpu_fp32_peak": peak_json})
            )?
        );
        return Ok(());
    }
    println!(
        "{:<12} {:<28} {:>10} {:>8}",
        "device", "workload", "GFLOP/s", "iters"
    );
    for m in &results {
        println!(
            "{:<12} {:<28} {:>10.1} {:>8}",
            m.device, m.workload, m.gflops, m.iterations
        );
    }
    match peak {
        Some(p) => println!("cpu fp32 peak: {:.0} GFLOP/s ({})", p.gflops, p.how),
        None => println!("cpu fp32 peak: unknown (no /proc/cpuinfo)"),
    }
    Ok(())
}

struct Peak {
    gflops: f64,
    how: String,
}

/// Nominal fp32 peak: cores × clock × FLOP/cycle, assuming two FMA pipes per core.
fn cpu_peak() -> Option<Peak> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let max_khz = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok());
    let mhz = max_khz
        .map(|k| k / 1000.0)
        .or_else(|| field("cpu MHz")?.parse().ok())?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (lanes, isa) = if has("avx512f") {
        (16.0, "AVX-512")
    } else if has("avx2") && has("fma") {
        (8.0, "AVX2+FMA")
    } else if has("avx") {
        (8.0, "AVX (no FMA)")
    } else {
        (4.0, "SSE")
    };
    let fma = if isa.contains("FMA") || isa == "AVX-512" {
        2.0
    } else {
        1.0
    };
    let per_cycle = lanes * fma * 2.0;
    Some(Peak {
        gflops: cores as f64 * mhz / 1000.0 * per_cycle,
        how: format!(
            "{cores} cores × {:.2} GHz × {per_cycle} FLOP/cycle ({isa}, 2 pipes)",
            mhz / 1000.0
        ),
    })
}
