//! `xtal predict --bundle B cif …`: a property bundle's prediction for each CIF's first
//! structure, in the target's units (the model and its scaling are core's, as on the page).

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use xtal_core::bundle::Bundle;
use xtal_core::device::{OnDevice, run_on};

use super::common::{LimitArgs, open_kind};
use super::embed::read_cifs;
use crate::exit::BadInput;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// A property bundle (`xtal bundle pack --run` of an `xtal train property` run).
    #[arg(long)]
    bundle: PathBuf,
    /// CIF files; each file's first structure is predicted.
    #[arg(required = true)]
    cifs: Vec<PathBuf>,
    /// Print JSON: [{file, target, source, prediction}].
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Serialize)]
struct Prediction<'a> {
    file: String,
    target: &'a str,
    source: Option<&'a str>,
    prediction: f64,
}

pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let bundle = open_kind(&args.bundle, &args.limits.limits(), &["property"])?;
    let (_, target) = bundle.property()?;
    let cifs = read_cifs(&args.cifs)?;
    let device = crate::commands::one_device(&args.device)?;
    let values = run_on(
        &device,
        Predict {
            bundle: &bundle,
            cifs: &cifs,
        },
    )??;
    let rows: Vec<Prediction> = cifs
        .into_iter()
        .zip(values)
        .map(|((file, _), prediction)| Prediction {
            file,
            target: &target.name,
            source: target.source.as_deref(),
            prediction,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!("{:>12}  file", target.name);
    for r in &rows {
        println!("{:>12.4}  {}", r.prediction, r.file);
    }
    Ok(())
}

struct Predict<'a> {
    bundle: &'a Bundle,
    cifs: &'a [(String, String)],
}

impl OnDevice for Predict<'_> {
    type Output = anyhow::Result<Vec<f64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.bundle.property_model::<B::InnerBackend>(&device)?;
        // Every CIF is read before anything is computed, so a bad file fails fast by name.
        let items = self
            .cifs
            .iter()
            .map(|(name, cif)| {
                self.bundle
                    .structure_input
                    .from_cif(cif)
                    .map_err(|e| BadInput(format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.bundle.predict(&model, &items, &device)?)
    }
}
