//! `xtal bundle pack --run R` of an `xtal train property` run: the graph encoder and its head,
//! the target's scaling and the element table, so `xtal predict` and the page predict the
//! property from a CIF.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde_json::{Value, json};
use xtal_core::bundle::{
    Bundle, GraphInput, Limits, PackInput, PackModel, Precision, PropertyTarget, StructureInput,
    pack,
};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::property::PropertyModel;
use xtal_core::train::model_from_bytes;
use xtal_core::train::property::{PropertyRows, mean_absolute_error, predict_property};

use super::common::human_bytes;
use super::pack::{PackArgs, card_or, now, run_summary};
use crate::commands::property::{PropertyRunInfo, property_rows};
use crate::output::write_atomic;
use crate::run_dir::RunDir;

pub(super) fn pack_property_run(args: &PackArgs) -> anyhow::Result<()> {
    super::pack::refuse_index_options(args, "a property")?;
    let started = Instant::now();
    let run = RunDir::new(&args.run);
    let info = PropertyRunInfo::load(&run)?;
    let checkpoint = run.load_checkpoint(&args.checkpoint)?;
    let table = info.data.element_table()?;
    let element_table = Some(table.source.clone());
    let structure_input = StructureInput::Graph(GraphInput {
        config: info.model.encoder.graph,
        table,
    });
    // The validation rows measure what f16 or int8 storage changes.
    let rows = if args.precision() != Precision::F32 {
        Some(
            property_rows(
                &info.data,
                &info.target,
                info.source.as_deref(),
                &info.model.encoder,
            )?
            .0,
        )
    } else {
        None
    };
    let summary = run_summary(&run);
    let source = json!({
        "run": args.run.display().to_string(),
        "checkpoint": args.checkpoint,
        "epoch": checkpoint.state.epoch,
        "data": info.data.jsonl.display().to_string(),
        "validation_mae": summary.get("validation_mae").cloned().unwrap_or_default(),
        "composition_baseline_mae": summary.get("composition_baseline_mae").cloned().unwrap_or_default(),
    });
    let card = card_or(args, || {
        model_card(args, &info, checkpoint.state.epoch, &summary)
    })?;
    let created = now();
    let device = crate::commands::one_device(&args.device)?;
    let (bytes, precision_check) = run_on(
        &device,
        PackProperty {
            weights: checkpoint.model,
            info: &info,
            structure_input: &structure_input,
            element_table,
            card,
            precision: args.precision(),
            created,
            source,
            rows: rows.as_ref(),
        },
    )??;
    write_atomic(&args.out, &bytes)?;
    eprintln!(
        "packed {} ({}, property model for {}, {} parameters{}) in {:.1} s",
        args.out.display(),
        human_bytes(bytes.len() as u64),
        info.target,
        info.model.parameter_count(),
        args.precision_label(),
        started.elapsed().as_secs_f64()
    );
    if let Some(check) = precision_check {
        eprintln!(
            "{} check: {}",
            args.precision().name(),
            super::pack::precision_line(&check)
        );
    }
    Ok(())
}

fn model_card(args: &PackArgs, info: &PropertyRunInfo, epoch: usize, summary: &Value) -> String {
    let number = |k: &str| {
        summary[k]
            .as_f64()
            .map_or("?".into(), |v| format!("{v:.4}"))
    };
    let e = &info.model.encoder;
    format!(
        "# xtal property model: {}\n\n\
         Packed from run `{}` ({} checkpoint, epoch {epoch}), trained on `{}`{}.\n\n\
         - Structure: {} graph encoder over crystal graphs ({} Å cutoff), {} layers of {}, \
         {}-D embedding, MLP head; the bundle reads CIFs itself\n\
         - Output: {} in the training data's units (training mean {:.4}, std {:.4})\n\n\
         Held-out MAE at packing: {} (composition-only ridge baseline {}).\n",
        info.target,
        args.run.display(),
        args.checkpoint,
        info.data.jsonl.display(),
        info.source
            .as_ref()
            .map(|s| format!(", records of source `{s}`"))
            .unwrap_or_default(),
        e.backbone,
        e.graph.cutoff,
        e.layers,
        e.hidden,
        e.output_dim,
        info.target,
        info.scale.mean,
        info.scale.std,
        number("validation_mae"),
        number("composition_baseline_mae"),
    )
}

struct PackProperty<'a> {
    weights: Vec<u8>,
    info: &'a PropertyRunInfo,
    structure_input: &'a StructureInput,
    element_table: Option<String>,
    card: String,
    precision: Precision,
    created: String,
    source: Value,
    rows: Option<&'a PropertyRows>,
}

impl OnDevice for PackProperty<'_> {
    type Output = anyhow::Result<(Vec<u8>, Option<Value>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let config = &self.info.model;
        let model: PropertyModel<B::InnerBackend> =
            model_from_bytes(config.init(&device), self.weights, &device)?;
        let bytes = |precision: Precision, precision_check: Option<Value>| {
            pack(PackInput {
                tensor_head: None,
                model: PackModel::Property {
                    model: &model,
                    config,
                    target: PropertyTarget {
                        name: self.info.target.clone(),
                        source: self.info.source.clone(),
                        scale: self.info.scale,
                    },
                },
                structure_input: self.structure_input,
                element_table_source: self.element_table.clone(),
                fitted_on: None,
                index: None,
                card: Some(self.card.clone()),
                precision,
                created: self.created.clone(),
                xtal_version: env!("CARGO_PKG_VERSION").into(),
                source: Some(self.source.clone()),
                precision_check,
            })
        };
        let Some(rows) = self.rows.filter(|_| self.precision != Precision::F32) else {
            return Ok((bytes(Precision::F32, None)?, None));
        };
        // What f16 or int8 storage changes: the validation predictions, stored vs f32 model.
        let stored = Bundle::from_bytes(&bytes(self.precision, None)?, &Limits::default())?;
        let stored_model = stored.property_model::<B::InnerBackend>(&device)?;
        let val = rows.indices(true);
        let truth: Vec<f64> = val.iter().map(|&i| rows.targets[i]).collect();
        let scale = self.info.scale;
        let p32 = predict_property(&model, rows, &val, 64, scale, &device)?;
        let p_stored = predict_property(&stored_model, rows, &val, 64, scale, &device)?;
        let mut check = json!({
            "rows": val.len(),
            "max_abs_diff_prediction": p32.iter().zip(&p_stored).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max),
            "mae_f32": mean_absolute_error(&p32, &truth),
        });
        check[format!("mae_{}", self.precision.name())] =
            json!(mean_absolute_error(&p_stored, &truth));
        Ok((bytes(self.precision, Some(check.clone()))?, Some(check)))
    }
}
