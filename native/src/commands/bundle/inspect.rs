//! `xtal bundle inspect` and `xtal bundle verify`.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use xtal_core::bundle::{Bundle, BundledModel};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::structure::StructureEncoderConfig;

use super::common::{LimitArgs, human_bytes, open};
use super::pack::precision_line;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The bundle file.
    bundle: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

pub(super) fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bundle = open(&args.bundle, &args.limits.limits())?;
    let m = &bundle.manifest;
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!(
        "{}  ({}, {} v{}, packed by xtal {} on {})",
        args.bundle.display(),
        human_bytes(bundle.size as u64),
        m.format,
        m.format_version,
        m.xtal_version,
        m.created
    );
    println!(
        "model      {} — {} parameters ({}), {}-D {}",
        m.model.model.kind(),
        m.model.parameters,
        m.model.weights_dtype,
        m.model.embed_dim,
        if m.model.model.kind() == "ssl" {
            "features"
        } else {
            "embeddings"
        }
    );
    let s = &m.structure_input;
    let fitted = s
        .fitted_on
        .map(|n| format!(", normalisers fitted on {n} rows"))
        .unwrap_or_default();
    match &m.model.model {
        BundledModel::Clip(c) => {
            println!("text       {}", c.text.describe());
            println!(
                "structure  {}-D {} → {} projector{fitted}",
                s.dim,
                match (s.kind.as_str(), &c.graph) {
                    ("ftcp", _) => "FTCP (embeds CIFs)".to_string(),
                    ("graph", Some(g)) => format!("{} (embeds CIFs)", encoder_line(g)),
                    _ => "precomputed vectors".to_string(),
                },
                if c.structure.hidden.is_empty() {
                    "linear".to_string()
                } else {
                    format!("MLP {:?}", c.structure.hidden)
                },
            );
        }
        BundledModel::Property(c, target) => {
            println!(
                "predicts   {}{} (training mean {:.4}, std {:.4})",
                target.name,
                target
                    .source
                    .as_ref()
                    .map(|s| format!(" of {s} records"))
                    .unwrap_or_default(),
                target.scale.mean,
                target.scale.std
            );
            println!(
                "structure  {} → {}-D → MLP head of {} (reads CIFs)",
                encoder_line(&c.encoder),
                s.dim,
                c.head_hidden
            );
        }
        BundledModel::Ssl(c) => {
            let ftcp = s.ftcp.map(|f| format!("{} × {}", f.rows(), f.cols()));
            println!(
                "structure  FTCP tensor {} (reads CIFs) → six blocks ({}) → {}-D features",
                ftcp.unwrap_or_default(),
                c.blocks
                    .iter()
                    .map(|b| format!("{} width {}", b.kind.name(), b.width))
                    .collect::<Vec<_>>()
                    .join(", "),
                m.model.embed_dim
            );
        }
    }
    if let Some(h) = &m.tensor_head {
        let hidden = if h.config.hidden.is_empty() {
            "linear".to_string()
        } else {
            format!("MLP {:?}", h.config.hidden)
        };
        println!(
            "tensor     head over {} embeddings → {} ({} mode; {hidden}, {} parameters); xtal predict",
            h.modality,
            h.targets.mode.component_names().join(", "),
            h.targets.mode.name(),
            h.parameters
        );
    }
    match &m.index {
        Some(i) => println!(
            "index      {} entries ({}): {} embeddings{}{}",
            i.entries,
            i.dtype,
            [("structure", i.structure), ("text", i.text)]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and "),
            if i.map { ", 2-D map" } else { "" },
            i.dataset
                .as_ref()
                .map(|d| format!(", from {d}"))
                .unwrap_or_default()
        ),
        None => println!("index      none"),
    }
    if let Some(check) = &m.f16_check {
        println!("f16        {}", precision_line(check));
    }
    if let Some(check) = &m.int8_check {
        println!("int8       {}", precision_line(check));
    }
    if let Some(src) = &m.source {
        // An SSL run's blocks each have their own best epoch.
        let epoch = match src["epochs"].as_object() {
            Some(blocks) => format!(
                "epochs {}",
                blocks
                    .iter()
                    .map(|(block, e)| format!("{block} {e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("epoch {}", src["epoch"]),
        };
        println!(
            "source     run {} ({} checkpoint, {epoch})",
            src["run"].as_str().unwrap_or("?"),
            src["checkpoint"].as_str().unwrap_or("?"),
        );
    }
    println!("entries");
    for e in &m.entries {
        println!(
            "  {:<32} {:>10}  sha256 {}…",
            e.name,
            human_bytes(e.size),
            &e.sha256[..16.min(e.sha256.len())]
        );
    }
    if let Some(card) = &bundle.card {
        println!("model card: {} lines (README.md)", card.lines().count());
    }
    Ok(())
}

fn encoder_line(g: &StructureEncoderConfig) -> String {
    format!(
        "{} graph encoder, {} layers of {}",
        g.backbone, g.layers, g.hidden
    )
}

struct BuildModel<'a>(&'a Bundle);

impl OnDevice for BuildModel<'_> {
    type Output = Result<usize, xtal_core::bundle::BundleError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        use burn::module::Module;
        Ok(match &self.0.manifest.model.model {
            BundledModel::Clip(_) => self.0.model::<B::InnerBackend>(&device)?.num_params(),
            BundledModel::Property(..) => self
                .0
                .property_model::<B::InnerBackend>(&device)?
                .num_params(),
            BundledModel::Ssl(_) => self.0.ssl_model::<B::InnerBackend>(&device)?.num_params(),
        })
    }
}

pub(super) fn verify(args: InspectArgs) -> anyhow::Result<()> {
    let bundle = open(&args.bundle, &args.limits.limits())?;
    let params = run_on(&crate::commands::one_device("cpu")?, BuildModel(&bundle))?
        .with_context(|| format!("{}", args.bundle.display()))?;
    let m = &bundle.manifest;
    let report = json!({
        "bundle": args.bundle.display().to_string(),
        "ok": true,
        "entries_verified": m.entries.len(),
        "tensors": bundle.tensors.len(),
        "parameters": params,
        "index_entries": m.index.as_ref().map(|i| i.entries),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "ok: {} — {} entries match their sizes and sha256; {} tensors ({} parameters) match the configuration{}",
            args.bundle.display(),
            m.entries.len(),
            bundle.tensors.len(),
            params,
            m.index
                .as_ref()
                .map(|i| format!("; index of {} entries is consistent", i.entries))
                .unwrap_or_default()
        );
    }
    Ok(())
}
