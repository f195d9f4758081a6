//! `xtal prepare --shard K/N` / `--shards N`: shards prepared apart read as the one
//! preparation of the same rows, train alike, and an interrupted preparation resumes keeping
//! its finished shards.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{TINY_CLIP, scratch, stderr, train_clip, xtal};

fn sample_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv")
}

fn prepare(out: &Path, extra: &[&str]) -> std::process::Output {
    let csv = sample_csv();
    let mut args = vec![
        "prepare",
        csv.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--limit",
        "240",
    ];
    args.extend(extra);
    xtal(&args)
}

fn ok(o: std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stderr(&o)
}

/// Shape and values of a `.npy`.
fn npy<T: npyz::Deserialize>(path: &Path) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(path).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    (f.shape().to_vec(), f.into_vec().unwrap())
}

fn shard_dirs(dir: &Path, n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|k| dir.join(format!("shard-{k}-of-{n}")))
        .collect()
}

/// Every array of the shards, joined as one preparation would hold it.
fn assert_same_as_one_preparation(whole: &Path, sharded: &Path, n: usize) {
    let parts = shard_dirs(sharded, n);
    assert_eq!(
        std::fs::read(whole.join("ftcp_normalizer.json")).unwrap(),
        std::fs::read(sharded.join("ftcp_normalizer.json")).unwrap(),
        "the normaliser joined from the shards' statistics is the one fitted on all rows"
    );
    fn joined<T: npyz::Deserialize>(parts: &[PathBuf], name: &str) -> (Vec<u64>, Vec<T>) {
        let mut shape: Vec<u64> = Vec::new();
        let mut data = Vec::new();
        for p in parts {
            let (s, mut d) = npy::<T>(&p.join(name));
            if shape.is_empty() {
                shape = s;
            } else {
                assert_eq!(shape[1..], s[1..], "{name}");
                shape[0] += s[0];
            }
            data.append(&mut d);
        }
        (shape, data)
    }
    assert_eq!(
        npy::<f32>(&whole.join("ftcp.npy")),
        joined::<f32>(&parts, "ftcp.npy")
    );
    assert_eq!(
        npy::<f32>(&whole.join("graph_distances.npy")),
        joined::<f32>(&parts, "graph_distances.npy")
    );
    assert_eq!(
        npy::<f32>(&whole.join("graph_vectors.npy")),
        joined::<f32>(&parts, "graph_vectors.npy")
    );
    assert_eq!(
        npy::<u32>(&whole.join("graph_edges.npy")),
        joined::<u32>(&parts, "graph_edges.npy")
    );
    assert_eq!(
        npy::<i32>(&whole.join("graph_images.npy")),
        joined::<i32>(&parts, "graph_images.npy")
    );
    assert_eq!(
        npy::<u8>(&whole.join("graph_atomic_numbers.npy")),
        joined::<u8>(&parts, "graph_atomic_numbers.npy")
    );
    // Offsets: each shard counts from 0; joined, they continue from the shards before.
    for name in ["graph_node_offsets.npy", "graph_edge_offsets.npy"] {
        let mut all = vec![0i64];
        for p in &parts {
            let base = *all.last().unwrap();
            all.extend(npy::<i64>(&p.join(name)).1[1..].iter().map(|o| o + base));
        }
        assert_eq!(npy::<i64>(&whole.join(name)).1, all, "{name}");
    }
    // Records: the same lines, with indices counted from the shards before.
    let mut records: Vec<Value> = Vec::new();
    let (mut ftcp, mut graphs) = (0u64, 0u64);
    for p in &parts {
        let part: Value =
            serde_json::from_slice(&std::fs::read(p.join("part.json")).unwrap()).unwrap();
        for line in std::fs::read_to_string(p.join("dataset.jsonl"))
            .unwrap()
            .lines()
        {
            let mut r: Value = serde_json::from_str(line).unwrap();
            for (key, offset) in [("ftcp_index", ftcp), ("graph_index", graphs)] {
                if let Some(k) = r[key].as_u64() {
                    r[key] = (k + offset).into();
                }
            }
            records.push(r);
        }
        ftcp += part["counts"]["ftcp_tensors"].as_u64().unwrap();
        graphs += part["counts"]["graphs"].as_u64().unwrap();
    }
    let whole_records: Vec<Value> = std::fs::read_to_string(whole.join("dataset.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(whole_records, records);
    let structures: String = parts
        .iter()
        .map(|p| std::fs::read_to_string(p.join("structures.jsonl")).unwrap())
        .collect();
    assert_eq!(
        std::fs::read_to_string(whole.join("structures.jsonl")).unwrap(),
        structures
    );
}

/// A run's per-step and per-epoch figures without its timings.
fn figures(run: &Path, file: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join(file))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Value::Object(m) = &mut v {
                m.retain(|k, _| {
                    !(k.contains("second") || k.contains("time") || k.contains("per_s"))
                });
            }
            v
        })
        .collect()
}

