//! Structure embeddings from a trained run with a graph encoder: `xtal embed --run R cif …`
//! (a CLIP run gives its joint-space unit vectors, a property run its encoder's structure
//! embedding), and `xtal embed --run R dataset D -o OUT`, which writes the original CLIP
//! system's layout — `OUT/dataset.jsonl` + `OUT/graph_emb/{id}.npy` — so the precomputed-
//! embedding path (`xtal train clip --data OUT`) reads them as it read EquiformerV2's.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde_json::{Value, json};
use xtal_core::data::StructureGraphs;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{ElementTable, GraphConfig};
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
        match dir.family().as_deref() {
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
    graphs: &'a StructureGraphs,
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
        let items: Vec<usize> = (0..self.graphs.len()).collect();
        let batches = items.chunks(BATCH).map(|chunk| {
            self.graphs
                .batch(chunk, self.table)
                .map(|b| b.to_tensors::<B::InnerBackend>(&device))
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
    embed_graphs(run, &kind, &StructureGraphs::owned(graphs), &table, device)
}

/// Embeddings `[n, dim]` of `graphs` with the run's model.
fn embed_graphs(
    run: &Path,
    kind: &GraphRun,
    graphs: &StructureGraphs,
    table: &ElementTable,
    device: &str,
) -> anyhow::Result<(Vec<f32>, usize)> {
    let device = crate::commands::one_device(device)?;
    run_on(
        &device,
        EmbedGraphs {
            run,
            kind,
            graphs,
            table,
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
    let kind = GraphRun::open(run)?;
    let table = kind.data().element_table()?;
    let source = DataSource::new(data, None)?;
    let all = source.json_records()?;
    let named: Vec<&Value> = all
        .iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty() && xtal_core::data::is_plain_name(id))
        })
        .collect();
    let indices: Vec<Option<usize>> = named
        .iter()
        .map(|r| r["graph_index"].as_u64().map(|k| k as usize))
        .collect();
    let (found, store) = source.graph_rows(&indices, &kind.graph_config(), &table)?;
    let (records, stored): (Vec<&Value>, Vec<usize>) = named
        .into_iter()
        .zip(found)
        .filter_map(|(r, k)| k.ok().map(|k| (r, k)))
        .unzip();
    let skipped = all.len() - records.len();
    let graphs = StructureGraphs::new(store, stored);
    let (vectors, dim) = embed_graphs(run, &kind, &graphs, &table, device)?;
    let staged = StagedDir::new(out, force)?;
    std::fs::create_dir_all(staged.file("graph_emb"))?;
    let mut lines = String::new();
    for (r, v) in records.iter().zip(vectors.chunks(dim.max(1))) {
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
        "{} structure embeddings of {dim} values → {}/graph_emb/ (+ dataset.jsonl); {skipped} records without a usable graph (see failures.csv of the dataset) or with an id unusable as a file name",
        records.len(),
        out.display()
    );
    Ok(())
}
