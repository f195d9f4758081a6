//! Structure encoders (CGCNN, PaiNN) on real structures of the sample data: the embedding of
//! a crystal does not depend on the Cartesian frame, the order of its sites, the origin, or
//! the unit cell chosen (a supercell or an equivalent cell setting), nor on which other
//! structures share its batch; and cpu and wgpu give the same embedding.

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::device::{CpuBackend, DeviceSpec, OnDevice, available_devices, run_on};
use xtal_core::featurize::{CrystalGraph, ElementTable, GraphBatch, GraphConfig};
use xtal_core::models::structure::{GraphBackbone, Readout, StructureEncoderConfig};
use xtal_core::structure::{CifOptions, Lattice, Structure, read_cif};
use xtal_core::train::{model_from_bytes, model_to_bytes, to_host};

/// A few real structures of different kinds: a triclinic carbon allotrope, a cubic
/// perovskite, a 40-atom Materials Project cell and a low-symmetry one.
fn sample_structures() -> Vec<(String, Structure)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (id, source, cif, n_atoms) = (col("id"), col("source"), col("cif"), col("n_atoms"));
    let mut out: Vec<(String, Structure)> = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        let src = rec[source].to_string();
        let big = rec[n_atoms].parse::<f64>().unwrap() >= 30.0;
        let wanted = match src.as_str() {
            "carbon24" | "perov5" | "opryan" => !taken.contains(&src),
            "mp40" => big && !taken.contains(&src),
            _ => false,
        };
        if wanted {
            let s = read_cif(&rec[cif], &CifOptions::default())
                .unwrap()
                .remove(0);
            out.push((rec[id].to_string(), s.structure));
            taken.push(src);
        }
    }
    assert_eq!(out.len(), 4, "sample structures of four sources");
    out
}

fn rotation() -> [[f64; 3]; 3] {
    // Rotation about the axis (1, 2, 3)/√14 by 0.9 rad (Rodrigues).
    let n = 14f64.sqrt();
    let (x, y, z) = (1.0 / n, 2.0 / n, 3.0 / n);
    let (c, s) = (0.9f64.cos(), 0.9f64.sin());
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

fn rotated(s: &Structure) -> Structure {
    let r = rotation();
    let m = s.lattice.matrix;
    let rows = m.map(|v| std::array::from_fn(|i| (0..3).map(|k| r[i][k] * v[k]).sum::<f64>()));
    Structure {
        lattice: Lattice::new(rows),
        sites: s.sites.clone(),
    }
}

fn permuted(s: &Structure) -> Structure {
    let mut sites = s.sites.clone();
    sites.reverse();
    let k = sites.len() / 3;
    sites.rotate_left(k);
    Structure {
        lattice: s.lattice,
        sites,
    }
}

fn translated(s: &Structure) -> Structure {
    let shift = [0.37, -0.21, 0.55];
    let mut t = s.clone();
    for site in &mut t.sites {
        site.frac = std::array::from_fn(|k| site.frac[k] + shift[k]);
    }
    t
}

fn inverse(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c = |r: usize, k: usize| {
        let (r1, r2, k1, k2) = ((r + 1) % 3, (r + 2) % 3, (k + 1) % 3, (k + 2) % 3);
        m[r1][k1] * m[r2][k2] - m[r1][k2] * m[r2][k1]
    };
    let det: f64 = (0..3).map(|k| m[0][k] * c(0, k)).sum();
    std::array::from_fn(|i| std::array::from_fn(|j| c(j, i) / det))
}

/// The same crystal in another cell: a' = a + b, b' = b, c' = c + a (a unimodular change).
fn other_setting(s: &Structure) -> Structure {
    let u = [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]];
    let m = s.lattice.matrix;
    let new: [[f64; 3]; 3] =
        std::array::from_fn(|i| std::array::from_fn(|k| (0..3).map(|j| u[i][j] * m[j][k]).sum()));
    // x = f·M = f'·U·M, so f' = f·U⁻¹.
    let inv = inverse(u);
    let mut t = s.clone();
    t.lattice = Lattice::new(new);
    for site in &mut t.sites {
        let f = site.frac;
        site.frac = std::array::from_fn(|k| (0..3).map(|j| f[j] * inv[j][k]).sum());
    }
    t
}

/// The same crystal, described differently.
type Transform = fn(&Structure) -> Structure;

fn configs() -> Vec<StructureEncoderConfig> {
    vec![
        StructureEncoderConfig::of(GraphBackbone::Cgcnn),
        StructureEncoderConfig::of(GraphBackbone::Cgcnn).with_readout(Readout::Attention),
        StructureEncoderConfig::of(GraphBackbone::Painn),
        StructureEncoderConfig::of(GraphBackbone::Painn).with_readout(Readout::Attention),
        // PaiNN reads directions, so cutting a shell of equal distances by list order (which
        // the frame and the site order decide) would change it: keeping ties must hold.
        StructureEncoderConfig::new(
            GraphBackbone::Painn,
            GraphConfig {
                max_neighbors: Some(10),
                ..GraphBackbone::Painn.default_graph()
            },
        ),
    ]
}

/// Embeddings of `groups` of structures (one batch per group) with given weights.
struct Embed<'a> {
    config: &'a StructureEncoderConfig,
    weights: Option<Vec<u8>>,
    groups: Vec<Vec<Structure>>,
}

