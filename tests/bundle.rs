//! Bundles: a packed model loads from bytes on every native backend with the embeddings of
//! the model it was packed from; f16 and int8 storage stay close; hostile archives are refused with
//! an error naming the problem, never a panic.
#![cfg(not(target_family = "wasm"))]

use std::io::Write;

use burn::module::Module;
use burn::prelude::*;
use xtal_core::bundle::{
    Bundle, BundleError, FtcpInput, GraphInput, IndexRecords, Limits, PackInput, PackModel,
    PackTensorHead, Precision, PropertyTarget, Provenance, RetrievalIndex, Side, StructureInput,
    pack,
};
use xtal_core::data::{FeatureScaler, StructureItem};
use xtal_core::device::{CpuBackend, DeviceSpec, OnDevice, available_devices, run_on};
use xtal_core::featurize::{CrystalGraph, ElementTable, FtcpConfig, GraphBatch, RowMinMax, ftcp};
use xtal_core::models::clip::{
    ClipConfig, StructureBatch, StructureProjectorConfig, TextEncoderConfig,
};
use xtal_core::models::ftcp_ssl::{BlockKind, SslBlockConfig, SslEncoderConfig};
use xtal_core::models::property::PropertyModelConfig;
use xtal_core::models::structure::{GraphBackbone, Readout, StructureEncoderConfig};
use xtal_core::models::tensor_head::{TensorHeadConfig, TensorMode};
use xtal_core::structure::{CifOptions, read_cif};
use xtal_core::train::TargetScale;
use xtal_core::train::spec::Modality;
use xtal_core::train::ssl::{SslData, block_features};
use xtal_core::train::tensor::TensorTargets;
use xtal_core::train::to_host;

type Cpu = xtal_core::device::Flex;

const TEXTS: [&str; 3] = [
    "NaCl crystallizes in the cubic Fm-3m space group.",
    "A layered hexagonal carbon allotrope.",
    "",
];

/// The first `n` CIFs of the sample data.
fn sample_cifs(n: usize) -> Vec<(String, String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample/materials.csv");
    let mut reader = csv::Reader::from_path(path).expect("sample data");
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, desc, cif) = (col("id"), col("description"), col("cif"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| r[id].starts_with("mp-") || r[id].starts_with("perov"))
        .take(n)
        .map(|r| (r[id].to_string(), r[desc].to_string(), r[cif].to_string()))
        .collect()
}

fn small_config(input_dim: usize) -> ClipConfig {
    ClipConfig::new(
        TextEncoderConfig::new()
            .with_width(32)
            .with_layers(2)
            .with_heads(4)
            .with_max_len(64)
            .with_embed_dim(16),
        StructureProjectorConfig::new(input_dim)
            .with_embed_dim(16)
            .with_hidden(vec![24]),
    )
}

/// An FTCP structure input fitted on real structures, and their raw vectors.
fn ftcp_input(cifs: &[(String, String, String)]) -> (StructureInput, Vec<Vec<f64>>) {
    let config = FtcpConfig::default();
    let table = ElementTable::default_table();
    let raw: Vec<Vec<f64>> = cifs
        .iter()
        .map(|(_, _, cif)| {
            let s = read_cif(cif, &CifOptions::default()).unwrap();
            ftcp(&s[0].structure, &config, &table).unwrap().data
        })
        .collect();
    let minmax =
        RowMinMax::fit(config.rows(), config.cols(), raw.iter().map(Vec::as_slice)).unwrap();
    let scaled: Vec<Vec<f64>> = raw
        .iter()
        .map(|r| {
            let mut r = r.clone();
            minmax.transform(&mut r);
            r
        })
        .collect();
    let d = scaled[0].len();
    let n = scaled.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| scaled.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let std: Vec<f32> = (0..d)
        .map(|j| {
            let v = scaled.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if v.sqrt() > 1e-8 {
                v.sqrt() as f32
            } else {
                1.0
            }
        })
        .collect();
    let input = StructureInput::Ftcp(
        FtcpInput {
            config,
            table,
            minmax,
        },
        FeatureScaler {
            mean: mean.iter().map(|m| *m as f32).collect(),
            std,
        },
    );
    (input, scaled)
}

/// What every test bundle shares: no head, index, card or provenance; f32; a fixed date.
fn test_input<'a, B: Backend>(
    model: PackModel<'a, B>,
    structure_input: &'a StructureInput,
) -> PackInput<'a, B> {
    PackInput {
        model,
        tensor_head: None,
        structure_input,
        element_table_source: None,
        fitted_on: None,
        index: None,
        card: None,
        precision: Precision::F32,
        created: "2026-01-01T00:00:00Z".into(),
        xtal_version: "test".into(),
        source: None,
        precision_check: None,
    }
}

struct Packed {
    bytes: Vec<u8>,
    half_bytes: Vec<u8>,
    int8_bytes: Vec<u8>,
    /// Embeddings of the model before packing: TEXTS, then the CIFs.
    text: Vec<f32>,
    cif: Vec<f32>,
    cifs: Vec<(String, String, String)>,
}

fn packed() -> Packed {
    let cifs = sample_cifs(6);
    let (input, raw) = ftcp_input(&cifs);
    let device = Default::default();
    let dim = raw[0].len();
    let config = small_config(dim);
    Cpu::seed(&device, 7);
    let model = config.init::<Cpu>(&device);
    // Embed before packing: the reference the loaded bundle must reproduce.
    let vectors: Vec<f32> = cifs
        .iter()
        .flat_map(|(_, _, c)| match input.from_cif(c).unwrap() {
            StructureItem::Vector(v) => v,
            StructureItem::Graph(_) => unreachable!("an FTCP input makes vectors"),
        })
        .collect();
    let x = Tensor::<Cpu, 2>::from_data(TensorData::new(vectors, [cifs.len(), dim]), &device);
    let cif = to_host(model.structure.forward(x)).unwrap();
    let (ids, pad) = config.text.tokenizer().batch::<Cpu>(&TEXTS, &device);
    let text = to_host(model.text.forward(ids, pad)).unwrap();
    let index = RetrievalIndex {
        records: IndexRecords {
            ids: cifs.iter().map(|c| c.0.clone()).collect(),
            formulas: vec![None; cifs.len()],
            descriptions: cifs.iter().map(|c| c.1.clone()).collect(),
            structures: None,
        },
        dim: 16,
        structure: Some(cif.clone()),
        text: None,
        map: Some((0..cifs.len() * 2).map(|i| i as f32).collect()),
    };
    let pack_with = |precision| {
        pack(PackInput {
            element_table_source: Some("default".into()),
            fitted_on: Some(cifs.len()),
            index: Some((&index, None)),
            card: Some("# test model\n".into()),
            precision,
            ..test_input(
                PackModel::Clip {
                    model: &model,
                    config: &config,
                    tokenizer_json: None,
                },
                &input,
            )
        })
        .unwrap()
    };
    Packed {
        bytes: pack_with(Precision::F32),
        half_bytes: pack_with(Precision::F16),
        int8_bytes: pack_with(Precision::Int8),
        text,
        cif,
        cifs,
    }
}

