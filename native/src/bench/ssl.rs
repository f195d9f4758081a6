//! `xtal bench --ssl DATASET`: training throughput (samples/s: masking, forward, backward,
//! AdamW) of each FTCP self-supervised block on each device, over materials of a prepared
//! dataset, with each block's forward FLOPs per sample counted from its shapes — which, with
//! a GPU's sustained rate, estimates a pretraining run (README). The baseline the others are
//! compared with is the PyTorch rendering of the blocks (native/benches/ssl_baseline.py) when
//! `--torch` names it, else the first device; for Blocks 3 and 4 it times the same batches
//! (each cell's site count) as xtal does.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use xtal_core::data::SeededRng;
use xtal_core::device::{OnDevice, run_on};

use super::baseline::TorchBaseline;
use xtal_core::models::ftcp_ssl::{BlockKind, SslBlock, SslBlockConfig};
use xtal_core::train::ModelOptimizer;
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::ssl::SslData;

use crate::data::ftcp::SslSource;

pub struct SslBench<'a> {
    pub data: &'a Path,
    pub devices: &'a [String],
    pub samples: usize,
    pub batch_size: usize,
    /// Block numbers to measure; empty: all six.
    pub blocks: &'a [u8],
    pub torch: Option<TorchBaseline<'a>>,
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    block: usize,
    name: &'static str,
    device: String,
    train_samples_per_s: f64,
    forward_gflop_per_sample: f64,
}

/// Forward multiply–adds × 2 per sample for the default shapes (width w, `layers`, heads
/// irrelevant to the count), `sites` the mean occupied sites.
fn forward_flops(kind: BlockKind, w: f64, layers: f64, sites: f64) -> f64 {
    let transformer = |t: f64| layers * (4.0 * w * w * t + 2.0 * t * t * w + 4.0 * w * w * t);
    let out = kind.output_dim() as f64;
    let macs = match kind {
        BlockKind::Elements => {
            4.0 * (103.0 * 8.0 * 5.0 + 824.0 * w) + transformer(4.0) + w * out + (w + out) * 103.0
        }
        BlockKind::Lattice => {
            6.0 * w + transformer(6.0) + 6.0 * w * out + out * 7.0 + 6.0 * (w + out)
        }
        BlockKind::Sites => {
            let s2 = sites * sites;
            7.0 * w * sites
                + layers
                    * (17.0 * 16.0 * s2
                        + 17.0 * w * s2
                        + w * w * sites
                        + 2.0 * w * s2
                        + 2.0 * w * w * sites)
                + w * out
                + sites * (w + out) * 6.0
                + 2.0 * w * w * sites
                + 2.0 * w * s2
        }
        BlockKind::Occupancy => {
            let s2 = sites * sites;
            11.0 * w * sites
                + layers * (2.0 * w * w * sites + 2.0 * s2 * w + 17.0 * 4.0 * s2)
                + w * out
                + sites * (w + out) * 4.0
        }
        BlockKind::Reciprocal => {
            59.0 * 17.0 * w + transformer(59.0) + 59.0 * w * out + 59.0 * (w + out)
        }
        BlockKind::StructureFactors => {
            let c = (w / 4.0).max(4.0);
            let pixels = 46.0 * 30.0;
            2.0 * c * 9.0 * pixels
                + layers * 2.0 * c * c * 9.0 * pixels
                + c * 64.0 * out
                + out * (92.0 * 59.0 + 92.0 * 4.0)
        }
    };
    2.0 * macs
}

/// The batches timed for `kind`: those training makes (Blocks 3 and 4 bucket rows by site
/// count).
fn timed_batches(
    data: &SslData,
    kind: BlockKind,
    rows: &[usize],
    batch_size: usize,
) -> Vec<Vec<usize>> {
    data.block_batches(
        kind,
        rows.chunks(batch_size).map(<[usize]>::to_vec).collect(),
        1,
    )
}

struct Measure<'a> {
    kind: BlockKind,
    data: &'a SslData,
    rows: &'a [usize],
    batch_size: usize,
}

impl OnDevice for Measure<'_> {
    type Output = f64;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 1);
        let mut model: SslBlock<B> = SslBlockConfig::new(self.kind).init(&device);
        let batches = timed_batches(self.data, self.kind, self.rows, self.batch_size);
        let settings = TrainingSpec::default().optimizer_settings(1e-4, self.rows.len());
        let mut optimizer = ModelOptimizer::<B, SslBlock<B>>::new(settings, []);
        let weights: Vec<(String, f64)> = self
            .kind
            .tasks()
            .iter()
            .map(|(n, w)| (n.to_string(), *w))
            .collect();
        let mut rng = SeededRng::new(5);
        let mut step = |idx: &[usize], model: SslBlock<B>| {
            let batch = self
                .data
                .batch::<B>(self.kind, idx, Some(&mut rng), &device);
            let loss = model.pretext(&batch).weighted(&weights);
            let model = optimizer.backward(model, loss).0;
            let _ = B::sync(&device);
            model
        };
        model = step(&batches[0], model); // warm-up (kernel compilation on GPUs)
        let start = Instant::now();
        for b in &batches {
            model = step(b, model);
        }
        drop(model);
        self.rows.len() as f64 / start.elapsed().as_secs_f64()
    }
}