impl OnDevice for Embed<'_> {
    type Output = (Vec<Vec<f32>>, Vec<u8>);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        B::seed(&device, 7);
        let mut model = self.config.init::<B::InnerBackend>(&device);
        if let Some(w) = self.weights {
            model = model_from_bytes(model, w, &device).unwrap();
        }
        let table = ElementTable::default_table();
        let out = self
            .groups
            .iter()
            .map(|group| {
                let graphs: Vec<CrystalGraph> = group
                    .iter()
                    .map(|s| CrystalGraph::build(s, &self.config.graph).unwrap())
                    .collect();
                let refs: Vec<&CrystalGraph> = graphs.iter().collect();
                let batch = GraphBatch::new(&refs, &table).unwrap().to_tensors(&device);
                to_host(model.forward(&batch)).unwrap()
            })
            .collect();
        (out, model_to_bytes(&model).unwrap())
    }
}

/// `groups` embedded on `device` (fresh seeded weights, or `weights`); also the weights.
fn embed(
    device: &DeviceSpec,
    config: &StructureEncoderConfig,
    weights: Option<Vec<u8>>,
    groups: Vec<Vec<Structure>>,
) -> (Vec<Vec<f32>>, Vec<u8>) {
    run_on(
        device,
        Embed {
            config,
            weights,
            groups,
        },
    )
    .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const CPU: DeviceSpec = DeviceSpec::Cpu(CpuBackend::DEFAULT);

#[test]
fn embeddings_are_invariant_to_frame_order_origin_and_cell() {
    let structures = sample_structures();
    let transforms: [(&str, Transform); 5] = [
        ("rotation", rotated),
        ("permutation", permuted),
        ("translation", translated),
        ("supercell 2×1×2", |s| s.supercell([2, 1, 2])),
        ("other cell setting", other_setting),
    ];
    for config in configs() {
        let mut groups = Vec::new();
        for (_, s) in &structures {
            groups.push(vec![s.clone()]);
            for (_, t) in &transforms {
                groups.push(vec![t(s)]);
            }
        }
        let (out, _) = embed(&CPU, &config, None, groups);
        let per = transforms.len() + 1;
        let mut worst = 0f32;
        for (i, (id, _)) in structures.iter().enumerate() {
            let base = &out[i * per];
            assert!(
                base.iter().any(|x| x.abs() > 1e-3),
                "{id}: a real embedding"
            );
            for (k, (name, _)) in transforms.iter().enumerate() {
                let d = max_diff(base, &out[i * per + 1 + k]);
                worst = worst.max(d);
                assert!(
                    d <= 1e-5,
                    "{:?}/{:?} {id}: {name} changes the embedding by {d}",
                    config.backbone,
                    config.readout
                );
            }
        }
        eprintln!(
            "{:?}/{:?}: largest change {worst:.2e}",
            config.backbone, config.readout
        );
    }
}

#[test]
fn an_embedding_does_not_depend_on_the_rest_of_its_batch() {
    let structures: Vec<Structure> = sample_structures().into_iter().map(|s| s.1).collect();
    for config in configs() {
        let mut groups: Vec<Vec<Structure>> = structures.iter().map(|s| vec![s.clone()]).collect();
        groups.push(structures.clone());
        let (out, _) = embed(&CPU, &config, None, groups);
        let alone: Vec<f32> = out[..structures.len()].concat();
        let d = max_diff(&alone, &out[structures.len()]);
        assert!(
            d <= 1e-5,
            "{:?}: batched vs alone differ by {d}",
            config.backbone
        );
    }
}

/// A different crystal gives a different embedding (the invariances are not a constant map).
#[test]
fn different_crystals_embed_differently() {
    let structures: Vec<Structure> = sample_structures().into_iter().map(|s| s.1).collect();
    for config in configs() {
        let (out, _) = embed(&CPU, &config, None, vec![structures.clone()]);
        let d = config.output_dim;
        for i in 1..structures.len() {
            let diff = max_diff(&out[0][..d], &out[0][i * d..(i + 1) * d]);
            assert!(
                diff > 1e-3,
                "{:?}: structures 0 and {i} embed alike",
                config.backbone
            );
        }
    }
}

#[test]
fn cpu_and_wgpu_give_the_same_embeddings() {
    let found = available_devices()
        .iter()
        .any(|d| d.spec.starts_with("wgpu:") && d.usable);
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "no wgpu adapter under CI=true"
        );
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers)");
        return;
    }
    let structures: Vec<Structure> = sample_structures().into_iter().map(|s| s.1).collect();
    for config in configs() {
        let (cpu, weights) = embed(&CPU, &config, None, vec![structures.clone()]);
        let (gpu, _) = embed(
            &DeviceSpec::Wgpu(None),
            &config,
            Some(weights),
            vec![structures.clone()],
        );
        let d = max_diff(&cpu[0], &gpu[0]);
        eprintln!(
            "{:?}/{:?}: cpu vs wgpu {d:.2e}",
            config.backbone, config.readout
        );
        assert!(
            d <= 1e-4,
            "{:?}: cpu and wgpu differ by {d}",
            config.backbone
        );
    }
}

#[test]
fn parameter_counts_match_the_modules() {
    for config in configs() {
        let device = Default::default();
        let model = config.init::<xtal_core::device::Flex>(&device);
        assert_eq!(model.num_params() as u64, config.parameter_count());
    }
}
