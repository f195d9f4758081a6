//! `xtal bench --bundle`: pack and load times of a 20M-parameter CLIP bundle (f32 and f16)
//! next to burn's own record format (the run checkpoints' MessagePack) in the same run, and
//! search latency over a 100,000-entry index on one core next to NumPy (one BLAS thread).

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use xtal_core::bundle::{
    Bundle, IndexRecords, Limits, PackInput, PackModel, Precision, RetrievalIndex, Side,
    StructureInput, pack,
};
use xtal_core::data::FeatureScaler;
use xtal_core::device::Flex;
use xtal_core::models::clip::{ClipConfig, StructureProjectorConfig, TextEncoderConfig};
use xtal_core::train::{model_from_bytes, model_to_bytes};

const INDEX_ROWS: usize = 100_000;
const QUERIES: usize = 200;

/// Median seconds of `runs` calls.
fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn unit_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut v = super::baseline::uniform_values(n * d, seed);
    for r in v.chunks_mut(d) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    v
}

pub fn run(json_out: bool) -> anyhow::Result<()> {
    let device = Default::default();
    // The original default text encoder (512/6/8/256) and a 1024-D structure input.
    let config = ClipConfig::new(
        TextEncoderConfig::new(),
        StructureProjectorConfig::new(1024),
    );
    let model = config.init::<Flex>(&device);
    let params = config.parameter_count();
    let input = StructureInput::Vector(FeatureScaler {
        mean: vec![0.0; 1024],
        std: vec![1.0; 1024],
    });
    let pack_with = |precision: Precision| {
        pack(PackInput {
            tensor_head: None,
            model: PackModel::Clip {
                model: &model,
                config: &config,
                tokenizer_json: None,
            },
            structure_input: &input,
            element_table_source: None,
            fitted_on: None,
            index: None,
            card: None,
            precision,
            created: "1970-01-01T00:00:00Z".into(),
            xtal_version: env!("CARGO_PKG_VERSION").into(),
            source: None,
            precision_check: None,
        })
    };
    let mut rows = Vec::new();
    let baseline_bytes = model_to_bytes::<Flex, _>(&model)?;
    let save_base = median(3, || drop(model_to_bytes::<Flex, _>(&model)));
    let load_base = median(3, || {
        drop(model_from_bytes(
            config.init::<Flex>(&device),
            baseline_bytes.clone(),
            &device,
        ))
    });
    for precision in [Precision::F32, Precision::F16, Precision::Int8] {
        let bytes = pack_with(precision)?;
        let pack_s = median(3, || drop(pack_with(precision)));
        let load_s = median(3, || {
            let b = Bundle::from_bytes(&bytes, &Limits::default()).expect("bundle loads");
            drop(b.model::<Flex>(&device).expect("model builds"));
        });
        rows.push(json!({
            "workload": format!("20M-parameter bundle, {}", precision.name()),
            "bytes": bytes.len(),
            "pack_seconds": pack_s,
            "load_seconds": load_s,
            "pack_vs_mpk": pack_s / save_base,
            "load_vs_mpk": load_s / load_base,
        }));
    }

    let mut search = Vec::new();
    for dim in [128usize, 512] {
        let index = RetrievalIndex {
            records: IndexRecords {
                ids: (0..INDEX_ROWS).map(|i| i.to_string()).collect(),
                formulas: vec![None; INDEX_ROWS],
                descriptions: vec![String::new(); INDEX_ROWS],
                structures: None,
            },
            dim,
            structure: Some(unit_rows(INDEX_ROWS, dim, 1)),
            text: None,
            map: None,
        };
        let queries = unit_rows(QUERIES, dim, 2);
        let mut times: Vec<f64> = queries
            .chunks(dim)
            .map(|q| {
                let s = Instant::now();
                let hits = index.search(q, 10, Side::Structure).expect("search");
                std::hint::black_box(hits);
                s.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let numpy = numpy_search_ms(dim);
        let ms = times[times.len() / 2] * 1e3;
        search.push(json!({
            "workload": format!("top-10 over {INDEX_ROWS} × {dim} f32, one core"),
            "median_ms": ms,
            "p95_ms": times[times.len() * 95 / 100] * 1e3,
            "numpy_median_ms": numpy,
            "vs_numpy": numpy.map(|n| ms / n),
        }));
    }
    let report = json!({
        "parameters": params,
        "baseline": "burn NamedMpk record (run checkpoints), same model, same run",
        "bundles": rows,
        "search": search,
    });
    if json_out {
        println!("{report}");
        return Ok(());
    }
    println!(
        "bundle of a {:.1}M-parameter CLIP (512/6/8/256 text, 1024-D structure input):",
        params as f64 / 1e6
    );
    println!(
        "  burn MessagePack record: save {:.0} ms, load {:.0} ms (baseline)",
        save_base * 1e3,
        load_base * 1e3
    );
    for r in &rows {
        println!(
            "  {:<28} {:>6.1} MiB  pack {:>5.0} ms ({:.2}× baseline)  load {:>5.0} ms ({:.2}× baseline)",
            r["workload"].as_str().unwrap_or(""),
            r["bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            r["pack_seconds"].as_f64().unwrap_or(0.0) * 1e3,
            r["pack_vs_mpk"].as_f64().unwrap_or(0.0),
            r["load_seconds"].as_f64().unwrap_or(0.0) * 1e3,
            r["load_vs_mpk"].as_f64().unwrap_or(0.0),
        );
    }
    println!("search (median of {QUERIES} queries, one thread):");
    for s in &search {
        println!(
            "  {:<36} {:>6.2} ms (p95 {:.2}){}",
            s["workload"].as_str().unwrap_or(""),
            s["median_ms"].as_f64().unwrap_or(0.0),
            s["p95_ms"].as_f64().unwrap_or(0.0),
            s["numpy_median_ms"]
                .as_f64()
                .map(|n| format!(
                    "  NumPy {n:.2} ms ({:.2}×)",
                    s["vs_numpy"].as_f64().unwrap_or(0.0)
                ))
                .unwrap_or_else(|| "  (NumPy not available)".into())
        );
    }
    Ok(())
}

/// NumPy's median time for the same search (matrix–vector product + argpartition + sort),
/// with one BLAS thread; None when python3 or NumPy is missing.
fn numpy_search_ms(dim: usize) -> Option<f64> {
    let script = format!(
        "import numpy as np, time\n\
         rng = np.random.default_rng(1)\n\
         x = rng.standard_normal(({INDEX_ROWS}, {dim}), dtype=np.float32)\n\
         x /= np.linalg.norm(x, axis=1, keepdims=True)\n\
         q = rng.standard_normal(({QUERIES}, {dim}), dtype=np.float32)\n\
         t = []\n\
         for v in q:\n\
         \x20   s = time.perf_counter(); sc = x @ v; top = np.argpartition(-sc, 10)[:10]\n\
         \x20   top = top[np.argsort(-sc[top])]; t.append(time.perf_counter() - s)\n\
         print(sorted(t)[len(t) // 2] * 1e3)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
