//! Tensor-regression heads against independent references (fixtures/tensor_regression.py →
//! tensor_regression.json): z-scoring with training statistics and the head's forward pass
//! and losses (NumPy), per-component MAE and R² (scikit-learn), and learning on real crystals
//! (lattice metric tensors from pymatgen) against scikit-learn's Ridge as the baseline.

use burn::backend::Autodiff;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use serde_json::Value;
use xtal_core::data::batches_per_epoch;
use xtal_core::device::NdArray;
use xtal_core::metrics::regression_metrics;
use xtal_core::models::tensor_head::{RegressionLoss, TensorHeadConfig, TensorMode};
use xtal_core::train::spec::TrainingSpec;
use xtal_core::train::tensor::{TensorRows, TensorStep, TensorTargets, evaluate_head};
use xtal_core::train::{
    FitSettings, MemoryStore, ModelOptimizer, OneRank, OptimizerSettings, WarmupCosine, fit,
    to_host,
};
use xtal_tests::floats;

type B = Autodiff<NdArray>;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/tensor_regression.json")).unwrap()
}

fn tensors(v: &Value) -> Vec<[f64; 9]> {
    floats(v).chunks(9).map(|c| c.try_into().unwrap()).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn targets_are_selected_and_z_scored_with_training_rows_only() {
    let f = &fixture()["targets"];
    let all = tensors(&f["tensors"]);
    let is_val = bools(&f["is_val"]);
    let train: Vec<[f64; 9]> = all
        .iter()
        .zip(&is_val)
        .filter(|(_, v)| !**v)
        .map(|(t, _)| *t)
        .collect();
    let t = TensorTargets::fit(TensorMode::Voigt2d, &train, true);
    assert_close(&t.mean, &floats(&f["mean"]), 1e-12, "mean");
    assert_close(&t.std, &floats(&f["std"]), 1e-12, "std");
    let encoded: Vec<f64> = t.encode(&all[3]).iter().map(|&x| x as f64).collect();
    assert_close(&encoded, &floats(&f["encoded_row_3"]), 1e-6, "encoded");
    let unscaled = TensorTargets::fit(TensorMode::Voigt2d, &train, false);
    assert_eq!(unscaled.decode(&[1.5; 6]), vec![1.5; 6]);
}

/// Replaces float parameters in visiting order (weight, bias of each layer).
struct SetParams(Vec<Vec<f64>>);

impl<B: Backend> ModuleMapper<B> for SetParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let values: Vec<f32> = self.0.remove(0).iter().map(|&x| x as f32).collect();
        param.map(|t| {
            let shape = t.shape();
            Tensor::from_data(TensorData::new(values, shape), &t.device())
        })
    }
}