struct Embed<'a>(&'a Bundle, &'a [(String, String, String)]);
impl OnDevice for Embed<'_> {
    type Output = (Vec<f32>, Vec<f32>);
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.0.model::<B::InnerBackend>(&device).unwrap();
        let text = to_host(self.0.embed_texts(&model, &TEXTS, &device).unwrap()).unwrap();
        let cif = self
            .1
            .iter()
            .flat_map(|(_, _, c)| to_host(self.0.embed_cif(&model, c, &device).unwrap()).unwrap())
            .collect();
        (text, cif)
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn parameter_count_from_the_configuration_is_burns() {
    let device = Default::default();
    for config in [
        small_config(10),
        ClipConfig::new(
            TextEncoderConfig::new()
                .with_width(24)
                .with_layers(1)
                .with_heads(2),
            StructureProjectorConfig::new(7),
        ),
    ] {
        assert_eq!(
            config.parameter_count(),
            config.init::<Cpu>(&device).num_params() as u64
        );
    }
}

/// Both CPU backends, and wgpu where an adapter exists (always under CI).
fn every_backend() -> Vec<DeviceSpec> {
    let mut specs = vec![
        DeviceSpec::Cpu(CpuBackend::NdArray),
        DeviceSpec::Cpu(CpuBackend::Flex),
    ];
    if available_devices()
        .iter()
        .any(|d| d.spec.starts_with("wgpu:") && d.usable)
    {
        specs.push(DeviceSpec::Wgpu(None));
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "no wgpu adapter under CI=true"
        );
        eprintln!("SKIPPED wgpu: no adapter (install mesa-vulkan-drivers)");
    }
    specs
}

#[test]
fn a_bundle_reproduces_its_model_on_every_backend() {
    let p = packed();
    let bundle = Bundle::from_bytes(&p.bytes, &Limits::default()).unwrap();
    assert_eq!(bundle.card.as_deref(), Some("# test model\n"));
    assert_eq!(bundle.manifest.structure_input.kind, "ftcp");
    for spec in every_backend() {
        let (text, cif) = run_on(&spec, Embed(&bundle, &p.cifs)).unwrap();
        let (dt, dc) = (max_diff(&text, &p.text), max_diff(&cif, &p.cif));
        assert!(dt <= 1e-4 && dc <= 1e-4, "{spec}: text {dt:e}, cif {dc:e}");
    }
    // The index searches: each structure finds itself first.
    let index = bundle.index.as_ref().unwrap();
    for (row, q) in p.cif.chunks(16).enumerate() {
        let hits = index.search(q, 3, Side::Structure).unwrap();
        assert_eq!(hits[0].row, row);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
    }
    assert!(index.search(&p.cif[..16], 3, Side::Text).is_err());
    assert_eq!(index.map.as_ref().unwrap()[3], 3.0);
    // The byte-level encoder has no sentence embedding outside the CLIP: refused by name.
    let refused = run_on(
        &DeviceSpec::Cpu(CpuBackend::NdArray),
        SentenceEmbeddings(&bundle, vec![TEXTS[0].into()]),
    )
    .unwrap()
    .unwrap_err();
    assert!(refused.contains("byte-level"), "{refused}");
}

#[test]
fn f16_bundles_are_half_the_size_and_close() {
    let p = packed();
    let half = Bundle::from_bytes(&p.half_bytes, &Limits::default()).unwrap();
    assert_eq!(half.manifest.model.weights_dtype, "f16");
    let weights = |b: &Bundle| b.manifest.entry("weights.safetensors").unwrap().size as f64;
    let full = Bundle::from_bytes(&p.bytes, &Limits::default()).unwrap();
    let ratio = weights(&half) / weights(&full);
    assert!((0.45..0.55).contains(&ratio), "size ratio {ratio}");
    let (text, cif) = run_on(&DeviceSpec::Cpu(CpuBackend::NdArray), Embed(&half, &p.cifs)).unwrap();
    let (dt, dc) = (max_diff(&text, &p.text), max_diff(&cif, &p.cif));
    assert!(dt < 5e-3 && dc < 5e-3, "f16: text {dt:e}, cif {dc:e}");
    assert!(dt > 0.0, "f16 weights cannot be exact");
}

