//! The FTCP self-supervised blocks (core/src/models/ftcp_ssl, core/src/train/ssl.rs) on 64
//! tensors written by the original FTCP code: masking removes what it hides from every
//! block's input, the periodic site distances Block 3 and 4 use equal pymatgen's, and the
//! PCA of the evaluation equals scikit-learn's (tests/fixtures/ssl_references.py).

use std::path::PathBuf;

use burn::prelude::*;
use serde_json::Value;
use xtal_core::data::SeededRng;
use xtal_core::device::NdArray;
use xtal_core::featurize::{FtcpConfig, RowMinMax};
use xtal_core::models::ftcp_ssl::{
    BlockBatch, BlockKind, FtcpSample, SslBlockConfig, periodic_distance,
};
use xtal_core::train::pca::fit_pca;
use xtal_core::train::ssl::{SslData, block_features};
use xtal_tests::floats;

type B = NdArray;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn references() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("ssl_references.json")).unwrap()).unwrap()
}

/// The first `n` original FTCP tensors as SSL rows (every 5th for validation).
fn data(n: usize) -> SslData {
    let mut npz =
        npyz::npz::NpzArchive::open(fixtures().join("structures/ftcp_pvlab_4_100.npz")).unwrap();
    let raw: Vec<f64> = npz.by_name("ftcp").unwrap().unwrap().into_vec().unwrap();
    let raw: Vec<f32> = raw.into_iter().map(|v| v as f32).collect();
    let layout = FtcpConfig::default();
    let per = layout.rows() * layout.cols();
    let raw = raw[..n * per].to_vec();
    let is_val: Vec<bool> = (0..n).map(|i| i % 5 == 4).collect();
    let normalizer = RowMinMax::fit(
        layout.rows(),
        layout.cols(),
        (0..n)
            .filter(|&i| !is_val[i])
            .map(|i| &raw[i * per..(i + 1) * per]),
    )
    .unwrap();
    SslData::new(
        (0..n).map(|i| format!("m{i}")).collect(),
        layout,
        raw,
        normalizer,
        vec![None; n],
        is_val,
    )
    .unwrap()
}

fn host<const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn masking_removes_the_hidden_values_from_every_blocks_input() {
    let data = data(64);
    let idx: Vec<usize> = (0..64).collect();
    let device = Default::default();
    for kind in BlockKind::ALL {
        let mut rng = SeededRng::new(7);
        let batch = data.batch::<B>(kind, &idx, Some(&mut rng), &device);
        // (input values, per-value hidden flag, how many values each hidden flag covers)
        let (input, hidden, inner) = match &batch {
            BlockBatch::Elements(b) => (host(&b.columns), host(&b.masked), 103),
            BlockBatch::Lattice(b) => (host(&b.values), host(&b.masked), 1),
            BlockBatch::Sites(b) => {
                // Hidden sites keep only their flag, and no distance to them is shown.
                let (d, known) = (host(&b.distances), host(&b.known));
                let m = host(&b.masked);
                let s = m.len() / 64;
                for (k, (dist, kn)) in d.iter().zip(&known).enumerate() {
                    let (bi, i, j) = (k / (s * s), (k / s) % s, k % s);
                    if m[bi * s + i] + m[bi * s + j] > 0.0 {
                        assert_eq!((*dist, *kn), (0.0, 0.0));
                    }
                }
                let nodes: Vec<f32> = host(&b.nodes)
                    .chunks(7)
                    .flat_map(|c| c[..6].to_vec())
                    .collect();
                (nodes, m, 6)
            }
            BlockBatch::Occupancy(b) => {
                let nodes: Vec<f32> = host(&b.nodes)
                    .chunks(11)
                    .flat_map(|c| c[..4].to_vec())
                    .collect();
                (nodes, host(&b.masked), 4)
            }
            BlockBatch::Reciprocal(b) => {
                let h: Vec<f32> = host(&b.scattered)
                    .iter()
                    .zip(host(&b.run))
                    .map(|(a, r)| a + r)
                    .collect();
                (host(&b.values), h, 1)
            }
            BlockBatch::StructureFactors(b) => {
                let map = host(&b.map);
                let per = 92 * 59;
                let values: Vec<f32> = map
                    .chunks(2 * per)
                    .flat_map(|c| c[..per].to_vec())
                    .collect();
                (values, host(&b.hidden), 1)
            }
        };
        let mut hidden_values = 0;
        for (k, h) in hidden.iter().enumerate() {
            if *h > 0.0 {
                for v in &input[k * inner..(k + 1) * inner] {
                    assert_eq!(*v, 0.0, "{kind:?}: a hidden value reached the input");
                    hidden_values += 1;
                }
            }
        }
        assert!(hidden_values > 0, "{kind:?}: nothing was hidden");
        let unmasked = data.batch::<B>(kind, &idx, None, &device);
        let nothing_hidden = match &unmasked {
            BlockBatch::Elements(b) => host(&b.masked),
            BlockBatch::Lattice(b) => host(&b.masked),
            BlockBatch::Sites(b) => host(&b.masked),
            BlockBatch::Occupancy(b) => host(&b.masked),
            BlockBatch::Reciprocal(b) => host(&b.scattered),
            BlockBatch::StructureFactors(b) => host(&b.hidden),
        };
        assert!(
            nothing_hidden.iter().all(|v| *v == 0.0),
            "{kind:?}: extraction input is masked"
        );
    }
}

