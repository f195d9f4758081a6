//! `xtal train clip`, `xtal eval clip` and `xtal visualize` end to end on a small dataset in
//! the original system's layout (dataset.jsonl + graph_emb/*.npy), texts from data/sample.

use std::path::{Path, PathBuf};

use crate::common::{epoch_lines, scratch, stderr, train_clip as train, xtal};
use serde_json::Value;

fn write_npy(path: &Path, data: &[f32]) {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[data.len() as u64])
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, out).unwrap();
}

/// 40 records with real descriptions: 38 with a 16-D embedding found by one of the three
/// lookup rules, 2 without; plus a line without text. All but records 10 and 11 carry a
/// 3×3 tensor that depends on the embedding.
pub fn dataset(dir: &Path) {
    let csv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv");
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id_c, text_c, formula_c) = (col("id"), col("description"), col("formula"));
    std::fs::create_dir_all(dir.join("graph_emb")).unwrap();
    std::fs::create_dir_all(dir.join("custom")).unwrap();
    let mut lines = Vec::new();
    let mut state = 1u64;
    for (i, row) in reader.records().take(40).enumerate() {
        let row = row.unwrap();
        let (id, formula) = (row[id_c].to_string(), row[formula_c].to_string());
        let emb: Vec<f32> = (0..16)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let mut rec = serde_json::json!({"id": id, "text": &row[text_c], "formula": formula});
        if i != 10 && i != 11 {
            let t: Vec<f32> = (0..9)
                .map(|k| 100.0 + 40.0 * emb[k] - 10.0 * emb[k + 7])
                .collect();
            rec["tensor"] = t.into();
        }
        match i % 4 {
            0 => {
                write_npy(&dir.join(format!("custom/{i}.npy")), &emb);
                rec["graph_emb"] = format!("custom/{i}.npy").into();
            }
            1 => write_npy(&dir.join(format!("graph_emb/{id}.npy")), &emb),
            _ if i == 6 || i == 7 => {} // no embedding anywhere
            _ => write_npy(&dir.join(format!("graph_emb/{formula}_{id}.npy")), &emb),
        }
        lines.push(rec.to_string());
    }
    lines.insert(3, r#"{"id": "no-text", "formula": "X"}"#.into());
    std::fs::write(dir.join("dataset.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn trains_reports_missing_embeddings_plots_and_resumes_exactly() {
    let dir = scratch("clip-full");
    dataset(&dir.join("data"));
    let data = dir.join("data");
    let (a, b) = (dir.join("a"), dir.join("b"));

    let out = train(&data, &a, &["--no-plots"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Recall@10") && stdout.contains("chance"),
        "{stdout}"
    );
    assert!(
        stderr(&out).contains("2 records without a structure"),
        "{}",
        stderr(&out)
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["pairs"], 38);
    assert_eq!(report["missing_structure"], 2);
    assert_eq!(report["skipped_lines"], 1);
    assert_eq!(report["skipped"][0]["line"], 4);
    assert_eq!(report["missing"][0]["tried"].as_array().unwrap().len(), 2);

    // Interrupted after epoch 1, resumed: the same numbers as the uninterrupted run.
    let out = train(&data, &b, &["--no-plots", "--stop-after", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        epoch_lines(&b)
            .iter()
            .filter(|l| l["kind"] == "epoch")
            .count(),
        1
    );
    let out = xtal(&[
        "train",
        "clip",
        "--out",
        b.to_str().unwrap(),
        "--resume",
        "--no-plots",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(epoch_lines(&a), epoch_lines(&b));

    // eval reproduces the summary of the best checkpoint.
    let out = xtal(&["eval", "clip", "--run", a.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    for dir in ["structure_to_text", "text_to_structure"] {
        assert_eq!(
            eval["evaluation"]["retrieval"][dir],
            summary["validation"]["retrieval"][dir]
        );
    }
    assert_eq!(eval["evaluation"]["retrieval"]["n"], 10);

    let out = xtal(&["visualize", "--run", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for name in [
        "loss",
        "retrieval",
        "tsne_pairs",
        "similarity_heatmap",
        "cosine_histogram",
    ] {
        let png = std::fs::read(a.join(format!("plots/{name}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{name}.png");
        let svg = std::fs::read_to_string(a.join(format!("plots/{name}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{name}.svg");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_and_data_are_named() {
    let dir = scratch("clip-bad");
    dataset(&dir.join("data"));
    let data = dir.join("data");

    let config = dir.join("c.json");
    std::fs::write(&config, r#"{"model": {"max_seq_len": 512}}"#).unwrap();
    let out = xtal(&[
        "train",
        "clip",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("max_seq_len") && stderr(&out).contains("c.json"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.join("r").exists(),
        "nothing written for a rejected configuration"
    );

    // A mistyped choice names the key and the choices; it never trains without the encoder
    // it meant.
    let out = train(
        &data,
        &dir.join("r"),
        &["--set", "model.graph_backbone=painnn"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("model.graph_backbone") && stderr(&out).contains("painn"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("r").exists());

    // A key xtal cannot honour trains with a warning naming it.
    let out = train(
        &data,
        &dir.join("w"),
        &["--no-plots", "--set", "training.use_wandb=true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: ")
            && stderr(&out).contains("training.use_wandb is ignored: Weights & Biases"),
        "{}",
        stderr(&out)
    );

    // A 15-D embedding among 16-D ones.
    let first = std::fs::read_dir(data.join("graph_emb"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    write_npy(&first, &[0.0; 15]);
    let out = train(&data, &dir.join("r"), &["--no-plots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("15-D"), "{}", stderr(&out));
    std::fs::write(&first, b"not npy").unwrap();
    let out = train(&data, &dir.join("r"), &["--no-plots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&first.display().to_string()),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_checkpoints_and_existing_runs_are_refused() {
    let dir = scratch("clip-ckpt");
    dataset(&dir.join("data"));
    let (data, run) = (dir.join("data"), dir.join("run"));
    let out = train(&data, &run, &["--no-plots"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = train(&data, &run, &["--no-plots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    let ckpt = run.join("checkpoints/best.ckpt");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let out = xtal(&["eval", "clip", "--run", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("best.ckpt"), "{}", stderr(&out));

    // The run's data changed width since: resuming is refused, not a panic.
    for e in std::fs::read_dir(data.join("graph_emb")).unwrap() {
        write_npy(&e.unwrap().path(), &[0.5; 15]);
    }
    for e in std::fs::read_dir(data.join("custom")).unwrap() {
        write_npy(&e.unwrap().path(), &[0.5; 15]);
    }
    let out = xtal(&[
        "train",
        "clip",
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--no-plots",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("trained on 16-D"), "{}", stderr(&out));

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_heads_train_on_frozen_embeddings_evaluate_and_name_bad_input() {
    let dir = scratch("clip-tensor");
    dataset(&dir.join("data"));
    let clip = dir.join("clip");
    let out = train(&dir.join("data"), &clip, &["--no-plots"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let head = dir.join("head");
    let tensor = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "tensor",
            "--clip-run",
            clip.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "20",
            "--batch-size",
            "8",
            "--lr",
            "0.01",
            "--set",
            "tensor_regression.head_hidden_dims=[32]",
        ];
        args.extend_from_slice(extra);
        xtal(&args)
    };
    let out = tensor(&head, &["--mode", "voigt2d"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["C11", "C22", "C12", "C66", "C16", "C26", "R²"] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(stderr(&out).contains("2 without"), "{}", stderr(&out));
    let read = |p: PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let report = read(head.join("data_report.json"));
    assert_eq!(report["rows_with_tensor"], 36);
    assert_eq!(report["without_tensor"]["count"], 2);
    let summary = read(head.join("summary.json"));
    assert_eq!(
        summary["validation"]["metrics"]["components"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(summary["epochs_completed"], 20);
    let predictions = std::fs::read_to_string(head.join("predictions.csv")).unwrap();
    let mut lines = predictions.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,split,true_C11,true_C22,true_C12,true_C66")
    );
    assert_eq!(lines.count(), 36);
    for name in ["parity", "loss", "r2"] {
        let png = std::fs::read(head.join(format!("plots/{name}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{name}.png");
        assert!(
            std::fs::read_to_string(head.join(format!("plots/{name}.svg")))
                .unwrap()
                .contains("<svg")
        );
    }

    // eval recomputes the embeddings and reproduces the summary.
    let out = xtal(&["eval", "tensor", "--run", head.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    // (JSON parsing may differ in the last bit: compare numbers closely, not exactly.)
    let (e, s) = (
        &eval["evaluation"]["metrics"],
        &summary["validation"]["metrics"],
    );
    assert_eq!(e["n"], s["n"]);
    for (a, b) in e["components"]
        .as_array()
        .unwrap()
        .iter()
        .zip(s["components"].as_array().unwrap())
    {
        assert_eq!(a["name"], b["name"]);
        for k in ["mae", "r2"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{k}: {x} vs {y}");
        }
    }

    // A head stopped after epoch 8 and resumed trains as the uninterrupted one did.
    let resumed = dir.join("resumed");
    let out = tensor(&resumed, &["--mode", "voigt2d", "--stop-after", "8"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = xtal(&[
        "train",
        "tensor",
        "--out",
        resumed.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming after epoch 8"),
        "{}",
        stderr(&out)
    );
    assert_eq!(epoch_lines(&resumed), epoch_lines(&head));

    // Text embeddings feed a head the same way.
    let out = tensor(
        &dir.join("text"),
        &["--modality", "text", "--set", "training.epochs=2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read(dir.join("text/run.json"))["modality"], "text");

    // The head travels in its CLIP model's bundle: `xtal predict --text` gives what the run
    // predicted (predictions.csv) for the same descriptions.
    let text_head = dir.join("text-head.xtb");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = xtal(&[
        "bundle",
        "pack",
        "--run",
        &s(&dir.join("text")),
        "-o",
        &s(&text_head),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("tensor head ("), "{}", stderr(&out));
    let out = xtal(&["bundle", "inspect", &s(&text_head)]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tensor     head over text embeddings"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let texts: std::collections::HashMap<String, String> =
        std::fs::read_to_string(dir.join("data/dataset.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Some((
                    v["id"].as_str()?.to_string(),
                    v["text"].as_str()?.to_string(),
                ))
            })
            .collect();
    let mut csv = csv::Reader::from_path(dir.join("text/predictions.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = csv.records().take(6).map(|r| r.unwrap()).collect();
    let mut args = vec![
        "predict".to_string(),
        "--bundle".into(),
        s(&text_head),
        "--json".into(),
    ];
    for r in &rows {
        args.extend(["--text".to_string(), texts[&r[0]].clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtal(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut compared = 0;
    for (r, g) in rows.iter().zip(got.as_array().unwrap()) {
        assert_eq!(g["text"].as_str(), Some(texts[&r[0]].as_str()));
        for (name, want) in header.iter().zip(r.iter()) {
            let Some(component) = name.strip_prefix("pred_") else {
                continue;
            };
            let (x, y) = (
                g["components"][component].as_f64().unwrap(),
                want.parse::<f64>().unwrap(),
            );
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{component}: {x} vs {y}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 6 * 4, "{compared}");
    // A text head reads descriptions, not CIFs; a head trained on other embeddings is refused.
    let cif = dir.join("x.cif");
    std::fs::write(&cif, "data_x\n").unwrap();
    let out = xtal(&["predict", "--bundle", &s(&text_head), &s(&cif)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--text"), "{}", stderr(&out));
    let stale = dir.join("stale");
    std::fs::create_dir_all(stale.join("checkpoints")).unwrap();
    for f in ["checkpoints/best.ckpt", "summary.json"] {
        std::fs::copy(dir.join("text").join(f), stale.join(f)).unwrap();
    }
    let mut info = read(dir.join("text/run.json"));
    info["clip_epoch"] = 999.into();
    std::fs::write(stale.join("run.json"), info.to_string()).unwrap();
    let bad_bundle = dir.join("stale.xtb");
    let out = xtal(&["bundle", "pack", "--run", &s(&stale), "-o", &s(&bad_bundle)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("epoch 999's embeddings"),
        "{}",
        stderr(&out)
    );
    assert!(!bad_bundle.exists());

    // Bad input: exit 2 with the cause named, nothing written.
    let bad = dir.join("bad");
    for (extra, named) in [
        (
            vec!["--set", "tensor_regression.task=elastic_2d_symmetry"],
            "elastic_2d_symmetry",
        ),
        (
            vec!["--set", "tensor_regression.freeze_clip=false"],
            "freeze_clip",
        ),
        (vec!["--set", "tensor_regression.loss_fn=l2"], "`l2`"),
    ] {
        let out = tensor(&bad, &extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&out).contains(named), "{}", stderr(&out));
        assert!(!bad.exists());
    }
    let out = xtal(&[
        "train",
        "tensor",
        "--clip-run",
        head.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a tensor run, not a clip run"),
        "{}",
        stderr(&out)
    );
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let text = std::fs::read_to_string(dir.join("data/dataset.jsonl")).unwrap();
    let stripped: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tensor");
            v.to_string()
        })
        .collect();
    std::fs::write(plain.join("dataset.jsonl"), stripped.join("\n")).unwrap();
    let emb = dir.join("data/graph_emb");
    let out = tensor(
        &bad,
        &[
            "--data",
            plain.to_str().unwrap(),
            "--graph-emb-dir",
            emb.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no record has a `tensor`"),
        "{}",
        stderr(&out)
    );
    let out = tensor(&head, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

fn hf_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hf")
        .join(name)
}

/// Values per tensor of a fixture's model.safetensors, by its HF names.
fn hf_tensor_sizes(dir: &Path) -> Vec<(String, usize)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
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

/// CLIP with a pretrained HF text side (the tiny BERT fixture): trains its top layer, pooler
/// and projections only, evaluates, and packs into a bundle that carries its tokenizer.
#[test]
fn clip_trains_with_a_huggingface_text_encoder() {
    let dir = scratch("clip-hf");
    dataset(&dir.join("data"));
    let (data, run) = (dir.join("data"), dir.join("run"));
    let bert = hf_fixture("bert");
    let model = format!("model.text_model_name={}", bert.display());
    let out = train(
        &data,
        &run,
        &[
            "--no-plots",
            "--set",
            "model.text_backend=huggingface",
            "--set",
            &model,
            "--set",
            "model.text_pooling=first",
            "--set",
            "model.train_top_n_layers=1",
            "--set",
            "model.train_text_layernorm_only=false",
            "--set",
            "training.learning_rate=0.01",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Top BERT layer + pooler (by the checkpoint's own names), text projection 32→16,
    // structure projection 16→16, temperature.
    let top: usize = hf_tensor_sizes(&bert)
        .iter()
        .filter(|(n, _)| n.starts_with("encoder.layer.1.") || n.starts_with("pooler."))
        .map(|(_, s)| s)
        .sum();
    let expected = top + (32 * 16 + 16) + (16 * 16 + 16) + 1;
    assert!(
        stderr(&out).contains(&format!("trainable: {expected} of ")),
        "expected {expected} trainable: {}",
        stderr(&out)
    );
    let epochs: Vec<Value> = epoch_lines(&run)
        .into_iter()
        .filter(|l| l["kind"] == "epoch")
        .collect();
    let first = epochs[0]["train_loss"].as_f64().unwrap();
    let last = epochs.last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(last < first, "train loss {first} → {last}");

    let out = xtal(&["eval", "clip", "--run", run.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The run packs with its tokenizer; the bundle embeds every description as packing did
    // from the checkpoint and the model folder (its index's text side): each description,
    // searched against the text side, finds itself at cosine 1.
    let bundle = dir.join("b.xtal");
    let bundle_s = bundle.to_str().unwrap();
    let pack = |extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "pack",
            "--run",
            run.to_str().unwrap(),
            "--index",
            data.to_str().unwrap(),
            "--force",
        ];
        args.extend_from_slice(extra);
        xtal(&args)
    };
    let out = pack(&["-o", bundle_s]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = xtal(&["bundle", "inspect", bundle_s]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains("pretrained HuggingFace bert `bert`") && shown.contains("first pooling"),
        "{shown}"
    );
    let texts: Vec<String> = std::fs::read_to_string(data.join("dataset.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .map(String::from)
        })
        .take(3)
        .collect();
    for text in &texts {
        let out = xtal(&[
            "search",
            "--bundle",
            bundle_s,
            "--against",
            "text",
            "-k",
            "1",
            "--json",
            text,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let found: Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = &found["results"][0];
        assert_eq!(top["description"].as_str(), Some(text.as_str()));
        let score = top["score"].as_f64().unwrap();
        assert!((score - 1.0).abs() < 1e-5, "{text}: cosine {score}");
    }
    // f16 halves the backbone and keeps the ranking.
    let half = dir.join("b16.xtal");
    let out = pack(&["--f16", "-o", half.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("f16 check"), "{}", stderr(&out));
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    assert!(
        size(&half) < 0.75 * size(&bundle),
        "{} vs {}",
        size(&half),
        size(&bundle)
    );
    // Without its model folder the run cannot be packed: the tokenizer is named.
    let run_config = run.join("run.json");
    let config = std::fs::read_to_string(&run_config).unwrap();
    assert!(config.contains(bert.to_str().unwrap()));
    std::fs::write(
        &run_config,
        config.replace(bert.to_str().unwrap(), "/no/such/bert"),
    )
    .unwrap();
    let out = pack(&["-o", dir.join("b2.xtal").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/no/such/bert/tokenizer.json"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("b2.xtal").exists());
    std::fs::write(&run_config, config).unwrap();

    // A folder that is not there, and an unknown pooling, are named.
    let out = train(
        &data,
        &dir.join("run2"),
        &[
            "--set",
            "model.text_backend=huggingface",
            "--set",
            "model.text_model_name=/no/such/model",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/model"), "{}", stderr(&out));
    let out = train(
        &data,
        &dir.join("run3"),
        &[
            "--set",
            "model.text_backend=huggingface",
            "--set",
            &model,
            "--set",
            "model.text_pooling=median",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("text_pooling"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `xtal embed text --model DIR`: transformers' pooled vectors (fixture), as JSON and `.npy`.
#[test]
fn embed_text_with_a_model_folder_matches_transformers() {
    let bert = hf_fixture("bert");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(bert.join("xtal_reference.json")).unwrap())
            .unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for (pooling, key) in [
        ("mean", "pooled_mean"),
        ("max", "pooled_max"),
        ("last", "pooled_last"),
    ] {
        let mut args = vec![
            "embed",
            "text",
            "--model",
            bert.to_str().unwrap(),
            "--pooling",
            pooling,
            "--json",
        ];
        args.extend(&sentences);
        let out = xtal(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let got: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
        let want = reference[key].as_array().unwrap();
        assert_eq!(got.len(), sentences.len());
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w.as_array().unwrap()) {
                assert!(
                    (a - b.as_f64().unwrap()).abs() <= 1e-4,
                    "{pooling}: {a} vs {b}"
                );
            }
        }
    }
    let dir = scratch("clip-embed-model");
    let npy = dir.join("e.npy");
    let mut args = vec![
        "embed",
        "text",
        "--model",
        bert.to_str().unwrap(),
        "--normalize",
        "--out",
        npy.to_str().unwrap(),
    ];
    args.extend(&sentences);
    let out = xtal(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bytes = std::fs::read(&npy).unwrap();
    let array = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(array.shape(), &[4, 32]);
    let values: Vec<f32> = array.into_vec().unwrap();
    for row in values.chunks(32) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    // A folder without weights: exit 2 naming the file.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(bert.join(f), broken.join(f)).unwrap();
    }
    let out = xtal(&["embed", "text", "--model", broken.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("model.safetensors"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `prepare --text-column description --text-column caption` keeps both texts of a structure
/// (as the CSV has them), training draws among them, validation counts each structure once;
/// a text column that is not there is named.
#[test]
fn several_texts_per_structure_are_kept_trained_on_and_validated() {
    let dir = scratch("clip-texts");
    // 32 sample materials with a caption and 16 without.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv");
    let mut reader = csv::Reader::from_path(src).unwrap();
    let headers = reader.headers().unwrap().clone();
    let caption = headers.iter().position(|h| h == "caption").unwrap();
    let csv = dir.join("materials.csv");
    let mut writer = csv::Writer::from_path(&csv).unwrap();
    writer.write_record(&headers).unwrap();
    let (mut with, mut without) = (0, 0);
    for row in reader.records() {
        let row = row.unwrap();
        let (kept, limit) = if row[caption].trim().is_empty() {
            (&mut without, 16)
        } else {
            (&mut with, 32)
        };
        if *kept < limit {
            *kept += 1;
            writer.write_record(&row).unwrap();
        }
    }
    writer.flush().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let prepare = |out: &Path, columns: &[&str]| {
        let mut args = vec!["prepare".to_string(), s(&csv), "-o".into(), s(out)];
        for c in columns {
            args.extend(["--text-column".to_string(), c.to_string()]);
        }
        xtal(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (both, one) = (dir.join("both"), dir.join("one"));
    let o = prepare(&both, &["description", "caption"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prepare(&one, &["description"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The CSV as the csv crate reads it: each row's non-empty description and caption.
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, description, caption) = (col("id"), col("description"), col("caption"));
    let mut want = std::collections::HashMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let texts: Vec<String> = [&row[description], &row[caption]]
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        want.insert(row[id].to_string(), texts);
    }
    let (mut with_two, mut val_structures, mut val_texts) = (0, 0, 0);
    let records = std::fs::read_to_string(both.join("dataset.jsonl")).unwrap();
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let texts: Vec<String> = match r.get("texts") {
            Some(t) => serde_json::from_value(t.clone()).unwrap(),
            None => r["text"].as_str().into_iter().map(String::from).collect(),
        };
        assert_eq!(texts, want[r["id"].as_str().unwrap()], "{line}");
        assert_eq!(r["text"].as_str(), texts.first().map(String::as_str));
        with_two += usize::from(texts.len() == 2);
        if r["split"] == "val" {
            val_structures += 1;
            val_texts += texts.len();
        }
    }
    assert_eq!(with_two, 32);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(both.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["text_columns"],
        serde_json::json!(["description", "caption"])
    );

    let runs = [dir.join("run-both"), dir.join("run-one")];
    for (data, run) in [&both, &one].into_iter().zip(&runs) {
        let o = train(data, run, &["--no-plots"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let epochs = |run: &Path| -> Vec<Value> {
        epoch_lines(run)
            .into_iter()
            .filter(|l| l["kind"] == "epoch")
            .collect()
    };
    let (lines_both, lines_one) = (epochs(&runs[0]), epochs(&runs[1]));
    let last = lines_both.last().unwrap();
    assert_eq!(
        last["val_pairs"], val_structures,
        "each structure counted once"
    );
    for key in ["val_r1_g2t", "val_r10_t2g", "val_mrr_g2t", "val_loss"] {
        assert!(
            last[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {last}"
        );
    }
    // Same structures, split and seed: only the captions drawn into training batches and
    // ranked in validation make the runs differ.
    assert_ne!(
        lines_both[0]["train_loss"], lines_one[0]["train_loss"],
        "captions never reached training"
    );
    assert_eq!(
        last["val_texts"], val_texts,
        "every text of a validation structure ranked"
    );
    assert!(lines_one.last().unwrap().get("val_texts").is_none());

    let o = prepare(&dir.join("typo"), &["description", "captoin"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no text column 'captoin'"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("typo").exists(), "nothing written");
}