/// int8 storage: every linear and embedding matrix of at least 1024 values is int8 with f32
/// scales per output column (linear) or row (embedding), the rest f16, the index f16; the
/// loaded model stays close to the f32 one it was packed from.
#[test]
fn int8_bundles_store_matrices_as_int8_and_stay_close() {
    let p = packed();
    let int8 = Bundle::from_bytes(&p.int8_bytes, &Limits::default()).unwrap();
    assert_eq!(int8.manifest.model.weights_dtype, "int8");
    assert_eq!(int8.manifest.index.as_ref().unwrap().dtype, "f16");
    let weights = entries(&p.int8_bytes)
        .into_iter()
        .find(|(n, _)| n == "weights.safetensors")
        .unwrap()
        .1;
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let dtype = |name: &str| st.tensor(name).unwrap().dtype();
    let shape = |name: &str| st.tensor(name).unwrap().shape().to_vec();
    use safetensors::Dtype;
    // A linear layer of the text encoder (64 × 64 values): one scale per output column.
    let linear = "text.encoder.layers.0.mha.query.weight";
    assert_eq!(dtype(linear), Dtype::I8);
    assert_eq!(shape(&format!("{linear}_scale")), vec![1, shape(linear)[1]]);
    // The token embedding table: one scale per row.
    let table = "text.tokens.weight";
    assert_eq!(dtype(table), Dtype::I8);
    assert_eq!(shape(&format!("{table}_scale")), vec![shape(table)[0], 1]);
    // Biases, norms and the temperature stay f16.
    assert_eq!(dtype("text.encoder.layers.0.mha.query.bias"), Dtype::F16);
    // The scales are max |w| / 127 of each column, recomputed here from the f32 bundle.
    let full = entries(&p.bytes)
        .into_iter()
        .find(|(n, _)| n == "weights.safetensors")
        .unwrap()
        .1;
    let full = safetensors::SafeTensors::deserialize(&full).unwrap();
    let floats = |v: safetensors::tensor::TensorView| -> Vec<f32> {
        v.data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let w = floats(full.tensor(linear).unwrap());
    let scales = floats(st.tensor(&format!("{linear}_scale")).unwrap());
    let cols = scales.len();
    for (c, s) in scales.iter().enumerate() {
        let max = (0..w.len() / cols)
            .map(|r| w[r * cols + c].abs())
            .fold(0f32, f32::max);
        assert!((s * 127.0 - max).abs() <= 1e-6 * max, "column {c}");
    }
    for (i, q) in st.tensor(linear).unwrap().data().iter().enumerate() {
        let back = f32::from(*q as i8) * scales[i % cols];
        assert!(
            (back - w[i]).abs() <= scales[i % cols] / 2.0 + 1e-7,
            "value {i}"
        );
    }
    let size = |b: &Bundle| b.manifest.entry("weights.safetensors").unwrap().size as f64;
    let ratio = size(&int8) / size(&Bundle::from_bytes(&p.bytes, &Limits::default()).unwrap());
    assert!(ratio < 0.35, "int8 / f32 weights {ratio}");
    for spec in every_backend() {
        let (text, cif) = run_on(&spec, Embed(&int8, &p.cifs)).unwrap();
        let (dt, dc) = (max_diff(&text, &p.text), max_diff(&cif, &p.cif));
        assert!(
            dt < 3e-2 && dc < 3e-2,
            "int8 on {spec}: text {dt:e}, cif {dc:e}"
        );
        assert!(dt > 0.0, "int8 weights cannot be exact");
    }
}

/// A CLIP with a graph encoder packs into a `graph` bundle that embeds CIFs itself — graph
/// built from the CIF, the encoder, the projector — on every backend as the model it was
/// packed from embeds the same structures' graphs in one batch.
#[test]
fn a_graph_bundle_embeds_cifs_like_its_model() {
    let cifs = sample_cifs(5);
    let device = Default::default();
    let table = ElementTable::default_table();
    for backbone in [GraphBackbone::Cgcnn, GraphBackbone::Painn] {
        let encoder = StructureEncoderConfig::of(backbone)
            .with_hidden(16)
            .with_layers(2)
            .with_output_dim(24);
        let config = small_config(24).with_graph(Some(encoder.clone()));
        Cpu::seed(&device, 3);
        let model = config.init::<Cpu>(&device);
        let graphs: Vec<CrystalGraph> = cifs
            .iter()
            .map(|(_, _, c)| {
                let s = read_cif(c, &CifOptions::default()).unwrap();
                CrystalGraph::build(&s[0].structure, &encoder.graph).unwrap()
            })
            .collect();
        let refs: Vec<&CrystalGraph> = graphs.iter().collect();
        let batch = GraphBatch::new(&refs, &table).unwrap().to_tensors(&device);
        let want = to_host(model.encode_structures(StructureBatch::Graphs(batch))).unwrap();
        let input = StructureInput::Graph(GraphInput {
            config: encoder.graph,
            table: table.clone(),
        });
        let bytes = pack(PackInput {
            element_table_source: Some("default".into()),
            ..test_input(
                PackModel::Clip {
                    model: &model,
                    config: &config,
                    tokenizer_json: None,
                },
                &input,
            )
        })
        .unwrap();
        let bundle = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
        assert_eq!(bundle.manifest.structure_input.kind, "graph");
        assert_eq!(bundle.manifest.structure_input.dim, 24);
        assert_eq!(bundle.manifest.model.parameters, model.num_params() as u64);
        assert_eq!(bundle.structure_input, input);
        for spec in every_backend() {
            let (_, got) = run_on(&spec, Embed(&bundle, &cifs)).unwrap();
            let d = max_diff(&got, &want);
            assert!(d <= 1e-4, "{backbone:?} on {spec}: {d:e}");
        }
        let err = bundle.structure_input.standardize(&[0.0; 24]).unwrap_err();
        assert!(err.to_string().contains("not precomputed vectors"), "{err}");

        // A manifest that disagrees with its graph encoder is refused before anything is built.
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| refused_edit(&bytes, edit);
        let err = edited(&|m| m["structure_input"]["kind"] = "vector".into());
        assert!(err.contains("needs a graph encoder"), "{err}");
        let err = edited(&|m| m["model"]["config"]["graph"]["graph"]["cutoff"] = 1000.0.into());
        assert!(err.contains("cutoff"), "{err}");
        let err =
            edited(&|m| m["model"]["config"]["graph"]["graph"]["gaussian_step"] = 1e-9.into());
        assert!(err.contains("gaussian_step"), "{err}");
        let err = edited(&|m| m["model"]["config"]["graph"]["layers"] = 3.into());
        assert!(err.contains("model.parameters"), "{err}");
        let err = edited(&|m| m["model"]["config"]["graph"] = serde_json::Value::Null);
        assert!(err.contains("needs a graph encoder"), "{err}");
    }
}

struct Predict<'a>(&'a Bundle, &'a [(String, String, String)]);
impl OnDevice for Predict<'_> {
    type Output = Vec<f64>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.0.property_model::<B::InnerBackend>(&device).unwrap();
        let items: Vec<StructureItem> = self
            .1
            .iter()
            .map(|(_, _, c)| self.0.structure_input.from_cif(c).unwrap())
            .collect();
        self.0.predict(&model, &items, &device).unwrap()
    }
}

#[test]
fn a_property_bundle_predicts_like_its_model() {
    let cifs = sample_cifs(70);
    let device = Default::default();
    let table = ElementTable::default_table();
    let scale = TargetScale {
        mean: 1.7,
        std: 0.8,
    };
    for (backbone, readout) in [
        (GraphBackbone::Cgcnn, Readout::Mean),
        (GraphBackbone::Painn, Readout::Attention),
    ] {
        let encoder = StructureEncoderConfig::of(backbone)
            .with_hidden(16)
            .with_layers(2)
            .with_readout(readout)
            .with_output_dim(12);
        let config = PropertyModelConfig::new(encoder.clone()).with_head_hidden(8);
        Cpu::seed(&device, 5);
        let model = config.init::<Cpu>(&device);
        // The reference: the model on graphs built here, scaled back by hand.
        let graphs: Vec<CrystalGraph> = cifs
            .iter()
            .map(|(_, _, c)| {
                let s = read_cif(c, &CifOptions::default()).unwrap();
                CrystalGraph::build(&s[0].structure, &encoder.graph).unwrap()
            })
            .collect();
        let refs: Vec<&CrystalGraph> = graphs.iter().collect();
        let batch = GraphBatch::new(&refs, &table).unwrap().to_tensors(&device);
        let want: Vec<f64> = to_host(model.forward(&batch))
            .unwrap()
            .iter()
            .map(|z| 1.7 + 0.8 * f64::from(*z))
            .collect();
        let input = StructureInput::Graph(GraphInput {
            config: encoder.graph,
            table: table.clone(),
        });
        let pack_with = |precision| {
            pack(PackInput {
                element_table_source: Some("default".into()),
                precision,
                ..test_input(
                    PackModel::Property {
                        model: &model,
                        config: &config,
                        target: PropertyTarget {
                            name: "band_gap".into(),
                            source: Some("mp40".into()),
                            scale,
                        },
                    },
                    &input,
                )
            })
            .unwrap()
        };
        let bytes = pack_with(Precision::F32);
        let bundle = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
        assert_eq!(bundle.manifest.model.model.kind(), "property");
        assert_eq!(bundle.manifest.model.parameters, model.num_params() as u64);
        assert!(bundle.manifest.tokenizer.is_none() && bundle.index.is_none());
        // More than one batch of 64, on every backend.
        for spec in every_backend() {
            let got = run_on(&spec, Predict(&bundle, &cifs)).unwrap();
            assert_eq!(got.len(), want.len());
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-4, "{backbone:?} on {spec}: {d:e}");
        }
        for (precision, tolerance) in [(Precision::F16, 2e-2), (Precision::Int8, 1e-1)] {
            let stored = Bundle::from_bytes(&pack_with(precision), &Limits::default()).unwrap();
            let weights = |b: &Bundle| b.manifest.entry("weights.safetensors").unwrap().size;
            assert!(weights(&stored) < weights(&bundle) * 6 / 10);
            let got = run_on(&DeviceSpec::Cpu(CpuBackend::Flex), Predict(&stored, &cifs)).unwrap();
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d <= tolerance && d > 0.0, "{precision:?}: {d:e}");
        }

        // A property bundle is not a CLIP bundle, and the other way round.
        let err = bundle.model::<Cpu>(&device).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::Kind {
                    found: "property",
                    needed: "clip"
                }
            ),
            "{err}"
        );
        assert!(
            bundle
                .embed_texts(&small_config(4).init::<Cpu>(&device), &TEXTS, &device)
                .is_err()
        );
        let clip = Bundle::from_bytes(&packed().bytes, &Limits::default()).unwrap();
        let err = clip.property_model::<Cpu>(&device).unwrap_err();
        assert!(err.to_string().contains("holds a clip model"), "{err}");

        // Manifests that disagree with themselves are refused, naming the key.
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| refused_edit(&bytes, edit);
        let err = edited(&|m| m["model"]["target"]["scale"]["std"] = 0.0.into());
        assert!(err.contains("target.scale"), "{err}");
        let err = edited(&|m| m["model"]["target"] = serde_json::Value::Null);
        assert!(err.contains("model.target"), "{err}");
        let err = edited(&|m| m["model"]["kind"] = "clip".into());
        assert!(err.contains("model.target"), "{err}");
        let err = edited(&|m| m["model"]["kind"] = "ssl".into());
        assert!(err.contains("model.target"), "{err}");
        let err = edited(&|m| m["model"]["kind"] = "tensor".into());
        assert!(
            err.contains("model.kind 'tensor' is not supported"),
            "{err}"
        );
        let err = edited(&|m| m["model"]["config"]["encoder"]["layers"] = 1000.into());
        assert!(err.contains("encoder.layers"), "{err}");
        let err = edited(&|m| m["model"]["config"]["head_hidden"] = 9.into());
        assert!(err.contains("model.parameters"), "{err}");
        let err = edited(&|m| m["tokenizer"] = serde_json::json!({"kind": "bytes", "max_len": 64}));
        assert!(err.contains("no tokenizer"), "{err}");
        let err = edited(&|m| m["structure_input"]["dim"] = 13.into());
        assert!(err.contains("structure_input.dim"), "{err}");
        let err = edited(&|m| m["model"]["target"]["surprise"] = 1.into());
        assert!(err.contains("surprise"), "{err}");
    }
}