#[test]
fn head_forward_and_losses_match_numpy() {
    let f = &fixture()["head"];
    let dims: Vec<usize> = f["dims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let device = Default::default();
    let params: Vec<Vec<f64>> = f["params"].as_array().unwrap().iter().map(floats).collect();
    let head = TensorHeadConfig::new(dims[0], dims[3])
        .with_hidden(dims[1..3].to_vec())
        .with_dropout(0.0)
        .init::<NdArray>(&device)
        .map(&mut SetParams(params));
    let x = floats(&f["x"])
        .iter()
        .map(|&v| v as f32)
        .collect::<Vec<_>>();
    let n = x.len() / dims[0];
    let x = Tensor::<NdArray, 2>::from_data(TensorData::new(x, [n, dims[0]]), &device);
    let out = head.forward(x);
    let got: Vec<f64> = to_host(out.clone())
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_close(&got, &floats(&f["output"]), 1e-5, "head output");
    let target = floats(&f["target"])
        .iter()
        .map(|&v| v as f32)
        .collect::<Vec<_>>();
    let target = Tensor::<NdArray, 2>::from_data(TensorData::new(target, [n, dims[3]]), &device);
    for (loss, key) in [
        (RegressionLoss::Mse, "mse"),
        (RegressionLoss::Mae, "mae"),
        (RegressionLoss::Huber { delta: 1.0 }, "huber"),
    ] {
        let v = to_host(loss.forward(out.clone(), target.clone())).unwrap()[0] as f64;
        assert_close(&[v], &[f[key].as_f64().unwrap()], 1e-5, key);
    }
}

#[test]
fn component_metrics_match_scikit_learn() {
    let f = &fixture()["metrics"];
    let m = regression_metrics(
        &floats(&f["pred"]),
        &floats(&f["truth"]),
        &["a", "b", "c", "constant"],
    );
    let r2: Vec<f64> = m.components.iter().map(|c| c.r2).collect();
    let mae: Vec<f64> = m.components.iter().map(|c| c.mae).collect();
    assert_close(&r2, &floats(&f["r2"]), 1e-10, "r2");
    assert_close(&mae, &floats(&f["mae"]), 1e-10, "mae");
    assert_close(
        &[m.r2_pooled],
        &[f["r2_pooled"].as_f64().unwrap()],
        1e-10,
        "pooled",
    );
    assert_eq!(m.n, 20);
}

#[test]
fn a_trained_head_beats_ridge_on_real_metric_tensors() {
    let f = &fixture()["learning"];
    let device = Default::default();
    let is_val = bools(&f["is_val"]);
    let rows = TensorRows {
        ids: f["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        inputs: floats(&f["x"]).iter().map(|&v| v as f32).collect(),
        dim: 6,
        tensors: tensors(&f["tensors"]),
        is_val,
    };
    let train_idx = rows.indices(false);
    let val_idx = rows.indices(true);
    let train: Vec<[f64; 9]> = train_idx.iter().map(|&i| rows.tensors[i]).collect();
    let targets = TensorTargets::fit(TensorMode::Full, &train, true);
    let (epochs, batch, lr) = (150, 16, 3e-3);
    let steps = batches_per_epoch(train_idx.len(), batch) * epochs;
    let settings = OptimizerSettings {
        weight_decay: 0.0,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        clip_norm: None,
        accumulation: 1,
        schedule: WarmupCosine {
            base_lr: lr,
            min_lr: lr * 0.05,
            warmup_steps: 0,
            total_steps: steps,
        },
    };
    B::seed(&device, 7);
    let mut head = TensorHeadConfig::new(6, 9)
        .with_hidden(vec![64, 64])
        .with_dropout(0.0)
        .init::<B>(&device);
    let mut optimizer = ModelOptimizer::new(settings, []);
    // Through the loop every model trains with, its run kept in memory.
    let training = TrainingSpec {
        epochs,
        batch_size: batch,
        seed: 7,
        ..TrainingSpec::default()
    };
    let step = TensorStep::<B> {
        rows: &rows,
        targets: &targets,
        loss: RegressionLoss::Mse,
        val: &val_idx,
        batch_size: 64,
        device,
    };
    let fitted = fit::<_, _, _, _, Box<dyn std::error::Error>, _>(
        &step,
        head,
        &mut optimizer,
        FitSettings {
            training: &training,
            train: &train_idx,
            state: training.fresh_state(),
            stop_after: None,
            ranks: &OneRank,
        },
        &mut MemoryStore::default(),
        &mut (),
        &device,
    )
    .unwrap();
    head = fitted.model;
    let (e, _) = evaluate_head(
        &burn::module::AutodiffModule::valid(&head),
        &rows,
        &val_idx,
        &targets,
        RegressionLoss::Mse,
        64,
        &device,
    )
    .unwrap();
    let ridge = floats(&f["ridge_r2"]);
    let ridge_mean = ridge.iter().sum::<f64>() / ridge.len() as f64;
    let r2: Vec<f64> = e.metrics.components.iter().map(|c| c.r2).collect();
    eprintln!(
        "head R² {r2:.3?} (mean {:.3}), ridge {ridge:.3?} (mean {ridge_mean:.3})",
        e.metrics.r2
    );
    assert!(
        e.metrics.r2 > ridge_mean + 0.1,
        "head {} vs ridge {ridge_mean}",
        e.metrics.r2
    );
    for (c, (h, r)) in r2.iter().zip(&ridge).enumerate() {
        assert!(h + 0.02 >= *r, "component {c}: head {h} below ridge {r}");
    }
}
