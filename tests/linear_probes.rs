//! Linear probes (core/src/train/ridge.rs) and the composition baseline built on them, against
//! pymatgen + scikit-learn (tests/fixtures/linear_probes.py): ridge at three alphas, the alpha
//! chosen by 5-fold cross-validation with its fold errors, minimum-norm least squares and exact
//! linear SHAP values — on 80 real structures, with more features (195) than training rows (60).

use std::path::PathBuf;

use serde_json::Value;
use xtal_core::data::StructureGraphs;
use xtal_core::featurize::{CrystalGraph, ElementTable, GraphConfig};
use xtal_core::structure::{CifOptions, read_cif};
use xtal_core::train::property::{PropertyRows, composition_baseline};
use xtal_core::train::ridge::{Scaling, fit_least_squares, fit_ridge, fit_ridge_cv, log_alphas};
use xtal_tests::floats;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The fixture and its structures as property rows.
fn rows() -> (Value, PropertyRows) {
    let fixture: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("linear_probes.json")).unwrap())
            .unwrap();
    let table = ElementTable::from_atom_init_json(
        &std::fs::read_to_string(fixtures().join("structures/atom_init.json")).unwrap(),
        "atom_init.json",
    )
    .unwrap();
    let mut cifs = std::collections::HashMap::new();
    let mut reader = csv::Reader::from_path(fixtures().join("structures/cifs.csv")).unwrap();
    for rec in reader.records() {
        let rec = rec.unwrap();
        cifs.insert(rec[0].to_string(), rec[1].to_string());
    }
    let list = |key: &str| fixture[key].as_array().unwrap().clone();
    let ids: Vec<String> = list("ids")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // The probes read compositions only: any graph settings do.
    let config = GraphConfig {
        cutoff: 3.0,
        max_neighbors: Some(1),
        ..GraphConfig::default()
    };
    let graphs = ids
        .iter()
        .map(|id| {
            let s = read_cif(&cifs[id], &CifOptions::default())
                .unwrap()
                .remove(0);
            CrystalGraph::build(&s.structure, &config).unwrap()
        })
        .collect();
    let rows = PropertyRows {
        ids,
        graphs: StructureGraphs::owned(graphs),
        targets: list("targets")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect(),
        is_val: list("is_val")
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect(),
        table,
    };
    (fixture, rows)
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what} [{i}]: {g} vs scikit-learn {w}"
        );
    }
}

#[test]
fn composition_baseline_matches_scikit_learn_ridge() {
    let (fixture, rows) = rows();
    let held_out = rows.indices(true);
    assert_eq!(held_out.len(), 20);
    for case in fixture["cases"].as_array().unwrap() {
        let alpha = case["alpha"].as_f64().unwrap();
        let got = composition_baseline(&rows, alpha, &held_out).unwrap();
        assert_close(
            &got,
            &floats(&case["predictions"]),
            &format!("alpha {alpha}"),
        );
    }
}

/// The training rows of the fixture's composition features, the held-out rows' features.
fn split_features(rows: &PropertyRows) -> (Vec<Vec<f64>>, Vec<f64>, Vec<Vec<f64>>) {
    let features = rows.compositions();
    let train = rows.indices(false);
    let x = train.iter().map(|&i| features[i].clone()).collect();
    let y = train.iter().map(|&i| rows.targets[i]).collect();
    let held_out = rows
        .indices(true)
        .iter()
        .map(|&i| features[i].clone())
        .collect();
    (x, y, held_out)
}

#[test]
fn centred_and_mixed_scaling_match_scikit_learn() {
    let (fixture, rows) = rows();
    let (x, y, held_out) = split_features(&rows);
    let x: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
    let predict = |m: &xtal_core::train::ridge::LinearModel| -> Vec<f64> {
        held_out.iter().map(|r| m.predict(r)).collect()
    };

    let cv = &fixture["centered_cv"];
    let (model, folds) = fit_ridge_cv(&x, &y, &log_alphas(-3, 3, 2), 5, Scaling::Center).unwrap();
    assert_close(&folds.mse, &floats(&cv["mse"]), "centred: mean fold MSE");
    assert_eq!(model.alpha, cv["best_alpha"].as_f64().unwrap());
    assert_close(
        &predict(&model),
        &floats(&cv["predictions"]),
        "centred CV ridge",
    );

    let mixed = &fixture["mixed_alpha_1"];
    let from = mixed["standardized_from"].as_u64().unwrap() as usize;
    let model = fit_ridge(&x, &y, 1.0, Scaling::StandardizeFrom(from)).unwrap();
    assert_close(
        &predict(&model),
        &floats(&mixed["predictions"]),
        "mixed ridge",
    );
    for (row, want) in held_out.iter().zip(mixed["shap"].as_array().unwrap()) {
        assert_close(&model.contributions(row), &floats(want), "mixed SHAP");
    }
}

#[test]
fn cross_validation_least_squares_and_shap_match_scikit_learn() {
    let (fixture, rows) = rows();
    let features = rows.compositions();
    let (train, held_out) = (rows.indices(false), rows.indices(true));
    let x: Vec<&[f64]> = train.iter().map(|&i| features[i].as_slice()).collect();
    let y: Vec<f64> = train.iter().map(|&i| rows.targets[i]).collect();
    let predict = |m: &xtal_core::train::ridge::LinearModel| -> Vec<f64> {
        held_out.iter().map(|&i| m.predict(&features[i])).collect()
    };

    let cv = &fixture["cv"];
    let alphas = log_alphas(-3, 3, 2);
    assert_close(&alphas, &floats(&cv["alphas"]), "alphas");
    let (model, folds) = fit_ridge_cv(&x, &y, &alphas, 5, Scaling::Standardize).unwrap();
    assert_close(&folds.mse, &floats(&cv["mse"]), "mean fold MSE");
    assert_eq!(model.alpha, cv["best_alpha"].as_f64().unwrap());
    assert_close(&predict(&model), &floats(&cv["predictions"]), "CV ridge");

    let ls = fit_least_squares(&x, &y, Scaling::Standardize).unwrap();
    assert_close(
        &predict(&ls),
        &floats(&fixture["least_squares"]),
        "least squares",
    );

    let ridge = fit_ridge(&x, &y, 1.0, Scaling::Standardize).unwrap();
    for (row, want) in held_out
        .iter()
        .zip(fixture["shap_alpha_1"].as_array().unwrap())
    {
        assert_close(
            &ridge.contributions(&features[*row]),
            &floats(want),
            &format!("SHAP of {}", rows.ids[*row]),
        );
    }
}