/// A tensor head's components of the CIFs' structures (graph head) or the texts (text head).
struct PredictTensors<'a>(&'a Bundle, &'a [(String, String, String)]);
impl OnDevice for PredictTensors<'_> {
    type Output = Vec<f64>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let (bundle, cifs) = (self.0, self.1);
        let model = bundle.model::<B::InnerBackend>(&device).unwrap();
        let head = bundle
            .tensor_head_model::<B::InnerBackend>(&device)
            .unwrap();
        let embeddings = match bundle.tensor_head().unwrap().modality {
            Modality::Text => {
                let texts: Vec<&str> = cifs.iter().map(|c| c.1.as_str()).collect();
                bundle.embed_texts(&model, &texts, &device).unwrap()
            }
            Modality::Graph => {
                let items: Vec<StructureItem> = cifs
                    .iter()
                    .map(|(_, _, c)| bundle.structure_input.from_cif(c).unwrap())
                    .collect();
                bundle.embed_structures(&model, &items, &device).unwrap()
            }
        };
        bundle.predict_tensors(&head, embeddings).unwrap()
    }
}

#[test]
fn a_tensor_head_travels_with_its_clip_model() {
    let cifs = sample_cifs(6);
    let (input, raw) = ftcp_input(&cifs);
    let device = Default::default();
    let dim = raw[0].len();
    let config = small_config(dim);
    Cpu::seed(&device, 11);
    let model = config.init::<Cpu>(&device);
    let head_config = TensorHeadConfig::new(16, 6).with_hidden(vec![8]);
    let head = head_config.init::<Cpu>(&device);
    let targets = TensorTargets {
        mode: TensorMode::Voigt2d,
        mean: vec![120.0, 110.0, 40.0, 35.0, 0.5, -0.5],
        std: vec![30.0, 25.0, 10.0, 8.0, 2.0, 1.0],
    };
    // The reference: the head on the model's embeddings before packing, scaled back by hand.
    let vectors: Vec<f32> = cifs
        .iter()
        .flat_map(|(_, _, c)| match input.from_cif(c).unwrap() {
            StructureItem::Vector(v) => v,
            StructureItem::Graph(_) => unreachable!("an FTCP input makes vectors"),
        })
        .collect();
    let x = Tensor::<Cpu, 2>::from_data(TensorData::new(vectors, [cifs.len(), dim]), &device);
    let texts: Vec<&str> = cifs.iter().map(|c| c.1.as_str()).collect();
    let (ids, pad) = config.text.tokenizer().batch::<Cpu>(&texts, &device);
    for (modality, embeddings) in [
        (Modality::Graph, model.structure.forward(x)),
        (Modality::Text, model.text.forward(ids, pad)),
    ] {
        let normalised = to_host(head.forward(embeddings)).unwrap();
        let pack_with = |precision| {
            pack(PackInput {
                tensor_head: Some(PackTensorHead {
                    model: &head,
                    config: &head_config,
                    targets: targets.clone(),
                    modality,
                }),
                element_table_source: Some("default".into()),
                fitted_on: Some(cifs.len()),
                precision,
                ..test_input(
                    PackModel::Clip {
                        model: &model,
                        config: &config,
                        tokenizer_json: None,
                    },
                    &input,
                )
            })
            .unwrap()
        };
        // Differences in standard deviations of each component.
        let worst = |got: &[f64]| {
            assert_eq!(got.len(), normalised.len());
            got.iter()
                .zip(&normalised)
                .enumerate()
                .map(|(i, (g, z))| {
                    let (m, s) = (targets.mean[i % 6], targets.std[i % 6]);
                    ((g - m) / s - f64::from(*z)).abs()
                })
                .fold(0.0, f64::max)
        };
        let bytes = pack_with(Precision::F32);
        let bundle = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
        let section = bundle.tensor_head().unwrap();
        assert_eq!(section.modality, modality);
        assert_eq!(section.parameters, head.num_params() as u64);
        for spec in every_backend() {
            let d = worst(&run_on(&spec, PredictTensors(&bundle, &cifs)).unwrap());
            assert!(d <= 1e-4, "{modality} head on {spec}: {d:e}");
        }
        for (precision, tolerance) in [(Precision::F16, 2e-2), (Precision::Int8, 1e-1)] {
            let stored = Bundle::from_bytes(&pack_with(precision), &Limits::default()).unwrap();
            let d = worst(
                &run_on(
                    &DeviceSpec::Cpu(CpuBackend::Flex),
                    PredictTensors(&stored, &cifs),
                )
                .unwrap(),
            );
            assert!(
                d <= tolerance && d > 0.0,
                "{precision:?} {modality} head: {d:e}"
            );
        }

        // A fine-tuned model no longer makes the embeddings the head learned from.
        let provenance = Provenance {
            created: "2026-01-02T00:00:00Z".into(),
            xtal_version: "test".into(),
            source: serde_json::json!({}),
        };
        let repacked = bundle
            .repack(&model, None, "fine-tuned", provenance)
            .unwrap();
        let repacked = Bundle::from_bytes(&repacked, &Limits::default()).unwrap();
        let err = repacked.tensor_head().unwrap_err().to_string();
        assert!(err.contains("no tensor head"), "{err}");

        // Hostile or inconsistent heads are refused, naming the key.
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| refused_edit(&bytes, edit);
        let err = edited(&|m| m["tensor_head"]["config"]["input_dim"] = 8.into());
        assert!(err.contains("tensor_head.config.input_dim 8"), "{err}");
        let err = edited(&|m| m["tensor_head"]["config"]["hidden"] = serde_json::json!([1 << 20]));
        assert!(err.contains("tensor_head.config.hidden"), "{err}");
        let err = edited(&|m| m["tensor_head"]["targets"]["std"][2] = 0.0.into());
        assert!(err.contains("tensor_head.targets"), "{err}");
        let err = edited(&|m| m["tensor_head"]["targets"]["mode"] = "full".into());
        assert!(err.contains("targets.mode needs 9"), "{err}");
        let err = edited(&|m| m["tensor_head"]["config"]["hidden"] = serde_json::json!([9]));
        assert!(err.contains("tensor_head.parameters"), "{err}");
        let err = edited(&|m| m["tensor_head"]["modality"] = "image".into());
        assert!(err.contains("image"), "{err}");
        let err = edited(&|m| {
            m["tensor_head"]["config"]["hidden"] = serde_json::json!([]);
            m["tensor_head"]["config"]["input_dim"] = 16.into();
            m["tensor_head"]["config"]["output_dim"] = 6.into();
            m["tensor_head"]["parameters"] = 102.into();
        });
        assert!(
            err.contains("tensor_head.safetensors") && err.contains("holds"),
            "{err}"
        );
        let err = edited(&|m| m["tensor_head"] = serde_json::Value::Null);
        assert!(
            err.contains("tensor_head.safetensors") && err.contains("not a bundle entry"),
            "{err}"
        );
        let mut e = entries(&bytes);
        e.retain(|(name, _)| name != "tensor_head.safetensors");
        let err = refused(
            &rezip(&e, zip::CompressionMethod::Stored),
            &Limits::default(),
        );
        assert!(
            err.contains("tensor_head.safetensors") && err.contains("missing"),
            "{err}"
        );
    }
    let plain = Bundle::from_bytes(&packed().bytes, &Limits::default()).unwrap();
    let err = plain
        .tensor_head_model::<Cpu>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tensor head"), "{err}");
}