pub fn run(bench: SslBench) -> anyhow::Result<()> {
    let source = SslSource {
        data: bench.data.to_path_buf(),
        ids: None,
        val_fraction: 0.1,
        split_seed: 42,
    };
    let data = source.load(None)?.data;
    let mut rows = data.indices(false);
    xtal_core::data::seeded_shuffle(&mut rows, 3);
    rows.truncate(bench.samples.max(bench.batch_size));
    let sites =
        rows.iter().map(|&i| data.site_count(i)).sum::<usize>() as f64 / rows.len().max(1) as f64;
    // The batch both sides run: at least 2, which the PyTorch baseline requires.
    let batch_size = bench.batch_size.max(2);
    let config = SslBlockConfig::new(BlockKind::Elements);
    let kinds: Vec<BlockKind> = BlockKind::ALL
        .into_iter()
        .filter(|k| bench.blocks.is_empty() || bench.blocks.contains(&(k.number() as u8)))
        .collect();
    let mut out = Vec::new();
    for &kind in &kinds {
        for device in bench.devices {
            let spec = crate::commands::one_device(device)?;
            eprintln!(
                "block {} ({}) on {spec}: {} samples, batch {}",
                kind.number(),
                kind.name(),
                rows.len(),
                bench.batch_size
            );
            let rate = run_on(
                &spec,
                Measure {
                    kind,
                    data: &data,
                    rows: &rows,
                    batch_size,
                },
            )?;
            out.push(Row {
                block: kind.number(),
                name: kind.name(),
                device: spec.to_string(),
                train_samples_per_s: rate,
                forward_gflop_per_sample: forward_flops(
                    kind,
                    config.width as f64,
                    config.layers as f64,
                    sites,
                ) / 1e9,
            });
        }
    }
    let baseline = match bench.torch {
        Some(torch) => {
            eprintln!("the blocks in PyTorch ({}) …", torch.device);
            // Blocks 3 and 4 cost grows with the square of a batch's largest cell: the
            // baseline runs the very batches timed here (each cell's site count).
            let site_batches = timed_batches(&data, BlockKind::Sites, &rows, batch_size)
                .iter()
                .map(|batch| {
                    batch
                        .iter()
                        .map(|&i| data.site_count(i).max(1).to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
                .join("/");
            // As many timed steps as xtal times, so that both average over the same samples.
            let steps = rows.len().div_ceil(batch_size).max(1);
            let blocks = kinds.iter().map(|k| k.number().to_string());
            let v = torch.run([
                "--blocks".to_string(),
                blocks.collect::<Vec<_>>().join(","),
                "--steps".to_string(),
                steps.to_string(),
                "--batch-size".to_string(),
                batch_size.to_string(),
                "--sites".to_string(),
                format!("{}", sites.round().max(1.0)),
                "--site-batches".to_string(),
                site_batches,
            ])?;
            let device = torch.label("pytorch", &v);
            for b in v["blocks"].as_array().into_iter().flatten() {
                let Some(kind) = b["block"]
                    .as_u64()
                    .and_then(|n| BlockKind::from_number(n as usize))
                else {
                    anyhow::bail!("{} printed an unknown block: {b}", torch.script.display());
                };
                out.push(Row {
                    block: kind.number(),
                    name: kind.name(),
                    device: device.clone(),
                    train_samples_per_s: b["samples_per_second"].as_f64().unwrap_or(f64::NAN),
                    forward_gflop_per_sample: f64::NAN,
                });
            }
            Some(device)
        }
        None => None,
    };
    if bench.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("mean occupied sites: {sites:.1}");
    println!(
        "{:<6} {:<18} {:<28} {:>14} {:>10} {:>16}",
        "block",
        "name",
        "device",
        "train samples/s",
        if baseline.is_some() {
            "× PyTorch"
        } else {
            "× first"
        },
        "fwd MFLOP/sample"
    );
    out.sort_by_key(|r| r.block);
    for r in &out {
        let base = out
            .iter()
            .find(|b| b.block == r.block && Some(&b.device) == baseline.as_ref())
            .or_else(|| out.iter().find(|b| b.block == r.block))
            .unwrap_or(r);
        println!(
            "{:<6} {:<18} {:<28} {:>14.1} {:>10.2} {:>16.2}",
            r.block,
            r.name,
            r.device,
            r.train_samples_per_s,
            r.train_samples_per_s / base.train_samples_per_s,
            r.forward_gflop_per_sample * 1e3
        );
    }
    Ok(())
}
