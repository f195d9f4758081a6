//! A CLIP run on disk: the configuration overrides every `train` command shares, opening a
//! run with its data (or other data, read as the run read its own), and embedding its pairs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use xtal_core::data::PairSet;
use xtal_core::device::OnDevice;
use xtal_core::models::clip::{Clip, ClipConfig};
use xtal_core::train::clip::embed_pairs;
use xtal_core::train::spec::RunSpec;
use xtal_core::train::{model_from_bytes, to_host};

use crate::data::pairs::{DataReport, DataSource};
use crate::exit::BadInput;
use crate::run_dir::{RunDir, RunInfo};

/// `--set section.key=value` and the training shorthands, shared by every `train` command.
#[derive(ClapArgs, Debug)]
pub struct SpecOverrides {
    /// Configuration override, `section.key=value` (repeatable), e.g. training.epochs=5.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Shorthand for --set training.epochs=N.
    #[arg(long)]
    epochs: Option<usize>,
    /// Shorthand for --set training.batch_size=N.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Shorthand for --set training.learning_rate=X.
    #[arg(long)]
    lr: Option<f64>,
    /// Shorthand for --set training.seed=N.
    #[arg(long)]
    seed: Option<u64>,
}

impl SpecOverrides {
    /// All overrides as `section.key=value`, shorthands last (they win).
    pub fn list(&self) -> Vec<String> {
        let mut all = self.overrides.clone();
        let short = [
            ("epochs", self.epochs.map(|v| v.to_string())),
            ("batch_size", self.batch_size.map(|v| v.to_string())),
            ("learning_rate", self.lr.map(|v| v.to_string())),
            ("seed", self.seed.map(|v| v.to_string())),
        ];
        for (key, v) in short {
            if let Some(v) = v {
                all.push(format!("training.{key}={v}"));
            }
        }
        all
    }
}

/// Which run, checkpoint, data and device `eval` and `visualize` use.
#[derive(ClapArgs, Debug)]
pub struct RunArgs {
    /// Run directory of `xtal train clip`.
    #[arg(long)]
    pub(super) run: PathBuf,
    /// Use another dataset (same structure representation) instead of the run's.
    #[arg(long)]
    pub(super) data: Option<PathBuf>,
    /// Directory of `.npy` structure embeddings for --data (original layout).
    #[arg(long)]
    pub(super) graph_emb_dir: Option<PathBuf>,
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    pub(super) checkpoint: String,
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
}

/// Structure and text embeddings (host memory) of the items `idx`, by a saved model.
pub struct EmbedTask<'a> {
    pub config: &'a ClipConfig,
    pub weights: Vec<u8>,
    pub set: &'a PairSet,
    pub idx: &'a [usize],
    pub batch_size: usize,
}

impl OnDevice for EmbedTask<'_> {
    type Output = anyhow::Result<(Vec<f32>, Vec<f32>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model: Clip<B::InnerBackend> =
            model_from_bytes(self.config.init(&device), self.weights, &device)?;
        let (s, t) = embed_pairs(
            &model,
            self.set,
            self.idx,
            &crate::commands::text_model::tokenize(self.config, self.set)?,
            self.batch_size,
            &device,
        );
        Ok((to_host(s)?, to_host(t)?))
    }
}

/// Data read for an existing model must have the structure width it was trained on.
pub(super) fn check_structure_dim(
    source: &DataSource,
    set: &PairSet,
    model: &ClipConfig,
) -> anyhow::Result<()> {
    if model.graph.is_some() || set.feature_dim == model.structure.input_dim {
        return Ok(());
    }
    Err(BadInput(format!(
        "{}: {}-D structure vectors, but the model was trained on {}-D",
        source.jsonl.display(),
        set.feature_dim,
        model.structure.input_dim
    ))
    .into())
}

/// A CLIP run on disk with the pairs it is evaluated on.
pub struct LoadedRun {
    pub run: RunDir,
    pub info: RunInfo,
    pub spec: RunSpec,
    /// Standardised as in training, split as the run split its data.
    pub set: PairSet,
    pub source: DataSource,
    /// Whether `set` is the run's own data.
    pub own_data: bool,
}

/// The run's configuration, data (or `data`), and the pairs of one split.
pub(super) fn load_run(args: &RunArgs) -> anyhow::Result<LoadedRun> {
    load_clip_run(
        &args.run,
        args.data.as_deref(),
        args.graph_emb_dir.as_deref(),
    )
}

/// A CLIP run with its configuration and its data (or `data`).
pub fn load_clip_run(
    run: &Path,
    data: Option<&Path>,
    graph_emb_dir: Option<&Path>,
) -> anyhow::Result<LoadedRun> {
    let run = RunDir::new(run);
    let info = run.info()?;
    let p = run.file("config.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    // The run's own configuration: its ignored keys were reported when it was trained.
    let (spec, _) = RunSpec::from_json(&text, &p.display().to_string(), &[])
        .map_err(|e| BadInput(e.to_string()))?;
    let (source, own) = match data {
        Some(d) => (
            DataSource::new(d, graph_emb_dir)?.scaled_like(&info.data),
            false,
        ),
        None => (info.data.clone(), true),
    };
    let graph = info.model.graph.as_ref().map(|g| g.graph);
    let mut set = source.load(
        spec.training.val_split,
        spec.training.val_seed,
        graph.as_ref(),
    )?;
    check_structure_dim(&source, &set, &info.model)?;
    info.scaler.apply(&mut set);
    eprintln!("data: {}", DataReport::new(&source, &set).line());
    Ok(LoadedRun {
        run,
        info,
        spec,
        set,
        source,
        own_data: own,
    })
}