struct SslFeatures<'a>(&'a Bundle, &'a [(String, String, String)]);
impl OnDevice for SslFeatures<'_> {
    type Output = Vec<f32>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.0.ssl_model::<B::InnerBackend>(&device).unwrap();
        let items: Vec<StructureItem> = self
            .1
            .iter()
            .map(|(_, _, c)| self.0.structure_input.from_cif(c).unwrap())
            .collect();
        to_host(self.0.ssl_features(&model, &items, &device).unwrap()).unwrap()
    }
}

#[test]
fn an_ssl_bundle_extracts_features_like_its_blocks() {
    let device = Default::default();
    let config = FtcpConfig::default();
    let table = ElementTable::default_table();
    // More than one batch of 64, of structures within the layout's element and site limits.
    let (cifs, tensors): (Vec<_>, Vec<Vec<f64>>) = sample_cifs(120)
        .into_iter()
        .filter_map(|c| {
            let s = read_cif(&c.2, &CifOptions::default()).unwrap();
            let t = ftcp(&s[0].structure, &config, &table).ok()?;
            Some((c, t.data))
        })
        .take(70)
        .unzip();
    assert_eq!(cifs.len(), 70);
    let raw: Vec<f64> = tensors.concat();
    let per = config.rows() * config.cols();
    let minmax = RowMinMax::fit(config.rows(), config.cols(), raw.chunks(per)).unwrap();
    let blocks = BlockKind::ALL.map(|k| {
        SslBlockConfig::new(k)
            .with_width(16)
            .with_layers(1)
            .with_element_columns(config.element_columns())
    });
    let encoder = SslEncoderConfig {
        blocks: blocks.to_vec(),
    };
    Cpu::seed(&device, 11);
    let model = encoder.init::<Cpu>(&device);
    // The reference: each block on the training path's data (as `xtal ssl extract` runs it,
    // in batches of another size), concatenated in feature order.
    let n = cifs.len();
    let data = SslData::new(
        cifs.iter().map(|c| c.0.clone()).collect(),
        config,
        raw.iter().map(|x| *x as f32).collect(),
        minmax.clone(),
        vec![None; n],
        vec![false; n],
    )
    .unwrap();
    let idx: Vec<usize> = (0..n).collect();
    let per_block: Vec<Vec<f32>> = model
        .blocks
        .iter()
        .map(|b| block_features(b, &data, &idx, 25, &device, |_| {}).unwrap())
        .collect();
    let want: Vec<f32> = (0..n)
        .flat_map(|i| {
            per_block
                .iter()
                .zip(BlockKind::ALL)
                .flat_map(move |(f, k)| f[i * k.output_dim()..(i + 1) * k.output_dim()].to_vec())
        })
        .collect();
    assert_eq!(want.len(), n * 2048);

    let input = StructureInput::FtcpTensor(FtcpInput {
        config,
        table,
        minmax,
    });
    let pack_with = |precision| {
        pack(PackInput {
            element_table_source: Some("default".into()),
            precision,
            ..test_input(
                PackModel::Ssl {
                    model: &model,
                    config: &encoder,
                },
                &input,
            )
        })
        .unwrap()
    };
    let bytes = pack_with(Precision::F32);
    let bundle = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
    assert_eq!(bundle.manifest.model.model.kind(), "ssl");
    assert_eq!(bundle.manifest.model.parameters, model.num_params() as u64);
    assert_eq!(bundle.manifest.model.embed_dim, 2048);
    for spec in every_backend() {
        let got = run_on(&spec, SslFeatures(&bundle, &cifs)).unwrap();
        assert_eq!(got.len(), want.len());
        let d = max_diff(&got, &want);
        assert!(d <= 1e-4, "{spec}: {d:e}");
    }
    for (precision, tolerance) in [(Precision::F16, 2e-2), (Precision::Int8, 1e-1)] {
        let stored = Bundle::from_bytes(&pack_with(precision), &Limits::default()).unwrap();
        let got = run_on(
            &DeviceSpec::Cpu(CpuBackend::Flex),
            SslFeatures(&stored, &cifs),
        )
        .unwrap();
        let d = max_diff(&got, &want);
        assert!(d <= tolerance && d > 0.0, "{precision:?}: {d:e}");
    }

    // An SSL bundle is neither a CLIP nor a property bundle.
    let err = bundle.model::<Cpu>(&device).unwrap_err();
    assert!(err.to_string().contains("needs a clip bundle"), "{err}");
    assert!(bundle.property_model::<Cpu>(&device).is_err());
    let clip = Bundle::from_bytes(&packed().bytes, &Limits::default()).unwrap();
    assert!(clip.ssl_model::<Cpu>(&device).is_err());
    // Packing refuses a structure input the blocks cannot read.
    let wrong = pack(test_input(
        PackModel::Ssl {
            model: &model,
            config: &encoder,
        },
        &ftcp_input(&cifs[..4]).0,
    ));
    assert!(wrong.is_err());

    // Manifests that disagree with themselves are refused, naming the key.
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| refused_edit(&bytes, edit);
    let err = edited(&|m| m["structure_input"]["kind"] = "ftcp".into());
    assert!(err.contains("'ftcp_tensor'"), "{err}");
    let err = edited(&|m| {
        let blocks = m["model"]["config"]["blocks"].as_array_mut().unwrap();
        blocks.swap(0, 2);
    });
    assert!(err.contains("in order"), "{err}");
    let err = edited(&|m| m["model"]["config"]["blocks"][3]["width"] = 4096.into());
    assert!(err.contains("block 4 (occupancy)"), "{err}");
    let err = edited(&|m| m["model"]["config"]["blocks"][1]["width"] = 32.into());
    assert!(err.contains("model.parameters"), "{err}");
    let err = edited(&|m| m["structure_input"]["ftcp"]["max_elements"] = 5.into());
    assert!(err.contains("element columns"), "{err}");
    let err = edited(
        &|m| m["index"] = serde_json::json!({"entries": 1, "dtype": "f32", "structure": true, "text": false, "map": false}),
    );
    assert!(err.contains("no tokenizer and no index"), "{err}");
}

