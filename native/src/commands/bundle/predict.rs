//! `xtal predict --bundle B cif …`: a property bundle's prediction for each CIF's first
//! structure, in the target's units; or the components of a CLIP bundle's tensor head, from
//! CIFs (a head over structure embeddings) or `--text` (a head over text embeddings). The
//! models and their scaling are core's, as on the page.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use xtal_core::bundle::{Bundle, BundledModel};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::train::spec::Modality;

use super::common::{LimitArgs, open_kind};
use super::embed::{cif_items, read_cifs};
use crate::exit::BadInput;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// A property bundle (`xtal bundle pack --run` of an `xtal train property` run), or a
    /// CLIP bundle with a tensor head (packed from an `xtal train tensor` run).
    #[arg(long)]
    bundle: PathBuf,
    /// CIF files; each file's first structure is predicted.
    #[arg(required_unless_present = "text")]
    cifs: Vec<PathBuf>,
    /// A description to predict from (repeatable), for a tensor head over text embeddings.
    #[arg(long, conflicts_with = "cifs")]
    text: Vec<String>,
    /// Print JSON: [{file, target, source, prediction}] for a property bundle,
    /// [{file | text, mode, components: {name: value}}] for a tensor head.
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
    let bundle = open_kind(&args.bundle, &args.limits.limits(), &["property", "clip"])?;
    if let BundledModel::Clip(_) = bundle.manifest.model.model {
        return predict_tensors(&args, &bundle);
    }
    let (_, target) = bundle.property()?;
    if !args.text.is_empty() {
        return Err(BadInput(format!(
            "--text: {} is a property bundle, which predicts from CIFs",
            args.bundle.display()
        ))
        .into());
    }
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

/// A CLIP bundle's tensor head over the embeddings of its modality.
fn predict_tensors(args: &PredictArgs, bundle: &Bundle) -> anyhow::Result<()> {
    let head = bundle.tensor_head().map_err(|e| {
        BadInput(format!(
            "{}: {e}; `xtal predict` runs property bundles and tensor heads",
            args.bundle.display()
        ))
    })?;
    let (input, labels): (Input, Vec<(&str, String)>) = match head.modality {
        Modality::Text if args.text.is_empty() => {
            return Err(BadInput(format!(
                "{}: the tensor head reads text embeddings; give descriptions with --text",
                args.bundle.display()
            ))
            .into());
        }
        Modality::Text => (
            Input::Texts(&args.text),
            args.text.iter().map(|t| ("text", t.clone())).collect(),
        ),
        Modality::Graph if !args.text.is_empty() => {
            return Err(BadInput(format!(
                "--text: {}'s tensor head reads structure embeddings; give CIF files",
                args.bundle.display()
            ))
            .into());
        }
        Modality::Graph => {
            let cifs = read_cifs(&args.cifs)?;
            let labels = cifs.iter().map(|(f, _)| ("file", f.clone())).collect();
            (Input::Cifs(cifs), labels)
        }
    };
    let device = crate::commands::one_device(&args.device)?;
    let values = run_on(&device, PredictTensors { bundle, input })??;
    let mode = head.targets.mode;
    let names = mode.component_names();
    let rows: Vec<serde_json::Value> = labels
        .iter()
        .zip(values.chunks(names.len()))
        .map(|((key, label), v)| {
            let components: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .zip(v)
                .map(|(n, x)| (n.to_string(), (*x).into()))
                .collect();
            serde_json::json!({ *key: label, "mode": mode.name(), "components": components })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let header: Vec<String> = names.iter().map(|n| format!("{n:>10}")).collect();
    println!("{}  {}", header.join(" "), labels[0].0);
    for ((_, label), v) in labels.iter().zip(values.chunks(names.len())) {
        let cells: Vec<String> = v.iter().map(|x| format!("{x:>10.4}")).collect();
        println!("{}  {label}", cells.join(" "));
    }
    Ok(())
}

enum Input<'a> {
    Texts(&'a [String]),
    /// (file name, CIF text)
    Cifs(Vec<(String, String)>),
}

struct PredictTensors<'a> {
    bundle: &'a Bundle,
    input: Input<'a>,
}

impl OnDevice for PredictTensors<'_> {
    type Output = anyhow::Result<Vec<f64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let bundle = self.bundle;
        let model = bundle.model::<B::InnerBackend>(&device)?;
        let head = bundle.tensor_head_model::<B::InnerBackend>(&device)?;
        let embeddings = match self.input {
            Input::Texts(texts) => {
                let t: Vec<&str> = texts.iter().map(String::as_str).collect();
                bundle.embed_texts(&model, &t, &device)?
            }
            Input::Cifs(files) => {
                let items = cif_items(bundle, &files)?;
                bundle.embed_structures(&model, &items, &device)?
            }
        };
        Ok(bundle.predict_tensors(&head, embeddings)?)
    }
}

struct Predict<'a> {
    bundle: &'a Bundle,
    cifs: &'a [(String, String)],
}

impl OnDevice for Predict<'_> {
    type Output = anyhow::Result<Vec<f64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.bundle.property_model::<B::InnerBackend>(&device)?;
        let items = cif_items(self.bundle, self.cifs)?;
        Ok(self.bundle.predict(&model, &items, &device)?)
    }
}
