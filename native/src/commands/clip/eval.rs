//! `xtal eval clip` and `xtal visualize`.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use serde_json::json;
use xtal_core::data::PairSet;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::{ClipEvaluation, evaluate_clip};
use xtal_core::train::model_from_bytes;

use super::plots::write_all_plots;
use super::run::{LoadedRun, RunArgs, load_run};
use crate::exit::BadInput;

#[derive(ClapArgs, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Which pairs (a dataset given with --data defaults to all, the run's own to val).
    #[arg(long, value_parser = ["val", "train", "all"])]
    split: Option<String>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs, Debug)]
pub struct VisualizeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output directory (default: RUN/plots).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The retrieval figures of `e`, over `texts` texts of its structures.
pub(super) fn print_retrieval(e: &ClipEvaluation, best_epoch: Option<usize>, texts: usize) {
    let r = &e.retrieval;
    let chance1 = 1.0 / r.n as f64;
    let chance10 = (10.0 / r.n as f64).min(1.0);
    let counted = if texts == r.n {
        format!("{} pairs", r.n)
    } else {
        format!("{} structures, {texts} texts", r.n)
    };
    println!(
        "validation ({counted}{}):",
        best_epoch.map_or(String::new(), |b| format!(", best epoch {b}"))
    );
    for (name, d) in [
        ("structure → text", &r.structure_to_text),
        ("text → structure", &r.text_to_structure),
    ] {
        println!(
            "  {name}: Recall@1 {:.3} (chance {:.3})  Recall@10 {:.3} (chance {:.3})  MRR {:.3}  median rank {}",
            d.recall_at_1, chance1, d.recall_at_10, chance10, d.mrr, d.median_rank
        );
    }
    println!(
        "  matched cosine {:.3} ± {:.3}, unmatched {:.3} ± {:.3}; loss {:.4}",
        r.matched_cosine_mean,
        r.matched_cosine_std,
        r.unmatched_cosine_mean,
        r.unmatched_cosine_std,
        e.loss
    );
}

struct EvalTask<'a> {
    config: &'a ClipConfig,
    weights: Vec<u8>,
    set: &'a PairSet,
    idx: &'a [usize],
    batch_size: usize,
}

impl OnDevice for EvalTask<'_> {
    type Output = anyhow::Result<ClipEvaluation>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let tokenizer = crate::commands::text_model::tokenize(self.config, self.set)?;
        Ok(evaluate_clip(
            &model,
            self.set,
            self.idx,
            &tokenizer,
            self.batch_size,
            &device,
        )?)
    }
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let LoadedRun {
        run,
        info,
        spec,
        set,
        own_data: own,
        ..
    } = load_run(&args.run)?;
    let (split, idx) = crate::commands::split_rows(args.split.as_deref(), own, &set.is_val);
    if idx.len() < 2 {
        return Err(BadInput(format!(
            "the {split} split has {} pairs; retrieval needs at least 2",
            idx.len()
        ))
        .into());
    }
    let c = run.load_checkpoint(&args.run.checkpoint)?;
    let device = crate::commands::one_device(&args.run.device)?;
    let eval = run_on(
        &device,
        EvalTask {
            config: &info.model,
            weights: c.model,
            set: &set,
            idx: &idx,
            batch_size: spec.training.batch_size,
        },
    )??;
    if args.json {
        println!(
            "{}",
            json!({"checkpoint": args.run.checkpoint, "epoch": c.state.epoch, "split": split, "evaluation": eval})
        );
    } else {
        let texts = set.texts.count(&idx);
        print_retrieval(&eval, Some(c.state.epoch), texts);
    }
    Ok(())
}

pub fn visualize(args: VisualizeArgs) -> anyhow::Result<()> {
    let LoadedRun {
        run,
        info,
        spec,
        set,
        ..
    } = load_run(&args.run)?;
    let dir = args.out.clone().unwrap_or_else(|| run.plots());
    let n = write_all_plots(
        &run,
        &info.model,
        &set,
        &spec,
        &crate::commands::one_device(&args.run.device)?,
        &args.run.checkpoint,
        &dir,
    )?;
    eprintln!("plots: {n} files in {}", dir.display());
    Ok(())
}