// ---- hostile input -------------------------------------------------------------------------

/// The bundle's entries, to be altered and re-zipped with the zip crate directly.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        let o = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file(name.as_str(), o).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn refused(bytes: &[u8], limits: &Limits) -> String {
    match Bundle::from_bytes(bytes, limits) {
        Ok(_) => panic!("a hostile bundle was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Why `bytes` with its manifest edited is refused.
fn refused_edit(bytes: &[u8], edit: &dyn Fn(&mut serde_json::Value)) -> String {
    let mut e = entries(bytes);
    let mut m: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
    edit(&mut m);
    e[0].1 = serde_json::to_vec(&m).unwrap();
    refused(
        &rezip(&e, zip::CompressionMethod::Stored),
        &Limits::default(),
    )
}

fn with_manifest(p: &Packed, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut e = entries(&p.bytes);
    let mut m: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
    edit(&mut m);
    e[0].1 = serde_json::to_vec(&m).unwrap();
    rezip(&e, zip::CompressionMethod::Stored)
}

/// `bytes` with its weights entry's tensors edited and re-serialised, the manifest's sizes and
/// hashes recomputed (so only the edit is judged).
fn with_weights(
    bytes: &[u8],
    edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let mut e = entries(bytes);
    let w = e
        .iter()
        .position(|(n, _)| n == "weights.safetensors")
        .unwrap();
    let st = safetensors::SafeTensors::deserialize(&e[w].1).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    e[w].1 = safetensors::serialize(views, None).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
    for listed in m["entries"].as_array_mut().unwrap() {
        if listed["name"] == "weights.safetensors" {
            listed["size"] = e[w].1.len().into();
            listed["sha256"] = xtal_core::bundle::sha256_hex(&e[w].1).into();
        }
    }
    e[0].1 = serde_json::to_vec(&m).unwrap();
    rezip(&e, zip::CompressionMethod::Stored)
}

/// An int8 weights file is checked like any other: scales that are missing, of another dtype
/// or shape, negative or not finite are refused with the tensor named.
#[test]
fn hostile_int8_weights_are_refused() {
    use safetensors::Dtype;
    let p = packed();
    let limits = Limits::default();
    let linear = "text.encoder.layers.0.mha.query.weight";
    let scale = format!("{linear}_scale");
    // Unaltered (re-serialised), it loads.
    let same = with_weights(&p.int8_bytes, |_| {});
    Bundle::from_bytes(&same, &limits)
        .unwrap()
        .model::<Cpu>(&Default::default())
        .unwrap();
    let dropped = with_weights(&p.int8_bytes, |t| t.retain(|(n, ..)| *n != scale));
    let err = refused(&dropped, &limits);
    assert!(
        err.contains(&format!("{linear} is int8 without its scales")),
        "{err}"
    );
    let reshaped = with_weights(&p.int8_bytes, |t| {
        let s = t.iter_mut().find(|(n, ..)| *n == scale).unwrap();
        // Square matrix: [cols, 1] would broadcast (per row); [2, cols / 2] cannot.
        let cols = s.2[1];
        s.2 = vec![2, cols / 2];
    });
    let err = refused(&reshaped, &limits);
    assert!(
        err.contains(&scale) && err.contains("each dimension"),
        "{err}"
    );
    let halved = with_weights(&p.int8_bytes, |t| {
        let s = t.iter_mut().find(|(n, ..)| *n == scale).unwrap();
        s.1 = Dtype::F16;
        s.3.truncate(s.3.len() / 2);
    });
    let err = refused(&halved, &limits);
    assert!(err.contains(&scale) && err.contains("must be f32"), "{err}");
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let poisoned = with_weights(&p.int8_bytes, |t| {
            let s = t.iter_mut().find(|(n, ..)| *n == scale).unwrap();
            s.3[..4].copy_from_slice(&bad.to_le_bytes());
        });
        // The header is sound; the values are judged when the model is built.
        let bundle = Bundle::from_bytes(&poisoned, &limits).unwrap();
        let err = bundle
            .model::<Cpu>(&Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&scale) && err.contains("finite and ≥ 0"),
            "{bad}: {err}"
        );
    }
    // An int8 tensor where the configuration has none: named like any stray tensor.
    let stray = with_weights(&p.int8_bytes, |t| {
        t.push(("surprise".into(), Dtype::I8, vec![2, 2], vec![1; 4]));
        t.push(("surprise_scale".into(), Dtype::F32, vec![1, 2], vec![0; 8]));
    });
    let err = refused(&stray, &limits);
    assert!(err.contains("values"), "{err}");
}

