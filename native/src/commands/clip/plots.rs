//! A CLIP run's pictures: loss and retrieval curves, t-SNE of pairs, similarity heatmap, cosine
//! histogram.

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use serde_json::Value;
use xtal_core::data::PairSet;
use xtal_core::device::{DeviceSpec, Flex, run_on};
use xtal_core::metrics::retrieval_metrics;
use xtal_core::models::clip::ClipConfig;
use xtal_core::train::spec::RunSpec;
use xtal_core::viz::{TsneConfig, tsne};

use super::run::EmbedTask;
use crate::plots::{self, CosineHistogram, Curves, Heatmap, PairMap};
use crate::run_dir::RunDir;

/// The items plotted: the first `n` of a seeded order of `idx` (`visualize_n_samples` during
/// training, `n_samples_tsne` after it).
pub(super) fn plotted_subset(idx: &[usize], spec: &RunSpec, n: usize) -> Vec<usize> {
    let mut order = idx.to_vec();
    xtal_core::data::seeded_shuffle(&mut order, spec.visualization.tsne_seed);
    order.truncate(n.max(2));
    order
}

/// Unmatched cosines in the histogram, at most: 32 MB of f64 whatever the validation size.
const HISTOGRAM_PAIRS: usize = 1 << 22;

/// t-SNE map, heatmap, histogram and `similarity_metrics.json` of paired unit embeddings.
pub(super) fn embedding_plots(
    s: &[f32],
    t: &[f32],
    d: usize,
    spec: &RunSpec,
    dir: &Path,
    label: &str,
) -> anyhow::Result<usize> {
    let n = s.len() / d.max(1);
    let device = Default::default();
    let on_cpu =
        |x: &[f32]| Tensor::<Flex, 2>::from_data(TensorData::new(x.to_vec(), [n, d]), &device);
    let metrics = retrieval_metrics(on_cpu(s), on_cpu(t))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(&metrics)?;
    text.push('\n');
    crate::output::write_atomic(&dir.join("similarity_metrics.json"), text.as_bytes())?;

    let v = &spec.visualization;
    let mut both = s.to_vec();
    both.extend_from_slice(t);
    let map = tsne(
        &both,
        2 * n,
        d,
        &TsneConfig {
            perplexity: v.tsne_perplexity,
            iterations: 1000,
            seed: v.tsne_seed,
        },
    );
    let mut files = plots::save(
        &PairMap {
            title: format!("t-SNE of {n} validation pairs ({label})"),
            structure: map[..n].to_vec(),
            text: map[n..].to_vec(),
            connect: v.tsne_connect_k,
        },
        dir,
        "tsne_pairs",
    )?;
    let cosine = |i: usize, j: usize| -> f32 { (0..d).map(|c| s[i * d + c] * t[j * d + c]).sum() };
    let k = v.heatmap_size.min(n);
    let block: Vec<f32> = (0..k)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| cosine(i, j))
        .collect();
    files.extend(plots::save(
        &Heatmap {
            title: format!("cosine similarity, first {k} validation pairs ({label})"),
            k,
            values: block,
        },
        dir,
        "similarity_heatmap",
    )?);
    let matched: Vec<f64> = (0..n).map(|i| cosine(i, i) as f64).collect();
    // Every unmatched pair up to HISTOGRAM_PAIRS; past that, all pairs of the first rows (the
    // validation pairs are in shuffled order, so those rows are a random sample of queries).
    let rows = (HISTOGRAM_PAIRS / n.saturating_sub(1).max(1)).clamp(1, n);
    let unmatched: Vec<f64> = (0..rows)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| cosine(i, j) as f64)
        .collect();
    files.extend(plots::save(
        &CosineHistogram {
            title: format!("matched vs unmatched cosine ({label})"),
            matched,
            unmatched,
            bins: 50,
        },
        dir,
        "cosine_histogram",
    )?);
    Ok(files.len())
}

/// Loss and retrieval curves from metrics.jsonl.
pub(super) fn curve_plots(run: &RunDir, dir: &Path) -> anyhow::Result<usize> {
    let lines = run.read_metrics();
    let get = |kind: &str, x: &str, y: &str| -> Vec<(f64, f64)> {
        lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .filter_map(|l| Some((l[x].as_f64()?, l[y].as_f64()?)))
            .collect()
    };
    let mut loss = vec![
        (
            "train loss (steps)".to_string(),
            get("step", "epoch_progress", "loss"),
        ),
        (
            "train loss (epoch mean)".to_string(),
            get("epoch", "epoch", "train_loss"),
        ),
        (
            "validation loss".to_string(),
            get("epoch", "epoch", "val_loss"),
        ),
    ];
    loss.retain(|(_, s)| !s.is_empty());
    let mut files = plots::save(
        &Curves {
            title: "CLIP loss".into(),
            x_label: "epoch".into(),
            y_label: "symmetric cross-entropy".into(),
            series: loss,
            references: Vec::new(),
        },
        dir,
        "loss",
    )?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = [
        ("Recall@1 structure→text", "val_r1_g2t"),
        ("Recall@10 structure→text", "val_r10_g2t"),
        ("Recall@1 text→structure", "val_r1_t2g"),
        ("Recall@10 text→structure", "val_r10_t2g"),
        ("in-batch top-1 s→t", "val_acc_g2t"),
    ]
    .iter()
    .map(|(name, key)| (name.to_string(), get("epoch", "epoch", key)))
    .collect();
    series.retain(|(_, s)| !s.is_empty());
    if !series.is_empty() {
        let n = lines
            .iter()
            .rev()
            .find_map(|l| l.get("val_pairs").and_then(Value::as_f64));
        let references = n.map_or(Vec::new(), |n| {
            vec![("chance Recall@10".to_string(), (10.0 / n).min(1.0))]
        });
        files.extend(plots::save(
            &Curves {
                title: "validation retrieval".into(),
                x_label: "epoch".into(),
                y_label: "fraction".into(),
                series,
                references,
            },
            dir,
            "retrieval",
        )?);
    }
    Ok(files.len())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_all_plots(
    run: &RunDir,
    config: &ClipConfig,
    set: &PairSet,
    spec: &RunSpec,
    device: &DeviceSpec,
    checkpoint: &str,
    dir: &Path,
) -> anyhow::Result<usize> {
    let mut count = curve_plots(run, dir)?;
    let mut idx = set.indices(true);
    if idx.len() < 2 {
        idx = (0..set.len()).collect();
    }
    let c = run.load_checkpoint(checkpoint)?;
    let (s, t) = run_on(
        device,
        EmbedTask {
            config,
            weights: c.model,
            set,
            idx: &plotted_subset(&idx, spec, spec.visualization.n_samples_tsne),
            batch_size: spec.visualization.similarity_batch_size,
        },
    )??;
    count += embedding_plots(
        &s,
        &t,
        config.text.embed_dim,
        spec,
        dir,
        &format!("{checkpoint} checkpoint"),
    )?;
    Ok(count)
}
