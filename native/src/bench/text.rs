//! `xtal bench --text-model DIR`: a pretrained HF text encoder (all-MiniLM-L6-v2 in the
//! README) embedding inputs of exactly 128 tokens with mean pooling + L2 — latency at batch 1,
//! throughput at batch 32 — on each device, next to sentence-transformers on this CPU
//! (native/benches/minilm_baseline.py, same inputs and pipeline).

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use xtal_core::device::{OnDevice, run_on};

use super::baseline::TorchBaseline;
use xtal_core::models::clip::l2_normalize;
use xtal_core::models::hf::Pooling;

const TOKENS: usize = 128;
const TEXT: &str = "Fe2O3 crystallizes in the trigonal R-3c space group. Fe(1) is bonded to six equivalent O(1) atoms to form a mixture of distorted corner, edge, and face-sharing FeO6 octahedra. ";

pub struct TextBench<'a> {
    pub model: &'a Path,
    pub devices: &'a [String],
    pub runs: usize,
    pub torch: Option<TorchBaseline<'a>>,
    pub json: bool,
}

/// (batch-1 latency in ms, batch-32 sentences/s), medians.
struct Measure<'a>(&'a Path, usize);

impl OnDevice for Measure<'_> {
    type Output = anyhow::Result<(f64, f64)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model =
            crate::commands::text_model::load_folder::<B::InnerBackend>(self.0, TOKENS, &device)?;
        let texts: Vec<String> = (0..32)
            .map(|i| format!("{i}: {}", TEXT.repeat(4)))
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (ids, pad) = model.tokenizer.batch::<B::InnerBackend>(&texts, &device)?;
        anyhow::ensure!(
            ids.dims() == [32, TOKENS],
            "inputs are {:?} tokens, not 32 × {TOKENS}",
            ids.dims()
        );
        let embed = |n: usize| {
            let (ids, pad) = (ids.clone().narrow(0, 0, n), pad.clone().narrow(0, 0, n));
            let states = model.encoder.forward(ids, pad.clone());
            // Reading the result back is part of the latency a user sees.
            let _ = l2_normalize(Pooling::Mean.forward(states, pad)).into_data();
        };
        let median = |n: usize, runs: usize| {
            for _ in 0..3 {
                embed(n);
            }
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    embed(n);
                    start.elapsed()
                })
                .collect();
            times.sort();
            times[times.len() / 2].as_secs_f64()
        };
        let batch1 = median(1, 5 * self.1);
        let batch32 = median(32, self.1);
        Ok((1000.0 * batch1, 32.0 / batch32))
    }
}

pub fn run(b: TextBench) -> anyhow::Result<()> {
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    if let Some(torch) = b.torch {
        eprintln!("sentence-transformers (PyTorch {}) …", torch.device);
        let runs = b.runs.to_string();
        let v = torch.run([b.model.as_os_str(), OsStr::new("--runs"), OsStr::new(&runs)])?;
        rows.push((
            torch.label("sentence-transformers", &v),
            v["batch1_ms"].as_f64().unwrap_or(f64::NAN),
            v["batch32_sentences_per_s"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    for d in b.devices {
        let device = crate::commands::one_device(d)?;
        eprintln!("{} on {device} …", b.model.display());
        let (ms, rate) = run_on(&device, Measure(b.model, b.runs))??;
        rows.push((format!("xtal {device}"), ms, rate));
    }
    if b.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(d, ms, r)| serde_json::json!({"device": d, "batch1_ms": ms, "batch32_sentences_per_s": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let base = rows
        .iter()
        .find(|r| r.0.starts_with("sentence-transformers"))
        .cloned();
    println!(
        "{:<40} {:>12} {:>10} {:>18} {:>10}",
        "", "batch 1 ms", "vs base", "batch 32 sent/s", "vs base"
    );
    for (d, ms, rate) in &rows {
        let (r1, r32) = base.as_ref().map_or(("-".into(), "-".into()), |b| {
            (format!("{:.2}×", b.1 / ms), format!("{:.2}×", rate / b.2))
        });
        println!("{d:<40} {ms:>12.1} {r1:>10} {rate:>18.1} {r32:>10}");
    }
    println!(
        "inputs of exactly {TOKENS} tokens, mean pooling + L2; ratios > 1 are faster than the baseline"
    );
    Ok(())
}
