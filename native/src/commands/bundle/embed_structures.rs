//! Structure embeddings from a trained run with a graph encoder: `xtal embed --run R cif …`
//! (a CLIP run gives its joint-space unit vectors, a property run its encoder's structure
//! embedding), and `xtal embed --run R dataset D -o OUT`, which writes the original CLIP
//! system's layout — `OUT/dataset.jsonl` + `OUT/graph_emb/{id}.npy` — so the precomputed-
//! embedding path (`xtal train clip --data OUT`) reads them as it read EquiformerV2's.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde_json::{Value, json};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{CrystalGraph, ElementTable, GraphBatch, GraphConfig};
use xtal_core::models::clip::{Clip, StructureBatch};
use xtal_core::models::property::PropertyModel;
use xtal_core::structure::{CifOptions, Structure, read_cif};
use xtal_core::train::{model_from_bytes, to_host};

use crate::data::pairs::{DataSource, checked_graph};
use crate::exit::BadInput;
use crate::output::{StagedDir, write_npy};
use crate::run_dir::RunDir;

/// Graphs per forward pass.
const BATCH: usize = 64;

/// What a run embeds structures with.
enum GraphRun {
    Clip(Box<crate::run_dir::RunInfo>),
    Property(Box<crate::commands::property::PropertyRunInfo>),
}

impl GraphRun {
    fn open(run: &Path) -> anyhow::Result<Self> {
        let dir = RunDir::new(run);
        let family = std::fs::read_to_string(dir.file("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["family"].as_str().map(String::from));
        match family.as_deref() {
            Some("property") => Ok(GraphRun::Property(Box::new(
                crate::commands::property::PropertyRunInfo::load(&dir)?,
            ))),
            _ => {
                let info = dir.info()?;
                if info.model.graph.is_none() {
                    return Err(BadInput(format!(
                        "{}: this CLIP run reads precomputed structure vectors; only runs with a graph encoder (model.graph_backbone cgcnn or painn) embed structures",
                        run.display()
                    ))
                    .into());
                }
                Ok(GraphRun::Clip(Box::new(info)))
            }
        }
    }

    fn graph_config(&self) -> GraphConfig {
        match self {
            GraphRun::Clip(i) => i.model.graph.as_ref().map(|g| g.graph).unwrap_or_default(),
            GraphRun::Property(i) => i.model.encoder.graph,
        }
    }

    fn data(&self) -> &DataSource {
        match self {
            GraphRun::Clip(i) => &i.data,
            GraphRun::Property(i) => &i.data,
        }
    }
}

struct EmbedGraphs<'a> {
    run: &'a Path,
    kind: &'a GraphRun,
    graphs: &'a [CrystalGraph],
    table: &'a ElementTable,
}

impl OnDevice for EmbedGraphs<'_> {
    type Output = anyhow::Result<(Vec<f32>, usize)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let dir = RunDir::new(self.run);
        let which = if dir.checkpoint_path("best").is_file() {
            "best"
        } else {
            "last"
        };
        let bytes = dir.load_checkpoint(which)?.model;
        let bad = |e: String| BadInput(format!("{}: {e}", dir.checkpoint_path(which).display()));
        let mut out = Vec::new();
        let mut dim = 0;
        let batches = self.graphs.chunks(BATCH).map(|chunk| {
            let refs: Vec<&CrystalGraph> = chunk.iter().collect();
            GraphBatch::new(&refs, self.table).map(|b| b.to_tensors::<B::InnerBackend>(&device))
        });
        match self.kind {
            GraphRun::Clip(info) => {
                let model: Clip<B::InnerBackend> =
                    model_from_bytes(info.model.init(&device), bytes, &device)
                        .map_err(|e| bad(e.to_string()))?;
                for g in batches {
                    let e = model.encode_structures(StructureBatch::Graphs(
                        g.map_err(|e| BadInput(e.to_string()))?,
                    ));
                    dim = e.dims()[1];
                    out.extend(to_host(e)?);
                }
            }
            GraphRun::Property(info) => {
                let model: PropertyModel<B::InnerBackend> =
                    model_from_bytes(info.model.init(&device), bytes, &device)
                        .map_err(|e| bad(e.to_string()))?;
                for g in batches {
                    let e = model
                        .encoder
                        .forward(&g.map_err(|e| BadInput(e.to_string()))?);
                    dim = e.dims()[1];
                    out.extend(to_host(e)?);
                }
            }
        }
        Ok((out, dim))
    }
}

/// Embeddings `[n, dim]` of `structures` (labelled for errors) with the run's model.
pub fn embed_structures(
    run: &Path,
    structures: &[(String, Structure)],
    device: &str,
) -> anyhow::Result<(Vec<f32>, usize)> {
    let kind = GraphRun::open(run)?;
    let table = kind.data().element_table()?;
    let config = kind.graph_config();
    let graphs = structures
        .iter()
        .map(|(name, s)| {
            checked_graph(s, &config, &table).map_err(|e| BadInput(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let device = crate::commands::one_device(device)?;
    run_on(
        &device,
        EmbedGraphs {
            run,
            kind: &kind,
            graphs: &graphs,
            table: &table,
        },
    )?
}

/// The first structure of each CIF file, labelled by its path.
pub fn read_structures(files: &[(String, String)]) -> anyhow::Result<Vec<(String, Structure)>> {
    files
        .iter()
        .map(|(name, text)| {
            let mut found = read_cif(text, &CifOptions::default())
                .map_err(|e| BadInput(format!("{name}: CIF {e}")))?;
            Ok((name.clone(), found.swap_remove(0).structure))
        })
        .collect()
}

/// Every structure of a prepared dataset embedded into `out` in the original layout.
pub fn embed_dataset(
    run: &Path,
    data: &Path,
    out: &Path,
    force: bool,
    device: &str,
) -> anyhow::Result<()> {
    let source = DataSource::new(data, None)?;
    let structures = source.structures()?;
    let mut records = Vec::new();
    let mut skipped = 0usize;
    for (_, r) in source.json_records()? {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let plain = !id.is_empty() && xtal_core::data::is_plain_name(&id);
        match r["graph_index"]
            .as_u64()
            .and_then(|k| structures.get(k as usize))
        {
            Some(s) if plain => records.push((r, s.clone())),
            _ => skipped += 1,
        }
    }
    let labelled: Vec<(String, Structure)> = records
        .iter()
        .map(|(r, s)| (r["id"].as_str().unwrap_or("").to_string(), s.clone()))
        .collect();
    let (vectors, dim) = embed_structures(run, &labelled, device)?;
    let staged = StagedDir::new(out, force)?;
    std::fs::create_dir_all(staged.file("graph_emb"))?;
    let mut lines = String::new();
    for ((r, _), v) in records.iter().zip(vectors.chunks(dim.max(1))) {
        let id = r["id"].as_str().unwrap_or("");
        write_npy(
            &staged.file(&format!("graph_emb/{id}.npy")),
            &[dim as u64],
            v,
        )?;
        let line = json!({
            "id": id, "text": r["text"], "formula": r["formula"],
            "graph_emb": format!("graph_emb/{id}.npy"),
            "tensor": r["tensor"], "group": r["group"],
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    staged.write("dataset.jsonl", lines.as_bytes())?;
    staged.commit()?;
    eprintln!(
        "{} structure embeddings of {dim} values → {}/graph_emb/ (+ dataset.jsonl); {skipped} records without a structure or with an id unusable as a file name",
        records.len(),
        out.display()
    );
    Ok(())
}