#[test]
fn features_are_per_row_and_in_row_order() {
    let data = data(24);
    let device = Default::default();
    for kind in [BlockKind::Lattice, BlockKind::Occupancy] {
        let model = SslBlockConfig::new(kind)
            .with_width(16)
            .with_layers(1)
            .init::<B>(&device);
        let forward: Vec<usize> = (0..24).collect();
        let backward: Vec<usize> = (0..24).rev().collect();
        let a = block_features(&model, &data, &forward, 5, &device, |_| {}).unwrap();
        let b = block_features(&model, &data, &backward, 7, &device, |_| {}).unwrap();
        let dim = kind.output_dim();
        for i in 0..24 {
            let (x, y) = (
                &a[i * dim..(i + 1) * dim],
                &b[(23 - i) * dim..(24 - i) * dim],
            );
            let worst = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-4,
                "{kind:?} row {i}: batching changed its features by {worst}"
            );
            // Each material's block features are centred to unit (population) variance.
            let n = dim as f64;
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "{kind:?} row {i}: mean {mean}, variance {var}"
            );
        }
    }
}

#[test]
fn site_distances_match_pymatgen() {
    let data = data(24);
    let reference = references();
    let mut compared = 0;
    for (i, expected) in reference["site_distances"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let s: FtcpSample = data.sample(i);
        let sites = s.occupied_sites();
        let lattice = s.lattice();
        let expected: Vec<Vec<f64>> = expected.as_array().unwrap().iter().map(floats).collect();
        assert_eq!(sites.len(), expected.len(), "tensor {i}: occupied sites");
        for (a, row) in sites.iter().zip(&expected) {
            for (b, want) in sites.iter().zip(row) {
                let got = periodic_distance(&lattice, s.coordinates(a.0), s.coordinates(b.0));
                assert!(
                    (got - want).abs() < 1e-4,
                    "tensor {i}: {got} vs pymatgen {want}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 500, "{compared}");
}

#[test]
fn pca_matches_scikit_learn() {
    let reference = references();
    for case in ["pca_tall", "pca_wide"] {
        let c = &reference[case];
        let x: Vec<Vec<f64>> = c["x"].as_array().unwrap().iter().map(floats).collect();
        let rows: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
        let k = c["k"].as_u64().unwrap() as usize;
        let pca = fit_pca(&rows, k).unwrap();
        let ratio = floats(&c["explained_variance_ratio"]);
        assert_eq!(pca.components.len(), k, "{case}");
        for (got, want) in pca.explained_variance_ratio.iter().zip(&ratio) {
            assert!(
                (got - want).abs() < 1e-6 * want.max(1e-3),
                "{case}: ratio {got} vs {want}"
            );
        }
        for (row, want) in x.iter().zip(c["abs_scores"].as_array().unwrap()) {
            let scale = floats(want).iter().cloned().fold(1.0, f64::max);
            for (got, want) in pca.transform(row).iter().zip(floats(want)) {
                assert!(
                    (got.abs() - want).abs() < 1e-6 * scale,
                    "{case}: |score| {got} vs {want}"
                );
            }
        }
    }
}
