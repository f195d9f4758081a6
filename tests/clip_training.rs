//! The training machinery against independent references (fixtures/clip_training.py →
//! clip_training.json): AdamW with accumulation, global-norm clipping and a decay-exempt
//! temperature (NumPy, torch semantics); t-SNE affinities (scikit-learn); per-block
//! validation loss and in-batch accuracy (NumPy).

use burn::backend::Autodiff;
use burn::module::{Module, Param};
use burn::prelude::*;
use serde_json::Value;
use xtal_core::device::NdArray;
use xtal_core::train::clip::in_batch_figures;
use xtal_core::train::{ModelOptimizer, OptimizerSettings, WarmupCosine};
use xtal_core::viz::{TsneConfig, joint_probabilities, tsne};

type B = Autodiff<NdArray>;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/clip_training.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[derive(Module, Debug)]
struct Toy<B: Backend> {
    w: Param<Tensor<B, 2>>,
    s: Param<Tensor<B, 1>>,
}

#[test]
fn adamw_accumulates_clips_globally_and_exempts_the_temperature() {
    let f = &fixture()["adamw"];
    let device = Default::default();
    let num = |k: &str| f[k].as_f64().unwrap();
    let mut toy = Toy::<B> {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(floats(&f["w0"]), [3, 2]),
            &device,
        )),
        s: Param::from_tensor(Tensor::from_data(
            TensorData::new(floats(&f["s0"]), [1]),
            &device,
        )),
    };
    let lr = num("lr");
    let settings = OptimizerSettings {
        weight_decay: num("weight_decay"),
        beta_1: num("beta_1"),
        beta_2: num("beta_2"),
        epsilon: num("epsilon"),
        clip_norm: Some(num("max_norm")),
        accumulation: 2,
        schedule: WarmupCosine {
            base_lr: lr,
            min_lr: lr,
            warmup_steps: 0,
            total_steps: 10,
        },
    };
    let mut opt = ModelOptimizer::<B, Toy<B>>::new(settings, [toy.s.id]);
    let (c, k) = (floats(&f["c"]), floats(&f["k"]));
    for step in 0..2 {
        for micro in 0..2 {
            let m = step * 2 + micro;
            let cm = Tensor::<B, 2>::from_data(
                TensorData::new(c[m * 6..(m + 1) * 6].to_vec(), [3, 2]),
                &device,
            );
            let loss = (toy.w.val() * cm).sum() + toy.s.val().mul_scalar(k[m]).sum();
            let (next, stepped) = opt.backward(toy, loss);
            toy = next;
            assert_eq!(stepped, micro == 1, "steps after every 2nd micro-batch");
        }
    }
    assert_eq!(opt.step, 2);
    let w: Vec<f32> = toy.w.val().into_data().to_vec().unwrap();
    let s: Vec<f32> = toy.s.val().into_data().to_vec().unwrap();
    for (a, b) in w.iter().zip(floats(&f["w"])) {
        assert!((a - b).abs() < 1e-5, "W {a} vs NumPy {b}");
    }
    assert!(
        (s[0] - floats(&f["s"])[0]).abs() < 1e-5,
        "s {} vs NumPy",
        s[0]
    );
}

#[test]
fn optimizer_state_survives_a_round_trip() {
    let device = Default::default();
    let toy = Toy::<B> {
        w: Param::from_tensor(Tensor::ones([2, 2], &device)),
        s: Param::from_tensor(Tensor::ones([1], &device)),
    };
    let settings = OptimizerSettings {
        weight_decay: 0.0,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        clip_norm: None,
        accumulation: 1,
        schedule: WarmupCosine {
            base_lr: 0.1,
            min_lr: 0.0,
            warmup_steps: 1,
            total_steps: 5,
        },
    };
    let mut opt = ModelOptimizer::<B, Toy<B>>::new(settings.clone(), [toy.s.id]);
    let loss = toy.w.val().sum() + toy.s.val().sum();
    let toy = opt.backward(toy, loss).0;
    let bytes = opt.to_bytes().unwrap();
    let restored = ModelOptimizer::<B, Toy<B>>::new(settings.clone(), [toy.s.id])
        .load_bytes(bytes.clone(), &device)
        .unwrap();
    assert_eq!(restored.step, 1);
    assert_eq!(restored.to_bytes().unwrap(), bytes);
    let garbage = ModelOptimizer::<B, Toy<B>>::new(settings, [toy.s.id])
        .load_bytes(b"not a record".to_vec(), &device);
    assert!(garbage.is_err());
}

#[test]
fn tsne_affinities_match_scikit_learn() {
    let f = &fixture()["tsne"];
    let (n, d) = (30, 5);
    let p = joint_probabilities(&floats(&f["points"]), n, d, 10.0);
    let want = floats(&f["p"]);
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (a, b) = (p[i * n + j], want[i * n + j] as f64);
                assert!((a - b).abs() <= 1e-5 * b.max(1e-4), "P[{i},{j}] {a} vs {b}");
            }
        }
    }
}

#[test]
fn tsne_keeps_clusters_apart_and_is_seeded() {
    let f = &fixture()["tsne"];
    let points = floats(&f["points"]);
    let config = TsneConfig {
        perplexity: 10.0,
        iterations: 500,
        seed: 3,
    };
    let map = tsne(&points, 30, 5, &config);
    assert_eq!(map, tsne(&points, 30, 5, &config));
    // Three clusters of ten in the input: every point's nearest neighbour on the map must be
    // from its own cluster.
    for i in 0..30 {
        let nearest = (0..30)
            .filter(|&j| j != i)
            .min_by(|&a, &b| {
                let d =
                    |j: usize| (map[i][0] - map[j][0]).powi(2) + (map[i][1] - map[j][1]).powi(2);
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        assert_eq!(nearest / 10, i / 10, "point {i}");
    }
}

#[test]
fn block_loss_and_in_batch_accuracy_match_numpy() {
    let f = &fixture()["blocks"];
    // The fixture's 40 × 40 matrix, cut into the batches of 16 the reference used.
    let sim = floats(&f["sim"]);
    let batches: Vec<Vec<f32>> = [(0, 16), (16, 32), (32, 40)]
        .into_iter()
        .map(|(a, b)| {
            (a..b)
                .flat_map(|i| sim[i * 40 + a..i * 40 + b].to_vec())
                .collect()
        })
        .collect();
    let e = in_batch_figures(&batches, f["logit_scale"].as_f64().unwrap());
    assert!(
        (e.loss - f["loss"].as_f64().unwrap()).abs() < 1e-4,
        "{}",
        e.loss
    );
    assert_eq!(e.acc_g2t, f["acc_g2t"].as_f64().unwrap());
    assert_eq!(e.acc_t2g, f["acc_t2g"].as_f64().unwrap());
}
