//! `xtal ssl extract`: N × 2048 features in input order, from unmasked inputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::ftcp_ssl::{BlockKind, FEATURE_DIM, SslBlock, SslBlockConfig};
use xtal_core::train::model_from_bytes;
use xtal_core::train::ssl::{SslData, block_features};

use super::run_info::{SslRunInfo, ids_path, write_ids};
use crate::data::ftcp::SslSource;
use crate::exit::BadInput;
use crate::output::write_npy;
use crate::run_dir::RunDir;

#[derive(ClapArgs)]
pub struct ExtractArgs {
    /// A trained SSL run.
    #[arg(long)]
    run: PathBuf,
    /// Data to embed (default: the run's own); scaled with the run's training normaliser.
    #[command(flatten)]
    other: OtherData,
    /// Output `.npy` (N × 2048); the ids go to the same name with `.ids.txt`.
    #[arg(long, short)]
    out: PathBuf,
    /// The control: the same encoders at their (seeded) random initialisation.
    #[arg(long)]
    random_init: bool,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct OtherData {
    /// Another dataset directory (or `.npy` with --other-ids).
    #[arg(long = "data")]
    pub data: Option<PathBuf>,
    #[arg(long = "other-ids")]
    pub ids: Option<PathBuf>,
}

impl OtherData {
    pub fn source(&self, info: &SslRunInfo) -> SslSource {
        match &self.data {
            Some(d) => SslSource {
                data: d.clone(),
                ids: self.ids.clone(),
                ..info.source.clone()
            },
            None => info.source.clone(),
        }
    }
}

/// Features of every row of `data` (N × 2048, row-major), trained or at random init.
pub fn extract_features(
    run: &Path,
    info: &SslRunInfo,
    data: &SslData,
    rows: &[usize],
    random_init: bool,
    batch_size: usize,
    device: &str,
) -> anyhow::Result<Vec<f32>> {
    let device = crate::commands::one_device(device)?;
    let bar = ProgressBar::new((rows.len() * BlockKind::ALL.len()) as u64).with_style(
        ProgressStyle::with_template("extract {bar:30} {pos}/{len}  [{elapsed}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = vec![0f32; rows.len() * FEATURE_DIM];
    for kind in BlockKind::ALL {
        let checkpoint = if random_init {
            None
        } else {
            let dir = SslRunInfo::block_dir(run, kind);
            if !dir.checkpoint_path("best").is_file() {
                return Err(BadInput(format!(
                    "{}: block {} ({}) is not trained; run `xtal ssl train --block {}`",
                    run.display(),
                    kind.number(),
                    kind.name(),
                    kind.number()
                ))
                .into());
            }
            Some(dir)
        };
        let features = run_on(
            &device,
            ExtractBlock {
                config: info.config(kind),
                seed: info.training.seed,
                checkpoint: checkpoint.as_ref(),
                data,
                rows,
                batch_size,
                bar: &bar,
            },
        )??;
        let (dim, offset) = (kind.output_dim(), kind.offset());
        for (i, chunk) in features.chunks(dim).enumerate() {
            out[i * FEATURE_DIM + offset..i * FEATURE_DIM + offset + dim].copy_from_slice(chunk);
        }
    }
    bar.finish_and_clear();
    if let Some(k) = out.iter().position(|v| !v.is_finite()) {
        return Err(anyhow::anyhow!(
            "feature {} of row {} ({}) is not finite",
            k % FEATURE_DIM,
            rows[k / FEATURE_DIM],
            data.ids[rows[k / FEATURE_DIM]]
        ));
    }
    Ok(out)
}

struct ExtractBlock<'a> {
    config: SslBlockConfig,
    seed: u64,
    checkpoint: Option<&'a RunDir>,
    data: &'a SslData,
    rows: &'a [usize],
    batch_size: usize,
    bar: &'a ProgressBar,
}

impl OnDevice for ExtractBlock<'_> {
    type Output = anyhow::Result<Vec<f32>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // The control is the initialisation training started from (same seed).
        B::seed(&device, self.seed);
        let mut model: SslBlock<B> = self.config.init(&device);
        if let Some(dir) = self.checkpoint {
            let c = dir.load_checkpoint("best")?;
            model = model_from_bytes(model, c.model, &device)
                .map_err(|e| BadInput(format!("{}: {e}", dir.checkpoint_path("best").display())))?;
        }
        let model = model.valid();
        Ok(block_features(
            &model,
            self.data,
            self.rows,
            self.batch_size,
            &device,
            |n| self.bar.inc(n as u64),
        )?)
    }
}

pub fn extract(args: ExtractArgs) -> anyhow::Result<()> {
    let info = SslRunInfo::load(&args.run)?;
    let data = args.other.source(&info).load(Some(&info.normalizer))?.data;
    let rows: Vec<usize> = (0..data.len()).collect();
    let started = Instant::now();
    let features = extract_features(
        &args.run,
        &info,
        &data,
        &rows,
        args.random_init,
        args.batch_size,
        &args.device,
    )?;
    write_npy(
        &args.out,
        &[data.len() as u64, FEATURE_DIM as u64],
        &features,
    )?;
    let ids: Vec<&str> = data.ids.iter().map(String::as_str).collect();
    write_ids(&ids_path(&args.out), &ids)?;
    eprintln!(
        "{} × {FEATURE_DIM} {} features in {:.1} s → {} (ids: {})",
        data.len(),
        if args.random_init {
            "random-init"
        } else {
            "SSL"
        },
        started.elapsed().as_secs_f64(),
        args.out.display(),
        ids_path(&args.out).display()
    );
    Ok(())
}
