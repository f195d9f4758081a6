//! CLIP loss, retrieval metrics and the text encoder against a NumPy reference
//! (fixtures/clip_metrics.py → clip_metrics.json) and against properties any user relies on.

use burn::prelude::*;
use serde::Deserialize;
use xtal_core::device::Flex;
use xtal_core::metrics::retrieval::DirectionMetrics;
use xtal_core::metrics::retrieval_metrics_in_blocks;
use xtal_core::models::clip::{ByteTokenizer, INITIAL_LOGIT_SCALE, TextEncoderConfig, clip_loss};

type B = Flex;

#[derive(Deserialize)]
struct Direction {
    recall_at_1: f64,
    recall_at_5: f64,
    recall_at_10: f64,
    mrr: f64,
    median_rank: f64,
}

#[derive(Deserialize)]
struct Fixture {
    n: usize,
    d: usize,
    structure: Vec<f32>,
    text: Vec<f32>,
    loss_initial_scale: f64,
    loss_scale_6_clamped: f64,
    structure_to_text: Direction,
    text_to_structure: Direction,
    matched_cosine_mean: f64,
    unmatched_cosine_mean: f64,
    unmatched_cosine_std: f64,
    grouped: Grouped,
}

/// 1 to 3 texts per structure.
#[derive(Deserialize)]
struct Grouped {
    n: usize,
    owners: Vec<usize>,
    structure: Vec<f32>,
    text: Vec<f32>,
    structure_to_text: Direction,
    text_to_structure: Direction,
    matched_cosine_mean: f64,
    unmatched_cosine_mean: f64,
    unmatched_cosine_std: f64,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/clip_metrics.json")).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn clip_loss_matches_numpy_and_clamps_the_scale() {
    let f = fixture();
    let dev = Default::default();
    let s = Tensor::<B, 2>::from_data(TensorData::new(f.structure.clone(), [f.n, f.d]), &dev);
    let t = Tensor::<B, 2>::from_data(TensorData::new(f.text.clone(), [f.n, f.d]), &dev);
    for (scale, want) in [
        (INITIAL_LOGIT_SCALE, f.loss_initial_scale),
        (6.0, f.loss_scale_6_clamped),
    ] {
        let got: f32 =
            clip_loss(s.clone(), t.clone(), Tensor::from_floats([scale], &dev)).into_scalar();
        assert!(
            close(got as f64, want, 1e-4),
            "scale {scale}: {got} vs {want}"
        );
    }
}

/// Blocks of every size give NumPy's dense answer: one row at a time, a block that does not
/// divide n, and the whole matrix at once.
#[test]
fn retrieval_metrics_in_blocks_match_numpy() {
    let f = fixture();
    let dev = Default::default();
    let s = Tensor::<B, 2>::from_data(TensorData::new(f.structure.clone(), [f.n, f.d]), &dev);
    let t = Tensor::<B, 2>::from_data(TensorData::new(f.text.clone(), [f.n, f.d]), &dev);
    for block_rows in [1, 7, f.n] {
        let owners: Vec<usize> = (0..f.n).collect();
        let m = retrieval_metrics_in_blocks(s.clone(), t.clone(), &owners, block_rows).unwrap();
        for (got, want) in [
            (&m.structure_to_text, &f.structure_to_text),
            (&m.text_to_structure, &f.text_to_structure),
        ] {
            assert!(
                close(got.recall_at_1, want.recall_at_1, 1e-9),
                "{block_rows}"
            );
            assert!(
                close(got.recall_at_5, want.recall_at_5, 1e-9),
                "{block_rows}"
            );
            assert!(
                close(got.recall_at_10, want.recall_at_10, 1e-9),
                "{block_rows}"
            );
            assert_direction(got, want, block_rows);
        }
        assert!(close(m.matched_cosine_mean, f.matched_cosine_mean, 1e-5));
        assert!(close(
            m.unmatched_cosine_mean,
            f.unmatched_cosine_mean,
            1e-5
        ));
        assert!(close(m.unmatched_cosine_std, f.unmatched_cosine_std, 1e-5));
    }
}

fn assert_direction(got: &DirectionMetrics, want: &Direction, block_rows: usize) {
    for (name, g, w) in [
        ("R@1", got.recall_at_1, want.recall_at_1),
        ("R@5", got.recall_at_5, want.recall_at_5),
        ("R@10", got.recall_at_10, want.recall_at_10),
        ("MRR", got.mrr, want.mrr),
        ("median rank", got.median_rank, want.median_rank),
    ] {
        assert!(
            close(g, w, 1e-9),
            "{name}, blocks of {block_rows}: {g} vs {w}"
        );
    }
}

/// Several texts per structure, counted as NumPy counts them: a structure is found when its
/// best-ranked text is, every text is a query.
#[test]
fn retrieval_with_several_texts_per_structure_matches_numpy() {
    let g = fixture().grouped;
    let (d, m) = (fixture().d, g.owners.len());
    let dev = Default::default();
    let s = Tensor::<B, 2>::from_data(TensorData::new(g.structure.clone(), [g.n, d]), &dev);
    let t = Tensor::<B, 2>::from_data(TensorData::new(g.text.clone(), [m, d]), &dev);
    for block_rows in [1, 7, m] {
        let r = retrieval_metrics_in_blocks(s.clone(), t.clone(), &g.owners, block_rows).unwrap();
        assert_eq!(r.n, g.n);
        assert_direction(&r.structure_to_text, &g.structure_to_text, block_rows);
        assert_direction(&r.text_to_structure, &g.text_to_structure, block_rows);
        assert!(close(r.matched_cosine_mean, g.matched_cosine_mean, 1e-5));
        assert!(close(
            r.unmatched_cosine_mean,
            g.unmatched_cosine_mean,
            1e-5
        ));
        assert!(close(r.unmatched_cosine_std, g.unmatched_cosine_std, 1e-5));
    }
}

#[test]
fn byte_tokens_never_collide_with_special_tokens() {
    let tok = ByteTokenizer { max_len: 8 };
    let (ids, pad) = tok.encode("\u{0}\u{1}\u{2}ab");
    assert_eq!(ids, vec![1, 3, 4, 5, 100, 101, 2, 0]);
    assert_eq!(
        pad,
        vec![false, false, false, false, false, false, false, true]
    );
    let (ids, pad) = tok.encode("a much longer text");
    assert_eq!(
        (ids[0], ids[7], pad.iter().filter(|p| **p).count()),
        (ByteTokenizer::SOT, ByteTokenizer::EOT, 0)
    );
}

#[test]
fn text_embedding_ignores_padding_and_is_unit_length() {
    let dev = Default::default();
    let config = TextEncoderConfig::new()
        .with_width(32)
        .with_layers(2)
        .with_heads(4)
        .with_max_len(24)
        .with_embed_dim(16);
    let encoder = config.init::<B>(&dev);
    let tok = config.tokenizer();
    let (ids, pad) = tok.batch::<B>(&["rock salt", "a perovskite"], &dev);
    let a = encoder.forward(ids.clone(), pad.clone());
    // Whatever sits in padded positions must not matter (padded keys and queries are masked).
    let garbage = ids.clone().mask_fill(pad.clone(), 77);
    let b = encoder.forward(garbage, pad);
    let diff: f32 = (a.clone() - b).abs().max().into_scalar();
    assert!(diff < 1e-5, "padding changed the embedding by {diff}");
    let norms: Vec<f32> = a
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .into_data()
        .to_vec()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
}
