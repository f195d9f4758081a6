//! `xtal eval tensor`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use serde_json::json;

use super::run::{TensorRunInfo, baseline, embed_rows, predict_on, print_table, write_predictions};
use crate::exit::BadInput;
use crate::run_dir::RunDir;

#[derive(ClapArgs, Debug)]
pub struct EvalArgs {
    /// Run directory of `xtal train tensor`.
    #[arg(long)]
    run: PathBuf,
    /// Another dataset (same structure representation) instead of the run's.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings for --data (original layout).
    #[arg(long)]
    graph_emb_dir: Option<PathBuf>,
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    checkpoint: String,
    /// Which rows (a dataset given with --data defaults to all, the run's own to val).
    #[arg(long, value_parser = ["val", "train", "all"])]
    split: Option<String>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also write id, true and predicted components of every evaluated row to this CSV.
    #[arg(long, value_name = "CSV")]
    predictions: Option<PathBuf>,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let info: TensorRunInfo = run.read_run_json("tensor")?;
    let device = crate::commands::one_device(&args.device)?;
    // Without --data: the rows the head was trained on (which may not be the CLIP run's).
    let (data, embedding_dir) = match &args.data {
        Some(d) => (d.clone(), args.graph_emb_dir.clone()),
        None => (
            info.data.jsonl.clone(),
            Some(info.data.embedding_dir.clone()),
        ),
    };
    let embedded = embed_rows(
        &info.clip_run,
        &info.clip_checkpoint,
        info.modality,
        Some(&data),
        embedding_dir.as_deref(),
        &device,
    )
    .with_context(|| format!("the CLIP run of {}", run.path.display()))?;
    if embedded.clip_epoch != info.clip_epoch {
        eprintln!(
            "warning: {} {} checkpoint is now epoch {}, the head was trained on epoch {}'s embeddings",
            info.clip_run.display(),
            info.clip_checkpoint,
            embedded.clip_epoch,
            info.clip_epoch
        );
    }
    let rows = &embedded.rows;
    if rows.dim != info.head.input_dim {
        return Err(BadInput(format!(
            "{}: {}-D embeddings, the head reads {}-D",
            info.clip_run.display(),
            rows.dim,
            info.head.input_dim
        ))
        .into());
    }
    let (split, idx) =
        crate::commands::split_rows(args.split.as_deref(), args.data.is_none(), &rows.is_val);
    if idx.len() < 2 {
        return Err(BadInput(format!(
            "the {split} split has {} rows with a tensor; at least 2 are needed",
            idx.len()
        ))
        .into());
    }
    let c = run.load_checkpoint(&args.checkpoint)?;
    let (e, pred) = predict_on(&device, &info, c.model, rows, &idx)?;
    if let Some(p) = &args.predictions {
        write_predictions(
            p,
            rows,
            &info.targets,
            std::iter::once((idx.as_slice(), pred.as_slice())),
        )?;
    }
    if args.json {
        println!(
            "{}",
            json!({"checkpoint": args.checkpoint, "epoch": c.state.epoch, "split": split,
                   "evaluation": e, "mean_predictor": baseline(rows, &idx, &info.targets)})
        );
    } else {
        print_table(
            &e,
            &baseline(rows, &idx, &info.targets),
            &format!(
                "{split} ({} rows, epoch {}), {} embeddings",
                e.metrics.n, c.state.epoch, info.modality
            ),
        );
    }
    Ok(())
}
