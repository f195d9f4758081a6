//! `xtal bundle pack --run R` of an `xtal ssl train` run: the six blocks, the FTCP settings,
//! the run's row min–max scaling and the element table of its dataset, so that
//! `xtal embed --bundle B cif …` and the page turn a CIF into the run's 2048-D features.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde_json::{Value, json};
use xtal_core::bundle::{
    Bundle, FtcpInput, Limits, PackInput, PackModel, Precision, StructureInput, pack,
};
use xtal_core::data::StructureItem;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::ftcp_ssl::{BlockKind, SslEncoder, SslEncoderConfig};
use xtal_core::train::ssl::SslData;
use xtal_core::train::{model_from_bytes, to_host};

use super::common::human_bytes;
use super::pack::{PackArgs, card_or, now};
use crate::commands::ssl::run_info::SslRunInfo;
use crate::data::pairs::DataSource;
use crate::exit::BadInput;
use crate::output::write_atomic;

/// Validation tensors the f16 or int8 check compares features on.
const F16_CHECK_ROWS: usize = 256;

pub(super) fn pack_ssl_run(args: &PackArgs) -> anyhow::Result<()> {
    super::pack::refuse_index_options(args, "an SSL")?;
    let started = Instant::now();
    let info = SslRunInfo::load(&args.run)?;
    let dataset = &info.source.data;
    if !dataset.is_dir() {
        return Err(BadInput(format!(
            "{}: trained on the bare tensors {}; a bundle makes FTCP tensors from CIFs as `xtal prepare` made them (its element table and settings), so pack a run trained on a prepared dataset",
            args.run.display(),
            dataset.display()
        ))
        .into());
    }
    let table = DataSource::new(dataset, None)?.element_table()?;
    let element_table = Some(table.source.clone());
    let structure_input = StructureInput::FtcpTensor(FtcpInput {
        config: info.layout,
        table,
        minmax: info.normalizer.clone(),
    });
    let config = SslEncoderConfig {
        blocks: BlockKind::ALL.map(|k| info.config(k)).to_vec(),
    };
    let mut checkpoints = Vec::new();
    let mut epochs = serde_json::Map::new();
    for kind in BlockKind::ALL {
        let dir = SslRunInfo::block_dir(&args.run, kind);
        if !dir.checkpoint_path(&args.checkpoint).is_file() {
            return Err(BadInput(format!(
                "{}: block {} ({}) has no {} checkpoint; train it with `xtal ssl train --block {}`",
                args.run.display(),
                kind.number(),
                kind.name(),
                args.checkpoint,
                kind.number()
            ))
            .into());
        }
        let c = dir.load_checkpoint(&args.checkpoint)?;
        epochs.insert(kind.name().into(), json!(c.state.epoch));
        checkpoints.push((dir.checkpoint_path(&args.checkpoint), c.model));
    }
    // The validation tensors measure what f16 or int8 storage changes.
    let rows = if args.precision() != Precision::F32 {
        Some(info.source.load(Some(&info.normalizer))?.data)
    } else {
        None
    };
    let source = json!({
        "run": args.run.display().to_string(),
        "checkpoint": args.checkpoint,
        "epochs": epochs,
        "data": dataset.display().to_string(),
    });
    let card = card_or(args, || model_card(args, &info, &config))?;
    let device = crate::commands::one_device(&args.device)?;
    let (bytes, precision_check) = run_on(
        &device,
        PackSsl {
            checkpoints,
            config: &config,
            structure_input: &structure_input,
            element_table,
            card,
            precision: args.precision(),
            created: now(),
            source,
            rows: rows.as_ref(),
        },
    )??;
    write_atomic(&args.out, &bytes)?;
    eprintln!(
        "packed {} ({}, six SSL blocks, {} parameters, {}-D features{}) in {:.1} s",
        args.out.display(),
        human_bytes(bytes.len() as u64),
        config.parameter_count(),
        xtal_core::models::ftcp_ssl::FEATURE_DIM,
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

fn model_card(args: &PackArgs, info: &SslRunInfo, config: &SslEncoderConfig) -> String {
    let l = &info.layout;
    format!(
        "# xtal FTCP self-supervised encoder\n\n\
         Packed from run `{}` ({} checkpoints), trained on `{}`.\n\n\
         - Input: the FTCP tensor of a CIF's first structure ({} × {}: up to {} elements and \
         {} sites), each part scaled by the run's row min–max (fitted on its training rows)\n\
         - Blocks: {}\n\
         - Output: 2048-D features (256 + 256 + 512 + 256 + 512 + 256), each block's part \
         normalised per material, as `xtal ssl extract` writes them\n",
        args.run.display(),
        args.checkpoint,
        info.source.data.display(),
        l.rows(),
        l.cols(),
        l.max_elements,
        l.max_sites,
        config
            .blocks
            .iter()
            .map(|b| format!(
                "{} ({}-D, width {}, {} layers)",
                b.kind.name(),
                b.kind.output_dim(),
                b.width,
                b.layers
            ))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

struct PackSsl<'a> {
    /// Each block's checkpoint file and model bytes, in feature order.
    checkpoints: Vec<(PathBuf, Vec<u8>)>,
    config: &'a SslEncoderConfig,
    structure_input: &'a StructureInput,
    element_table: Option<String>,
    card: String,
    precision: Precision,
    created: String,
    source: Value,
    rows: Option<&'a SslData>,
}

impl OnDevice for PackSsl<'_> {
    type Output = anyhow::Result<(Vec<u8>, Option<Value>)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let blocks = self
            .config
            .blocks
            .iter()
            .zip(self.checkpoints)
            .map(|(c, (path, bytes))| {
                model_from_bytes(c.init(&device), bytes, &device)
                    .map_err(|e| BadInput(format!("{}: {e}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let model: SslEncoder<B::InnerBackend> = SslEncoder { blocks };
        let bytes = |precision: Precision, precision_check: Option<Value>| {
            pack(PackInput {
                tensor_head: None,
                model: PackModel::Ssl {
                    model: &model,
                    config: self.config,
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
        let Some(data) = self.rows.filter(|_| self.precision != Precision::F32) else {
            return Ok((bytes(Precision::F32, None)?, None));
        };
        // What f16 or int8 storage changes: validation features, stored vs f32 model,
        // through the bundle's own feature path.
        let f32_bundle = Bundle::from_bytes(&bytes(Precision::F32, None)?, &Limits::default())?;
        let stored = Bundle::from_bytes(&bytes(self.precision, None)?, &Limits::default())?;
        let stored_model = stored.ssl_model::<B::InnerBackend>(&device)?;
        let val: Vec<usize> = data
            .indices(true)
            .into_iter()
            .take(F16_CHECK_ROWS)
            .collect();
        let items: Vec<StructureItem> = val
            .iter()
            .map(|&i| StructureItem::Vector(data.raw_row(i).to_vec()))
            .collect();
        let f32s = to_host(f32_bundle.ssl_features(&model, &items, &device)?)?;
        let stored_features = to_host(stored.ssl_features(&stored_model, &items, &device)?)?;
        let check = json!({
            "rows": val.len(),
            "max_abs_diff_feature": f32s.iter().zip(&stored_features).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max),
        });
        Ok((bytes(self.precision, Some(check.clone()))?, Some(check)))
    }
}
