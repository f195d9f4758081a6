//! `xtal bundle fine-tune`: the browser's small fine-tune on the command line. The trainer is
//! core's (`xtal_core::train::fine_tune`); this file reads the files, prints each step and
//! writes the new bundle atomically.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::bundle::{Bundle, Provenance, WEIGHTS, rfc3339};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::train::{FineTune, FineTuneReport, FineTuneSettings, parse_pairs_csv, to_host};

use super::common::{LimitArgs, open_kind};
use crate::exit::BadInput;
use crate::output::write_atomic;

#[derive(clap::Args)]
pub struct FineTuneArgs {
    /// The bundle to start from.
    bundle: PathBuf,
    /// CSV of pairs with the header `id,text` (ids of the bundle's index) or `text_a,text_b`.
    #[arg(long)]
    pairs: PathBuf,
    /// The fine-tuned bundle to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    #[arg(long, default_value_t = FineTuneSettings::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = FineTuneSettings::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = FineTuneSettings::default().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = FineTuneSettings::default().weight_decay)]
    weight_decay: f64,
    /// Also train the text tower's LayerNorms.
    #[arg(long)]
    layer_norms: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(args: FineTuneArgs) -> anyhow::Result<()> {
    if args.out.exists() && !args.force {
        return Err(BadInput(format!(
            "{} exists (use --force to replace it)",
            args.out.display()
        ))
        .into());
    }
    let bundle = open_kind(&args.bundle, &args.limits.limits(), &["clip"])?;
    if bundle.manifest.tensor_head.is_some() {
        eprintln!(
            "warning: {}'s tensor head is left out of the fine-tuned bundle: it was trained on the original model's embeddings",
            args.bundle.display()
        );
    }
    let csv = std::fs::read_to_string(&args.pairs)
        .with_context(|| format!("{}: cannot read", args.pairs.display()))?;
    let settings = FineTuneSettings {
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        layer_norms: args.layer_norms,
        seed: args.seed,
    };
    settings.check().map_err(|e| BadInput(e.to_string()))?;
    let device = crate::commands::one_device(&args.device)?;
    let (bytes, report) = run_on(
        &device,
        Task {
            bundle: &bundle,
            csv: &csv,
            pairs_name: args.pairs.display().to_string(),
            settings,
            quiet: args.json,
        },
    )??;
    write_atomic(&args.out, &bytes)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "loss over the {} pairs: {:.4} → {:.4}; wrote {} ({} trainable values changed)",
            report.pairs,
            report.loss_before,
            report.loss_after,
            args.out.display(),
            report.trainable_parameters
        );
    }
    Ok(())
}

struct Task<'a> {
    bundle: &'a Bundle,
    csv: &'a str,
    pairs_name: String,
    settings: FineTuneSettings,
    quiet: bool,
}

impl OnDevice for Task<'_> {
    type Output = anyhow::Result<(Vec<u8>, FineTuneReport)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let bundle = self.bundle;
        let pairs = parse_pairs_csv(self.csv, bundle.index.as_ref())
            .map_err(|e| BadInput(format!("{}: {e}", self.pairs_name)))?;
        let model = bundle.model::<B>(&device)?;
        let mut tune = FineTune::new(
            model,
            bundle.tokenizer()?.clone(),
            pairs,
            bundle.index.as_ref(),
            self.settings.clone(),
        )
        .map_err(|e| BadInput(e.to_string()))?;
        let steps = self.settings.steps;
        let base = bundle.manifest.entry(WEIGHTS).map(|e| e.sha256.clone());
        let report = tune.run_blocking(base, |step, loss| {
            if !self.quiet {
                eprintln!("step {step:>4}/{steps}  loss {loss:.4}");
            }
            Ok(())
        })?;
        let model = tune.model()?;
        let index = match bundle.index.as_ref() {
            Some(index) => {
                let texts = index.described_texts();
                let text = to_host(bundle.embed_texts(&model, &texts, &device)?)?;
                Some(index.with_text_embeddings(&text)?)
            }
            None => None,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let bytes = bundle.repack(
            &model,
            index.as_ref(),
            &report.card_section("xtal bundle fine-tune"),
            Provenance {
                created: rfc3339(now),
                xtal_version: env!("CARGO_PKG_VERSION").into(),
                source: serde_json::json!({ "fine_tune": report, "base": bundle.manifest.source }),
            },
        )?;
        Ok((bytes, report))
    }
}
