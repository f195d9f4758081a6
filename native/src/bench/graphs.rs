//! `xtal bench --graphs DATASET`: structure-encoder throughput in graphs/s — forward (with the
//! embeddings read back) and training steps (forward, backward, AdamW) — for each backbone on
//! each device, over structures drawn from a prepared dataset so batches follow its size
//! distribution. The first device is the baseline the others are compared with.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use xtal_core::data::seeded_shuffle;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::featurize::{CrystalGraph, ElementTable, GraphBatch};
use xtal_core::models::property::PropertyModelConfig;
use xtal_core::models::structure::{GraphBackbone, StructureEncoderConfig};
use xtal_core::train::ModelOptimizer;
use xtal_core::train::spec::TrainingSpec;

use crate::data::pairs::{DataSource, checked_graph};
use crate::exit::BadInput;

pub struct GraphBench<'a> {
    pub data: &'a Path,
    pub devices: &'a [String],
    pub backbones: &'a [GraphBackbone],
    /// Structures measured per workload.
    pub structures: usize,
    pub batch_size: usize,
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    backbone: String,
    device: String,
    forward_graphs_per_s: f64,
    train_graphs_per_s: f64,
    atoms_per_graph: f64,
    edges_per_graph: f64,
}

struct Measure<'a> {
    config: &'a StructureEncoderConfig,
    graphs: &'a [CrystalGraph],
    table: &'a ElementTable,
    batch_size: usize,
}

impl OnDevice for Measure<'_> {
    /// (forward graphs/s, training graphs/s)
    type Output = anyhow::Result<(f64, f64)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        B::seed(&device, 1);
        let batches = self
            .graphs
            .chunks(self.batch_size)
            .map(|c| {
                let refs: Vec<&CrystalGraph> = c.iter().collect();
                GraphBatch::new(&refs, self.table).map_err(|e| BadInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.graphs.len() as f64;
        let encoder = self.config.init::<B::InnerBackend>(&device);
        let forward = |b: &GraphBatch| {
            let _ = encoder.forward(&b.to_tensors(&device)).into_data();
        };
        forward(&batches[0]); // warm-up (kernel compilation on GPUs)
        let start = Instant::now();
        batches.iter().for_each(forward);
        let forward_rate = n / start.elapsed().as_secs_f64();

        let mut model = PropertyModelConfig::new(self.config.clone()).init::<B>(&device);
        let settings = TrainingSpec::default().optimizer_settings(1e-3, self.graphs.len());
        let mut optimizer = ModelOptimizer::<B, _>::new(settings, []);
        let mut step = |b: &GraphBatch, model: xtal_core::models::property::PropertyModel<B>| {
            let loss = model.forward(&b.to_tensors(&device)).powi_scalar(2).mean();
            let model = optimizer.backward(model, loss).0;
            let _ = B::sync(&device);
            model
        };
        model = step(&batches[0], model);
        let start = Instant::now();
        for b in &batches {
            model = step(b, model);
        }
        let train_rate = n / start.elapsed().as_secs_f64();
        drop(model);
        Ok((forward_rate, train_rate))
    }
}

pub fn run(bench: GraphBench) -> anyhow::Result<()> {
    let source = DataSource::new(bench.data, None)?;
    let table = source.element_table()?;
    let mut structures = source.structures()?;
    seeded_shuffle(&mut structures, 3);
    let mut rows = Vec::new();
    for &backbone in bench.backbones {
        let name = backbone.to_string();
        let config = StructureEncoderConfig::of(backbone);
        let graphs: Vec<CrystalGraph> = structures
            .iter()
            .filter_map(|s| checked_graph(s, &config.graph, &table).ok())
            .take(bench.structures.max(bench.batch_size))
            .collect();
        let atoms =
            graphs.iter().map(|g| g.num_nodes()).sum::<usize>() as f64 / graphs.len() as f64;
        let edges =
            graphs.iter().map(|g| g.num_edges()).sum::<usize>() as f64 / graphs.len() as f64;
        for device in bench.devices {
            let spec = crate::commands::one_device(device)?;
            eprintln!(
                "{name} on {spec}: {} structures, batch {}",
                graphs.len(),
                bench.batch_size
            );
            let (forward, train) = run_on(
                &spec,
                Measure {
                    config: &config,
                    graphs: &graphs,
                    table: &table,
                    batch_size: bench.batch_size.max(1),
                },
            )??;
            rows.push(Row {
                backbone: name.clone(),
                device: spec.to_string(),
                forward_graphs_per_s: forward,
                train_graphs_per_s: train,
                atoms_per_graph: atoms,
                edges_per_graph: edges,
            });
        }
    }
    if bench.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<12} {:>9} {:>9} {:>12} {:>12} {:>9} {:>9}",
        "model", "device", "atoms/g", "edges/g", "forward g/s", "train g/s", "fwd ×", "train ×"
    );
    for r in &rows {
        let base = rows.iter().find(|b| b.backbone == r.backbone).unwrap_or(r);
        println!(
            "{:<8} {:<12} {:>9.1} {:>9.0} {:>12.1} {:>12.1} {:>9.2} {:>9.2}",
            r.backbone,
            r.device,
            r.atoms_per_graph,
            r.edges_per_graph,
            r.forward_graphs_per_s,
            r.train_graphs_per_s,
            r.forward_graphs_per_s / base.forward_graphs_per_s,
            r.train_graphs_per_s / base.train_graphs_per_s
        );
    }
    println!("(× = ratio to the first device of the same model)");
    Ok(())
}