#[test]
fn shards_prepared_apart_read_and_train_as_one_preparation() {
    let dir = scratch("shards-equal");
    let whole = dir.join("whole");
    ok(prepare(&whole, &[]));
    // Three processes, in any order.
    let sharded = dir.join("sharded");
    let log = ok(prepare(&sharded, &["--shard", "3/3"]));
    assert!(log.contains("1/3, 2/3"), "{log}");
    ok(prepare(&sharded, &["--shard", "1/3"]));
    // Not a dataset until every shard is there: training says which shard is missing.
    let run = dir.join("early");
    let o = xtal(&[
        "train",
        "clip",
        "--data",
        sharded.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not finished yet: 2/3"),
        "{}",
        stderr(&o)
    );
    ok(prepare(&sharded, &["--shard", "2/3"]));
    assert!(sharded.join("shards.json").is_file());
    assert_same_as_one_preparation(&whole, &sharded, 3);

    // Training reads the shards in place, and trains as on the one preparation: CLIP on FTCP
    // tensors, an SSL block, and a graph model (structures and records).
    for data in [&whole, &sharded] {
        let d = data.to_str().unwrap();
        let name = data.file_name().unwrap().to_str().unwrap();
        let clip = dir.join(format!("clip-{name}"));
        let mut args = vec![
            "train",
            "clip",
            "--data",
            d,
            "--out",
            clip.to_str().unwrap(),
        ];
        args.extend(TINY_CLIP);
        ok(xtal(&args));
        let ssl = dir.join(format!("ssl-{name}"));
        ok(xtal(&[
            "ssl",
            "train",
            "--data",
            d,
            "--out",
            ssl.to_str().unwrap(),
            "--epochs",
            "1",
            "--block",
            "2",
            "--width",
            "16",
            "--layers",
            "1",
            "--batch-size",
            "16",
        ]));
        let property = dir.join(format!("property-{name}"));
        ok(xtal(&[
            "train",
            "property",
            "--data",
            d,
            "--target",
            "band_gap",
            "--source",
            "mp40",
            "--out",
            property.to_str().unwrap(),
            "--width",
            "16",
            "--layers",
            "1",
            "--embedding-dim",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ]));
    }
    for (a, b, file) in [
        ("clip-whole", "clip-sharded", "metrics.jsonl"),
        ("ssl-whole", "ssl-sharded", "block2_lattice/metrics.jsonl"),
        ("property-whole", "property-sharded", "metrics.jsonl"),
    ] {
        let whole_figures = figures(&dir.join(a), file);
        assert!(!whole_figures.is_empty(), "{a}/{file}");
        assert_eq!(whole_figures, figures(&dir.join(b), file), "{a} vs {b}");
    }

    // A damaged shard is an error naming its file, never a crash.
    let ftcp = sharded.join("shard-2-of-3/ftcp.npy");
    let bytes = std::fs::read(&ftcp).unwrap();
    std::fs::write(&ftcp, &bytes[..bytes.len() / 2]).unwrap();
    let o = xtal(&[
        "ssl",
        "train",
        "--data",
        sharded.to_str().unwrap(),
        "--out",
        dir.join("damaged").to_str().unwrap(),
        "--block",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard-2-of-3/ftcp.npy"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    // Whole again, but another shard's tensors have the wrong shape.
    std::fs::write(&ftcp, &bytes).unwrap();
    let third = sharded.join("shard-3-of-3/ftcp.npy");
    let mut bytes = std::fs::read(&third).unwrap();
    let header = String::from_utf8_lossy(&bytes[..128]).to_string();
    let at = header.find("400, 63").unwrap();
    bytes[at..at + 7].copy_from_slice(b"63, 400");
    std::fs::write(&third, &bytes).unwrap();
    for command in [&["ssl", "train"][..], &["train", "clip"][..]] {
        let mut args = command.to_vec();
        let out = dir.join("wrong-shape");
        args.extend([
            "--data",
            sharded.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let o = xtal(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("shard-3-of-3/ftcp.npy"),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("shape"), "{}", stderr(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_sharded_preparation_resumes_keeping_finished_shards() {
    let dir = scratch("shards-resume");
    let reference = dir.join("reference");
    ok(prepare(&reference, &["--shards", "3"]));
    let out = dir.join("resumed");
    ok(prepare(&out, &["--shards", "3"]));
    // Stopped while shard 2 was written: shard 2 never appeared (it is written aside and
    // moved into place whole), its half-written copy is left beside it, and the dataset was
    // not joined yet.
    std::fs::remove_dir_all(out.join("shard-2-of-3")).unwrap();
    std::fs::remove_file(out.join("shards.json")).unwrap();
    let leftover = out.join(".shard-2-of-3.partial-1");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("ftcp.npy"), b"half").unwrap();
    let modified = |k: usize| {
        std::fs::metadata(out.join(format!("shard-{k}-of-3/ftcp.npy")))
            .unwrap()
            .modified()
            .unwrap()
    };
    let (first, third) = (modified(1), modified(3));
    let log = ok(prepare(&out, &["--shards", "3"]));
    assert!(log.contains("shard 1/3: already prepared"), "{log}");
    assert!(log.contains("shard 3/3: already prepared"), "{log}");
    assert_eq!(
        (modified(1), modified(3)),
        (first, third),
        "finished shards kept"
    );
    assert!(!leftover.exists());
    assert!(out.join("shards.json").is_file());
    for file in ["ftcp_normalizer.json", "shards.json"] {
        assert_eq!(
            std::fs::read(reference.join(file)).unwrap(),
            std::fs::read(out.join(file)).unwrap(),
            "{file}"
        );
    }
    for k in 1..=3 {
        let part = format!("shard-{k}-of-3");
        for file in ["ftcp.npy", "dataset.jsonl", "graph_edges.npy"] {
            assert_eq!(
                std::fs::read(reference.join(&part).join(file)).unwrap(),
                std::fs::read(out.join(&part).join(file)).unwrap(),
                "{part}/{file}"
            );
        }
    }

    // Shards of other settings, of another count, or a bad K/N are refused by name.
    let refused = |extra: &[&str], needle: &str| {
        let o = prepare(&out, extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
    };
    refused(
        &["--shards", "3", "--seed", "7"],
        "prepared from other data or settings",
    );
    refused(&["--shards", "2"], "a split into 3, not 2");
    refused(&["--shard", "4/3"], "between 1 and N");
    refused(&["--shard", "two"], "K/N");
    // The refusals changed nothing.
    assert_eq!(
        std::fs::read(reference.join("shards.json")).unwrap(),
        std::fs::read(out.join("shards.json")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `.npy` of one float32 vector, written here (not by xtal).
fn write_vector_npy(path: &Path, values: &[f32]) {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    let pad = 64 - (10 + header.len() + 1) % 64;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&((header.len() + pad + 1) as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A CLIP model evaluated on its prepared dataset — FTCP tensors memory-mapped and scaled
/// as batches are read — scores as on the same vectors scaled here and stored one `.npy` per
/// material in the original layout (read into memory).
#[test]
fn mapped_ftcp_rows_evaluate_as_vectors_scaled_apart() {
    let dir = scratch("mapped-vs-files");
    let data = dir.join("data");
    ok(prepare(&data, &["--shards", "2"]));
    let run = dir.join("clip");
    ok(train_clip(&data, &run, &[]));

    // The original layout: each material's FTCP row min–max scaled with the dataset's
    // normaliser, (x − min) / (max − min) in f64 (a constant row: x − min).
    let norm: Value =
        serde_json::from_slice(&std::fs::read(data.join("ftcp_normalizer.json")).unwrap()).unwrap();
    let cols = norm["cols"].as_u64().unwrap() as usize;
    let (min, max): (Vec<f64>, Vec<f64>) = (
        serde_json::from_value(norm["min"].clone()).unwrap(),
        serde_json::from_value(norm["max"].clone()).unwrap(),
    );
    let original = dir.join("original");
    std::fs::create_dir_all(original.join("emb")).unwrap();
    let mut lines = String::new();
    let mut kept = 0;
    for part in shard_dirs(&data, 2) {
        let (shape, ftcp) = npy::<f32>(&part.join("ftcp.npy"));
        let per = (shape[1] * shape[2]) as usize;
        for line in std::fs::read_to_string(part.join("dataset.jsonl"))
            .unwrap()
            .lines()
        {
            let mut r: Value = serde_json::from_str(line).unwrap();
            let Some(k) = r["ftcp_index"].as_u64() else {
                continue;
            };
            let row = &ftcp[k as usize * per..(k as usize + 1) * per];
            let scaled: Vec<f32> = row
                .iter()
                .enumerate()
                .map(|(j, &x)| {
                    let (lo, hi) = (min[j / cols], max[j / cols]);
                    let range = if hi > lo { hi - lo } else { 1.0 };
                    ((x as f64 - lo) / range) as f32
                })
                .collect();
            let id = r["id"].as_str().unwrap().to_string();
            write_vector_npy(&original.join("emb").join(format!("{kept}.npy")), &scaled);
            let m = r.as_object_mut().unwrap();
            for key in ["ftcp_index", "graph_index", "split"] {
                m.remove(key);
            }
            m.insert("graph_emb".into(), format!("emb/{kept}.npy").into());
            assert!(!id.is_empty());
            lines.push_str(&format!("{r}\n"));
            kept += 1;
        }
    }
    assert!(kept > 200, "{kept} FTCP rows");
    std::fs::write(original.join("dataset.jsonl"), lines).unwrap();

    let eval = |extra: &[&str]| -> Value {
        let mut args = vec!["eval", "clip", "--run", run.to_str().unwrap(), "--json"];
        args.extend(extra);
        let o = xtal(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["evaluation"].clone()
    };
    let mapped = eval(&["--split", "all"]);
    let files = eval(&["--data", original.join("dataset.jsonl").to_str().unwrap()]);
    fn numbers(v: &Value, key: String, out: &mut Vec<(String, f64)>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| numbers(v, format!("{key}.{k}"), out)),
            other => out.extend(other.as_f64().map(|x| (key, x))),
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    numbers(&mapped, String::new(), &mut a);
    numbers(&files, String::new(), &mut b);
    assert_eq!(a.len(), b.len(), "{mapped} / {files}");
    let compared = a.len();
    for ((key, x), (key_b, y)) in a.into_iter().zip(b) {
        assert_eq!(key, key_b);
        assert!(
            (x - y).abs() <= 1e-5 * x.abs().max(1.0),
            "{key}: {x} mapped, {y} from files"
        );
    }
    assert!(compared >= 13, "{mapped}");
}
