use burn::backend::Autodiff;

use super::*;
use crate::bundle::IndexRecords;
use crate::device::NdArray;
use crate::models::clip::{ClipConfig, StructureProjectorConfig, TextEncoderConfig, TextTokenizer};
use crate::train::to_host;

type B = Autodiff<NdArray>;

fn config() -> ClipConfig {
    ClipConfig::new(
        TextEncoderConfig::new()
            .with_width(16)
            .with_layers(2)
            .with_heads(2)
            .with_max_len(32)
            .with_embed_dim(8),
        StructureProjectorConfig::new(6).with_embed_dim(8),
    )
}

/// 12 entries whose structure embeddings are random unit vectors.
fn index() -> RetrievalIndex {
    let n = 12;
    let mut state = 7u64;
    let mut structure: Vec<f32> = (0..n * 8)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    for row in structure.chunks_mut(8) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    RetrievalIndex {
        records: IndexRecords {
            ids: (0..n).map(|i| format!("m-{i}")).collect(),
            formulas: vec![None; n],
            descriptions: (0..n).map(|i| format!("material {i}")).collect(),
            structures: None,
        },
        dim: 8,
        structure: Some(structure),
        text: None,
        map: None,
    }
}

fn pairs_csv() -> String {
    let mut csv = String::from("id,text\n");
    for (i, word) in [
        "oxide",
        "metal",
        "perovskite",
        "layered",
        "cubic",
        "spinel",
        "garnet",
        "zeolite",
        "alloy",
        "halide",
        "nitride",
        "boride",
    ]
    .iter()
    .enumerate()
    {
        csv.push_str(&format!("m-{i},a {word} crystal\n"));
    }
    csv
}

/// Projection `w·e + e`, the temperature, and with LayerNorms `2·2w` per layer + `2w`.
#[test]
fn trainable_values_are_the_projection_temperature_and_norms() {
    let _rng = crate::train::backend_rng_lock();
    let device = Default::default();
    let (w, e, layers) = (16, 8, 2);
    for (norms, want) in [
        (false, w * e + e + 1),
        (true, w * e + e + 1 + layers * 4 * w + 2 * w),
    ] {
        let model = config().init::<B>(&device);
        let model = set_trainable(model, |p| fine_tuned(p, norms));
        assert_eq!(trainable_parameters(&model), want, "layer_norms = {norms}");
    }
}

#[test]
fn pairs_csv_problems_name_their_line() {
    let index = index();
    let err = |csv: &str| parse_pairs_csv(csv, Some(&index)).unwrap_err().to_string();
    assert!(err("id,text\nm-1,a\nm-99,b\n").contains("line 3: id `m-99`"));
    assert!(err("name,text\nm-1,a\n").contains("`id,text`"));
    assert!(err("id,text\nm-1,a\n").contains("at least 2"));
    assert!(err("id,text\nm-1,a\nm-2,\n").contains("line 3: the text is empty"));
    assert!(parse_pairs_csv("id,text\nm-1,a\nm-2,b\n", None).is_err());
    let texts = parse_pairs_csv("text_a,text_b\nx,y\n\"a, b\",c\n", None).unwrap();
    assert_eq!(
        texts,
        FineTunePairs::TextText {
            first: vec!["x".into(), "a, b".into()],
            second: vec!["y".into(), "c".into()],
        }
    );
}

/// 40 steps lower the loss over the pairs, change the projection and leave the structure
/// tower and the text Transformer exactly as they were.
#[test]
fn fine_tune_lowers_the_loss_and_changes_only_trainable_values() {
    let _rng = crate::train::backend_rng_lock();
    let device = Default::default();
    let index = index();
    let model = config().init::<B>(&device);
    let before = model.valid();
    let pairs = parse_pairs_csv(&pairs_csv(), Some(&index)).unwrap();
    let settings = FineTuneSettings {
        steps: 40,
        batch_size: 6,
        learning_rate: 0.02,
        ..Default::default()
    };
    let tokenizer = config().text.tokenizer();
    let mut tune = FineTune::new(
        model,
        TextTokenizer::Bytes(tokenizer),
        pairs,
        Some(&index),
        settings,
    )
    .unwrap();
    let mut seen = Vec::new();
    let report = tune
        .run_blocking(None, |step, loss| {
            seen.push((step, loss));
            Ok(())
        })
        .unwrap();
    // 12 pairs in batches of 6: 2 steps an epoch, the run ends after exactly 40.
    assert_eq!(seen.len(), 40);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, &(step, loss))| step == i + 1 && loss.is_finite())
    );
    assert_eq!(report.losses, seen.iter().map(|s| s.1).collect::<Vec<_>>());
    let (loss_before, loss_after) = (report.loss_before, report.loss_after);
    assert!(
        loss_after < loss_before - 0.1,
        "{loss_before} → {loss_after}"
    );
    assert_eq!(
        loss_after,
        to_host(tune.evaluate().unwrap()).unwrap()[0] as f64
    );
    let after = tune.model().unwrap();
    let x = Tensor::<NdArray, 2>::ones([2, 6], &device);
    let same =
        |a: Tensor<NdArray, 2>, b: Tensor<NdArray, 2>| to_host(a).unwrap() == to_host(b).unwrap();
    assert!(same(
        before.structure.forward(x.clone()),
        after.structure.forward(x)
    ));
    let (ids, pad) = tokenizer.batch::<NdArray>(&["a zeolite crystal"], &device);
    assert!(!same(
        before.text.forward(ids.clone(), pad.clone()),
        after.text.forward(ids, pad)
    ));
    // Exactly the projection (weight and bias) and the temperature changed.
    let (p0, p1) = (parameters(&before), parameters(&after));
    let changed: usize = p0
        .iter()
        .zip(&p1)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.len())
        .sum();
    assert_eq!(changed, 16 * 8 + 8 + 1);
}

/// A step count that is not a whole number of epochs ends mid-epoch; the front end's
/// callback failing stops the run with its message.
#[test]
fn fine_tune_takes_exactly_its_steps_and_stops_when_told() {
    let _rng = crate::train::backend_rng_lock();
    let index = index();
    let tune = |steps| {
        let pairs = parse_pairs_csv(&pairs_csv(), Some(&index)).unwrap();
        let settings = FineTuneSettings {
            steps,
            batch_size: 5,
            ..Default::default()
        };
        let model = config().init::<B>(&Default::default());
        FineTune::new(
            model,
            TextTokenizer::Bytes(config().text.tokenizer()),
            pairs,
            Some(&index),
            settings,
        )
        .unwrap()
    };
    // 12 pairs in batches of 5: 2 steps an epoch (the short third batch is dropped).
    let report = tune(7).run_blocking(None, |_, _| Ok(())).unwrap();
    assert_eq!(report.losses.len(), 7);
    let mut stopped = tune(7);
    let err = stopped
        .run_blocking(None, |step, _| {
            if step == 3 {
                Err("stopped by the page".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(err.to_string().contains("stopped by the page"), "{err}");
    // The failed run took the model: asking for it is an error, not a panic.
    assert!(stopped.model().is_err() && stopped.evaluate().is_err());
}

fn parameters(model: &Clip<NdArray>) -> Vec<Vec<f32>> {
    struct All(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor<NdArray> for All {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<NdArray, D>>) {
            self.0.push(to_host(p.val()).unwrap());
        }
    }
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}