#[test]
fn hostile_bundles_are_refused_with_the_reason() {
    let p = packed();
    let limits = Limits::default();
    let deflated = zip::CompressionMethod::Deflated;
    let stored = zip::CompressionMethod::Stored;
    let expect = |bytes: &[u8], needle: &str| {
        let err = refused(bytes, &limits);
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    };
    // Not a zip, empty, truncated anywhere.
    expect(
        b"not a zip at all, just text of some length",
        "not a bundle",
    );
    expect(b"", "not a bundle");
    for cut in [10, p.bytes.len() / 2, p.bytes.len() - 30, p.bytes.len() - 1] {
        assert!(
            Bundle::from_bytes(&p.bytes[..cut], &limits).is_err(),
            "cut at {cut}"
        );
    }
    // One flipped byte inside the stored weights: the hash catches it.
    let mut e = entries(&p.bytes);
    let w = e
        .iter()
        .position(|(n, _)| n == "weights.safetensors")
        .unwrap();
    let last = e[w].1.len() - 1;
    e[w].1[last] ^= 0x01;
    expect(&rezip(&e, stored), "sha256 does not match");
    // Unsafe or unexpected names.
    for name in ["../evil.json", "/etc/passwd", "a/../../b", "C:\\x"] {
        let mut e = entries(&p.bytes);
        e.push((name.into(), b"{}".to_vec()));
        expect(&rezip(&e, stored), "not allowed");
    }
    let mut e = entries(&p.bytes);
    e.push(("extra.bin".into(), vec![1, 2, 3]));
    expect(&rezip(&e, stored), "not listed in manifest.json");
    // A listed entry that is missing.
    let e: Vec<_> = entries(&p.bytes)
        .into_iter()
        .filter(|(n, _)| n != "weights.safetensors")
        .collect();
    expect(&rezip(&e, stored), "missing from the archive");
    // Two entries with one name (the zip crate refuses to write them: rename in place).
    let mut e = entries(&p.bytes);
    e.push(("README.mX".into(), b"second".to_vec()));
    let mut bytes = rezip(&e, stored);
    let (from, to) = (b"README.mX", b"README.md");
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
        }
    }
    expect(&bytes, "duplicate");
    // A zip bomb: 64 MiB of zeros deflate to ~64 KiB.
    let mut e = entries(&p.bytes);
    e.push(("bomb.json".into(), vec![0; 64 << 20]));
    expect(&rezip(&e, deflated), "compression ratio");
    // Sizes over the limits.
    let tight = Limits {
        max_entry_bytes: 1000,
        ..Limits::default()
    };
    assert!(refused(&p.bytes, &tight).contains("limit"));
    let few = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    assert!(refused(&p.bytes, &few).contains("limit"));
    // Manifest: other versions, other formats, unknown keys, configurations that disagree.
    expect(
        &with_manifest(&p, |m| m["format_version"] = 2.into()),
        "this xtal reads version 1",
    );
    expect(
        &with_manifest(&p, |m| m["format"] = "pickle".into()),
        "not an xtal bundle",
    );
    expect(&with_manifest(&p, |m| m["surprise"] = 1.into()), "surprise");
    expect(
        &with_manifest(&p, |m| {
            m["model"]["config"]["text"]["width"] = 1_000_000.into()
        }),
        "text.width",
    );
    expect(
        &with_manifest(&p, |m| {
            m["model"]["config"]["structure"]["hidden"] = serde_json::json!([23]);
            m["model"]["parameters"] = 0.into();
        }),
        "model.parameters",
    );
    // The right number of values under a wrong name: caught when the model is built.
    let renamed = {
        let mut e = entries(&p.bytes);
        let w = e
            .iter()
            .position(|(n, _)| n == "weights.safetensors")
            .unwrap();
        let text = &mut e[w].1;
        let (from, to) = (b"final_norm", b"final_nurm");
        for i in 0..text.len() - from.len() {
            if &text[i..i + from.len()] == from {
                text[i..i + from.len()].copy_from_slice(to);
            }
        }
        let hash = xtal_core::bundle::sha256_hex(text);
        let mut m: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
        for entry in m["entries"].as_array_mut().unwrap() {
            if entry["name"] == "weights.safetensors" {
                entry["sha256"] = hash.clone().into();
            }
        }
        e[0].1 = serde_json::to_vec(&m).unwrap();
        rezip(&e, stored)
    };
    let bundle = Bundle::from_bytes(&renamed, &limits).unwrap();
    let err = bundle.model::<Cpu>(&Default::default()).unwrap_err();
    assert!(
        matches!(err, BundleError::Entry { .. }) && err.to_string().contains("final_nurm"),
        "{err}"
    );
}

#[test]
fn a_precomputed_vector_bundle_cannot_embed_cifs() {
    let p = packed();
    let bundle = Bundle::from_bytes(&p.bytes, &Limits::default()).unwrap();
    let StructureInput::Ftcp(_, scaler) = bundle.structure_input.clone() else {
        panic!("an FTCP bundle");
    };
    let input = StructureInput::Vector(scaler);
    let err = input.from_cif(&p.cifs[0].2).unwrap_err().to_string();
    assert!(err.contains("cannot embed a CIF"), "{err}");
    let err = bundle
        .structure_input
        .from_cif("data_x\n_cell_length_a 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("CIF"), "{err}");
    let err = bundle
        .structure_input
        .standardize(&[f32::NAN; 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("values"), "{err}");
}

// ---- HuggingFace text encoders -------------------------------------------------------------

fn hf_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hf")
        .join(name)
}

/// A CLIP over the pretrained fixture model `name` (mean pooling), packed with its
/// tokenizer.json, an index of two texts and the sample's vector input. Also the model's
/// text projection `(weight [in, out], bias)`, read back from the packed weights.
struct HfPacked {
    bytes: Vec<u8>,
    half_bytes: Vec<u8>,
    projection: (Vec<f32>, Vec<f32>),
    hidden: usize,
}

fn hf_packed(name: &str) -> HfPacked {
    use xtal_core::models::clip::HfTextConfig;
    use xtal_core::models::hf::{Freezing, HfFiles, Pooling, load};
    let dir = hf_fixture(name);
    let read = |file: &str| match std::fs::read(dir.join(file)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let files = HfFiles {
        folder: dir.display().to_string(),
        read: &read,
    };
    let device = Default::default();
    let loaded = load::<Cpu>(&files, 64, &device).unwrap();
    let hidden = loaded.config.hidden_size();
    let config = ClipConfig::new(
        TextEncoderConfig::new()
            .with_max_len(64)
            .with_embed_dim(16)
            .with_huggingface(Some(HfTextConfig::new(
                dir.display().to_string(),
                loaded.model_type.clone(),
                loaded.config.clone(),
                Pooling::Mean,
                Freezing::new(),
            ))),
        StructureProjectorConfig::new(6).with_embed_dim(16),
    );
    assert_eq!(
        config.parameter_count(),
        config.init::<Cpu>(&device).num_params() as u64,
        "{name}"
    );
    Cpu::seed(&device, 11);
    let model = config
        .init::<Cpu>(&device)
        .with_text_backbone(loaded.encoder);
    let tokenizer_json = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let input = StructureInput::Vector(FeatureScaler {
        mean: vec![0.0; 6],
        std: vec![1.0; 6],
    });
    let index = RetrievalIndex {
        records: IndexRecords {
            ids: vec!["a".into(), "b".into()],
            formulas: vec![None, None],
            descriptions: vec![TEXTS[0].into(), TEXTS[1].into()],
            structures: None,
        },
        dim: 16,
        structure: Some((0..32).map(|i| (i as f32 * 0.37).sin() / 2.0).collect()),
        text: None,
        map: None,
    };
    let pack_as = |precision| {
        pack(PackInput {
            index: Some((&index, None)),
            precision,
            ..test_input(
                PackModel::Clip {
                    model: &model,
                    config: &config,
                    tokenizer_json: Some(&tokenizer_json),
                },
                &input,
            )
        })
        .unwrap()
    };
    let bytes = pack_as(Precision::F32);
    let weights = entries(&bytes)
        .into_iter()
        .find(|(n, _)| n == "weights.safetensors")
        .unwrap()
        .1;
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let floats = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    HfPacked {
        half_bytes: pack_as(Precision::F16),
        projection: (
            floats("text.projection.weight"),
            floats("text.projection.bias"),
        ),
        bytes,
        hidden,
    }
}

struct EmbedTexts<'a>(&'a Bundle, Vec<String>);
impl OnDevice for EmbedTexts<'_> {
    type Output = Vec<f32>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.0.model::<B::InnerBackend>(&device).unwrap();
        let texts: Vec<&str> = self.1.iter().map(String::as_str).collect();
        to_host(self.0.embed_texts(&model, &texts, &device).unwrap()).unwrap()
    }
}

