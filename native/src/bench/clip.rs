//! `xtal bench --clip`: CLIP training throughput (pairs/s: forward, backward and AdamW step of
//! the byte-level text encoder and a linear structure projector) on each device, for the
//! original default configuration (width 512, 6 layers, 8 heads, length 256, batch 64) and a
//! small one, next to the same model in PyTorch (native/benches/clip_baseline.py) on this CPU.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::data::PairSet;
use xtal_core::device::{OnDevice, run_on};

use super::baseline::TorchBaseline;
use xtal_core::models::clip::{Clip, TextTokenizer};
use xtal_core::train::TrainStep;
use xtal_core::train::clip::ClipStep;
use xtal_core::train::spec::RunSpec;
use xtal_core::train::{ModelOptimizer, OptimizerSettings, WarmupCosine};

use crate::exit::BadInput;

/// Structure embedding width of the benchmark (a typical pooled GNN output).
const STRUCTURE_DIM: usize = 256;
const BATCH: usize = 64;

pub struct ClipBench<'a> {
    pub devices: &'a [String],
    pub configs: &'a [String],
    pub steps: usize,
    pub torch: Option<TorchBaseline<'a>>,
    pub json: bool,
}

fn spec(name: &str) -> anyhow::Result<RunSpec> {
    let mut s = RunSpec::default();
    s.training.batch_size = BATCH;
    match name {
        "default" => {}
        "small" => {
            s.model.text_width = 128;
            s.model.text_layers = 2;
            s.model.text_heads = 4;
            s.model.max_seq_length = 128;
            s.model.clip_dim = 128;
        }
        other => {
            return Err(
                BadInput(format!("--clip-config: `{other}` is not default or small")).into(),
            );
        }
    }
    Ok(s)
}

/// Pairs with texts long enough to fill every position (the original pads to max length).
fn pairs(n: usize) -> PairSet {
    let features = super::baseline::uniform_values(n * STRUCTURE_DIM, 7);
    let text =
        |i: usize| format!("Material {i} crystallizes in the cubic Fm-3m space group. ").repeat(8);
    PairSet::from_vectors(
        (0..n).map(|i| i.to_string()).collect(),
        (0..n).map(text).collect(),
        features,
        STRUCTURE_DIM,
    )
}

struct Throughput<'a> {
    spec: &'a RunSpec,
    steps: usize,
}

impl OnDevice for Throughput<'_> {
    type Output = f64;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        let config = self.spec.clip_config(STRUCTURE_DIM);
        B::seed(&device, 1);
        let mut model: Clip<B> = config.init(&device);
        let t = &self.spec.training;
        let mut opt = ModelOptimizer::<B, Clip<B>>::new(
            OptimizerSettings {
                weight_decay: t.weight_decay,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                clip_norm: None,
                accumulation: 1,
                schedule: WarmupCosine {
                    base_lr: t.learning_rate,
                    min_lr: t.learning_rate,
                    warmup_steps: 0,
                    total_steps: 1,
                },
            },
            [model.logit_scale.id],
        );
        let set = pairs(BATCH);
        let texts: Vec<&str> = set.texts.all().iter().map(String::as_str).collect();
        let tokenizer = TextTokenizer::Bytes(config.text.tokenizer())
            .encode_all(&texts)
            .expect("byte-level tokenization cannot fail");
        let batch: Vec<usize> = (0..BATCH).collect();
        // Training's own step (its loss read back, as the loop does), without the loop's
        // validation and checkpoints.
        let clip_step = ClipStep::<B> {
            set: &set,
            tokens: &tokenizer,
            text_seed: 0,
            val: &[],
            batch_size: BATCH,
            device: device.clone(),
        };
        let mut step = |model: Clip<B>| {
            let out = clip_step
                .load(&batch, 1, 0)
                .and_then(|loaded| clip_step.loss(&model, loaded))
                .expect("the benchmark's batch is well formed");
            let _ = out.loss.clone().inner().into_scalar().elem::<f64>();
            let m = opt.backward(model, out.loss).0;
            let m = opt.flush(m);
            let _ = B::sync(&device);
            m
        };
        model = step(model); // warm-up: allocation, autotuning
        let start = Instant::now();
        for _ in 0..self.steps {
            model = step(model);
        }
        drop(model);
        (self.steps * BATCH) as f64 / start.elapsed().as_secs_f64()
    }
}

pub fn run(b: ClipBench) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for name in b.configs {
        let s = spec(name)?;
        for d in b.devices {
            let device = crate::commands::one_device(d)?;
            eprintln!("clip {name} on {device} …");
            let rate = run_on(
                &device,
                Throughput {
                    spec: &s,
                    steps: b.steps,
                },
            )?;
            rows.push((name.clone(), device.to_string(), rate));
        }
        if let Some(torch) = b.torch {
            eprintln!("clip {name} in PyTorch ({}) …", torch.device);
            let steps = b.steps.to_string();
            let v = torch.run(["--config", name, "--steps", &steps])?;
            let rate = v["pairs_per_second"].as_f64().unwrap_or(f64::NAN);
            let label = torch.label("pytorch", &v);
            rows.push((name.clone(), label, rate));
        }
    }
    if b.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(c, d, r)| serde_json::json!({"config": c, "device": d, "pairs_per_second": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<24} {:>10} {:>14}",
        "config", "device", "pairs/s", "vs PyTorch"
    );
    for (c, d, r) in &rows {
        let base = rows
            .iter()
            .find(|(c2, d2, _)| c2 == c && d2.starts_with("pytorch"))
            .map(|x| x.2);
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}×", r / b));
        println!("{c:<8} {d:<24} {r:>10.1} {ratio:>14}");
    }
    println!(
        "default: width 512, 6 layers, 8 heads, length 256; small: 128, 2, 4, 128; batch {BATCH}, structure {STRUCTURE_DIM}-D, linear projector"
    );
    Ok(())
}