/// The bundle's pretrained encoder's own sentence embeddings (before the CLIP projection).
struct SentenceEmbeddings<'a>(&'a Bundle, Vec<String>);
impl OnDevice for SentenceEmbeddings<'_> {
    type Output = Result<Vec<f32>, String>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.0.model::<B::InnerBackend>(&device).unwrap();
        let texts: Vec<&str> = self.1.iter().map(String::as_str).collect();
        let embedded = self
            .0
            .sentence_embeddings(&model, &texts, &device)
            .map_err(|e| e.to_string())?;
        Ok(to_host(embedded).unwrap())
    }
}

/// A bundle of a CLIP whose text side is a pretrained HF encoder embeds texts as
/// transformers does: the fixture's pooled states (computed by transformers) through the
/// bundle's own projection, L2-normalised, within 1e-4 on every backend; f16 within 5e-3.
/// Every family: BERT, RoBERTa (sharded weights), DistilBERT, T5, DeBERTa-v2.
#[test]
fn a_huggingface_text_bundle_embeds_like_transformers() {
    for name in ["bert", "roberta", "distilbert", "t5", "deberta-v2"] {
        let p = hf_packed(name);
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(hf_fixture(name).join("xtal_reference.json")).unwrap(),
        )
        .unwrap();
        let sentences: Vec<String> = reference["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        let (w, b) = &p.projection;
        let (mut expected, mut expected_sentences) = (Vec::new(), Vec::new());
        for pooled in reference["pooled_mean"].as_array().unwrap() {
            let x: Vec<f64> = pooled
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(x.len(), p.hidden);
            let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            expected_sentences.extend(x.iter().map(|v| (v / norm) as f32));
            let y: Vec<f64> = (0..16)
                .map(|o| {
                    b[o] as f64
                        + (0..p.hidden)
                            .map(|i| x[i] * w[i * 16 + o] as f64)
                            .sum::<f64>()
                })
                .collect();
            let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
            expected.extend(y.iter().map(|v| (v / norm) as f32));
        }
        let bundle = Bundle::from_bytes(&p.bytes, &Limits::default()).unwrap();
        assert_eq!(
            bundle.manifest.tokenizer.as_ref().unwrap().kind,
            "huggingface"
        );
        for spec in every_backend() {
            let got = run_on(&spec, EmbedTexts(&bundle, sentences.clone())).unwrap();
            let d = max_diff(&got, &expected);
            assert!(d <= 1e-4, "{name} on {spec}: {d:e} from transformers");
            // The pretrained encoder's own embeddings, as sentence-transformers would give them.
            let got = run_on(&spec, SentenceEmbeddings(&bundle, sentences.clone()))
                .unwrap()
                .unwrap();
            let d = max_diff(&got, &expected_sentences);
            assert!(
                d <= 1e-4,
                "{name} sentences on {spec}: {d:e} from transformers"
            );
        }
        let half = Bundle::from_bytes(&p.half_bytes, &Limits::default()).unwrap();
        let got = run_on(
            &DeviceSpec::Cpu(CpuBackend::NdArray),
            EmbedTexts(&half, sentences.clone()),
        )
        .unwrap();
        let d = max_diff(&got, &expected);
        assert!(d < 5e-3 && d > 0.0, "{name} f16: {d:e}");
    }
}

/// The tokenizer travels checked: one that can emit ids past the model's vocabulary, a
/// missing or byte-level-declared tokenizer, an architecture out of bounds are all refused
/// with the entry or key named.
#[test]
fn hostile_huggingface_bundles_are_refused() {
    let p = hf_packed("bert");
    let limits = Limits::default();
    // Re-zips `entries` with the manifest's hashes and sizes recomputed.
    let rehashed = |mut e: Vec<(String, Vec<u8>)>, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut m: serde_json::Value = serde_json::from_slice(&e[0].1).unwrap();
        let listed: Vec<(String, usize, String)> = e[1..]
            .iter()
            .map(|(n, d)| (n.clone(), d.len(), xtal_core::bundle::sha256_hex(d)))
            .collect();
        m["entries"] = listed
            .iter()
            .map(|(n, s, h)| serde_json::json!({"name": n, "size": s, "sha256": h}))
            .collect();
        edit(&mut m);
        e[0].1 = serde_json::to_vec(&m).unwrap();
        rezip(&e, zip::CompressionMethod::Stored)
    };
    let expect = |bytes: &[u8], needles: &[&str]| {
        let err = refused(bytes, &limits);
        for n in needles {
            assert!(err.contains(n), "expected '{n}' in: {err}");
        }
    };
    // Unaltered, it loads (so what follows is refused for the alteration alone).
    Bundle::from_bytes(
        &rehashed(entries(&p.bytes), &|_: &mut serde_json::Value| {}),
        &limits,
    )
    .unwrap();

    // A token id past the 300-row embedding.
    let mut e = entries(&p.bytes);
    let at = e.iter().position(|(n, _)| n == "tokenizer.json").unwrap();
    let mut tok: serde_json::Value = serde_json::from_slice(&e[at].1).unwrap();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 300, "content": "[EXTRA]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    e[at].1 = serde_json::to_vec(&tok).unwrap();
    expect(
        &rehashed(e, &|_: &mut serde_json::Value| {}),
        &["tokenizer.json", "largest id 300"],
    );

    // Not a tokenizer at all.
    let mut e = entries(&p.bytes);
    e[at].1 = b"{\"nope\": 1}".to_vec();
    expect(
        &rehashed(e, &|_: &mut serde_json::Value| {}),
        &["tokenizer.json", "not a tokenizer.json"],
    );

    // Missing, yet listed; absent and unlisted.
    let mut e = entries(&p.bytes);
    let listed = rehashed(e.clone(), &|_: &mut serde_json::Value| {});
    e.remove(at);
    let mut kept = entries(&listed);
    kept.remove(at);
    expect(
        &rezip(&kept, zip::CompressionMethod::Stored),
        &["tokenizer.json", "missing from the archive"],
    );
    expect(
        &rehashed(e, &|_: &mut serde_json::Value| {}),
        &[
            "tokenizer.json",
            "is missing; tokenizer.kind 'huggingface' needs it",
        ],
    );

    // Declared byte-level while the model is a HF encoder.
    expect(
        &rehashed(entries(&p.bytes), &|m: &mut serde_json::Value| {
            m["tokenizer"]["kind"] = "bytes".into()
        }),
        &["tokenizer.kind", "huggingface"],
    );
    expect(
        &rehashed(entries(&p.bytes), &|m: &mut serde_json::Value| {
            m["tokenizer"]["kind"] = "sentencepiece".into()
        }),
        &["tokenizer.kind 'sentencepiece' is not supported"],
    );
    // A hostile architecture: bounded before anything is allocated.
    expect(
        &rehashed(entries(&p.bytes), &|m: &mut serde_json::Value| {
            m["model"]["config"]["text"]["huggingface"]["encoder"]["Bert"]["num_hidden_layers"] =
                100_000.into()
        }),
        &["num_hidden_layers = 100000"],
    );
    expect(
        &rehashed(entries(&p.bytes), &|m: &mut serde_json::Value| {
            m["model"]["config"]["text"]["huggingface"]["model_type"] = "gpt2".into()
        }),
        &["model_type 'gpt2' is not supported"],
    );
}
