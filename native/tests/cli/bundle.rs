//! `xtal bundle pack|inspect|verify`, `xtal embed` and `xtal search` end to end: a CLIP run
//! on FTCP data from real CIFs is packed with its index; a CIF embedded through the bundle
//! lands on its own index entry (prepare's path and the bundle's path agree), and bad
//! bundles and arguments are named with exit code 2.

use std::path::Path;

use crate::common::{TINY_CLIP, materials, scratch, stderr, xtal};
use serde_json::Value;

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn bad(o: &std::process::Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    assert!(
        stderr(o).contains(needle),
        "expected '{needle}' in {}",
        stderr(o)
    );
}

#[test]
fn pack_inspect_verify_embed_and_search() {
    let dir = scratch("bundle-e2e");
    let (csv, cifs) = materials(&dir);
    let (data, run, b, half, int8) = (
        dir.join("data"),
        dir.join("run"),
        dir.join("b.xtal"),
        dir.join("half.xtal"),
        dir.join("int8.xtal"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    ok(&xtal(&["prepare", &s(&csv), "-o", &s(&data)]), "prepare");
    let (data_s, run_s) = (s(&data), s(&run));
    let b_s = s(&b);
    let mut train = vec![
        "train",
        "clip",
        "--data",
        &data_s,
        "--out",
        &run_s,
        "--no-plots",
    ];
    train.extend_from_slice(TINY_CLIP);
    ok(&xtal(&train), "train");
    let pack = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "bundle".to_string(),
            "pack".into(),
            "--run".into(),
            s(&run),
            "--index".into(),
            s(&data),
            "-o".into(),
            s(out),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        xtal(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    ok(&pack(&b, &[]), "pack");
    bad(&pack(&b, &[]), "--force");
    let packed = pack(&half, &["--f16"]);
    ok(&packed, "pack --f16");
    assert!(stderr(&packed).contains("f16 check"), "{}", stderr(&packed));
    let packed = pack(&int8, &["--int8"]);
    ok(&packed, "pack --int8");
    assert!(
        stderr(&packed).contains("int8 check: over"),
        "{}",
        stderr(&packed)
    );
    bad(&pack(&int8, &["--int8", "--f16", "--force"]), "--f16");

    let manifest: Value = serde_json::from_str(&ok(
        &xtal(&["bundle", "inspect", &s(&b), "--json"]),
        "inspect",
    ))
    .unwrap();
    assert_eq!(manifest["format"], "xtal-bundle");
    assert_eq!(manifest["structure_input"]["kind"], "ftcp");
    let entries = manifest["index"]["entries"].as_u64().unwrap();
    assert!(entries >= 40, "{entries}");
    let half_manifest: Value = serde_json::from_str(&ok(
        &xtal(&["bundle", "inspect", &s(&half), "--json"]),
        "inspect",
    ))
    .unwrap();
    assert!(
        half_manifest["f16_check"]["max_abs_diff_text"]
            .as_f64()
            .unwrap()
            < 1e-2
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    assert!(
        size(&half) < 0.6 * size(&b),
        "{} vs {}",
        size(&half),
        size(&b)
    );
    let int8_manifest: Value = serde_json::from_str(&ok(
        &xtal(&["bundle", "inspect", &s(&int8), "--json"]),
        "inspect",
    ))
    .unwrap();
    assert_eq!(int8_manifest["model"]["weights_dtype"], "int8");
    assert!(int8_manifest.get("f16_check").is_none());
    let check = &int8_manifest["int8_check"];
    assert!(
        check["max_abs_diff_text"].as_f64().unwrap() < 5e-2,
        "{check}"
    );
    assert!(check["top10_overlap"].as_f64().unwrap() > 0.5, "{check}");
    // The matrices are a quarter of f32.
    let weights = |m: &Value| {
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "weights.safetensors")
            .unwrap()["size"]
            .as_f64()
            .unwrap()
    };
    let ratio = weights(&int8_manifest) / weights(&manifest);
    assert!(ratio < 0.4, "int8 / f32 weights {ratio}");
    assert!(ok(&xtal(&["bundle", "verify", &s(&int8)]), "verify").starts_with("ok:"));
    let hits = |bundle: &Path| {
        let out = ok(
            &xtal(&[
                "search",
                "--bundle",
                &s(bundle),
                "a cubic perovskite",
                "-k",
                "4",
                "--json",
            ]),
            "search",
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        v["results"].as_array().unwrap().len()
    };
    assert_eq!(hits(&int8), 4);
    assert!(ok(&xtal(&["bundle", "inspect", &s(&b)]), "inspect").contains("weights.safetensors"));
    assert!(ok(&xtal(&["bundle", "verify", &s(&b)]), "verify").starts_with("ok:"));

    // A text query: k results, best first, with the fields a person reads.
    let out = ok(
        &xtal(&[
            "search",
            "--bundle",
            &s(&b),
            "a cubic perovskite",
            "-k",
            "4",
            "--json",
        ]),
        "search",
    );
    let results: Value = serde_json::from_str(&out).unwrap();
    let rows = results["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for pair in rows.windows(2) {
        assert!(pair[0]["score"].as_f64() >= pair[1]["score"].as_f64());
    }
    assert!(rows[0]["description"].as_str().unwrap().len() > 20);

    // Pictures of the hits: one ball per site of the Materials Project's count (`n_atoms`), in
    // Jmol's carbon grey (#909090, Jmol's colour table), plus the legend's.
    let sample = csv::Reader::from_path(dir.join("materials.csv"))
        .unwrap()
        .into_deserialize::<std::collections::HashMap<String, String>>()
        .map(Result::unwrap)
        .map(|r| {
            let n_atoms: usize = r["n_atoms"].parse().unwrap();
            (r["id"].clone(), (n_atoms, r["elements"].clone()))
        })
        .collect::<std::collections::HashMap<_, _>>();
    let pictures = |out: &Path, extra: &[&str]| {
        let mut args = vec!["search", "--bundle", &b_s, "a cubic perovskite", "-k", "3"];
        let out_s = s(out);
        args.extend(["--pictures", &out_s]);
        args.extend(extra);
        ok(&xtal(&args), "search --pictures");
        for (rank, row) in rows.iter().take(3).enumerate() {
            let id = row["id"].as_str().unwrap();
            let stem = out.join(format!("{:02}-{id}", rank + 1));
            let png = std::fs::read(stem.with_extension("png")).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{id}");
            let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
            let (n_atoms, elements) = &sample[id];
            assert_eq!(elements, "C", "the first sample materials are carbon");
            let grey = svg.matches(r##"fill="#909090""##).count();
            assert_eq!(grey, n_atoms + 1, "{id}");
            // Every ball has an outline and a highlight.
            assert_eq!(svg.matches("<circle").count(), 3 * n_atoms + 1, "{id}");
            assert!(svg.contains("\nC\n</text>"), "legend names carbon: {id}");
        }
    };
    // From the dataset, then from the structures the bundle's index carries, without it.
    pictures(&dir.join("pictures"), &["--dataset", &data_s]);
    bad(
        &xtal(&[
            "search",
            "--bundle",
            &b_s,
            "x",
            "--pictures",
            &s(&dir.join("pictures")),
            "--dataset",
            &s(&dir.join("no-such-dataset")),
        ]),
        "no-such-dataset",
    );
    let moved = dir.join("data-moved");
    std::fs::rename(&data, &moved).unwrap();
    pictures(&dir.join("pictures-alone"), &[]);
    std::fs::rename(&moved, &data).unwrap();

    // A CIF through the bundle (FTCP → scaling → projector) is its own index entry.
    for (id, path) in &cifs {
        for bundle in [&b, &half] {
            let out = ok(
                &xtal(&[
                    "search",
                    "--bundle",
                    &s(bundle),
                    "--cif",
                    &s(path),
                    "--against",
                    "structure",
                    "-k",
                    "1",
                    "--json",
                ]),
                "search --cif",
            );
            let top: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(&top["results"][0]["id"], id.as_str());
            assert!(
                top["results"][0]["score"].as_f64().unwrap() > 0.9999,
                "{out}"
            );
        }
    }
    // embed: .npy and JSON agree.
    let npy = dir.join("e.npy");
    ok(
        &xtal(&[
            "embed",
            "--bundle",
            &s(&b),
            "--out",
            &s(&npy),
            "text",
            "rock salt",
            "a metal",
        ]),
        "embed",
    );
    let npy_bytes = std::fs::read(&npy).unwrap();
    let arr = npyz::NpyFile::new(npy_bytes.as_slice()).unwrap();
    assert_eq!(arr.shape(), &[2, 16]);
    let from_npy: Vec<f32> = arr.into_vec().unwrap();
    let json: Vec<Vec<f32>> = serde_json::from_str(&ok(
        &xtal(&[
            "embed",
            "--bundle",
            &s(&b),
            "--json",
            "text",
            "rock salt",
            "a metal",
        ]),
        "embed --json",
    ))
    .unwrap();
    assert!(
        json.concat()
            .iter()
            .zip(&from_npy)
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );

    // zero-shot: the cosines of `embed`'s unit vectors, and a softmax over the phrases at the
    // temperature of the packed (best) checkpoint, as the run's metrics recorded it.
    let (b_s, cif_s) = (s(&b), s(&cifs[0].1));
    let phrases = ["rock salt", "a metal", "a layered oxide"];
    let mut args = vec!["zero-shot", "--bundle", &b_s, "--cif", &cif_s, "--json"];
    args.extend(phrases);
    let got: Vec<Value> = serde_json::from_str(&ok(&xtal(&args), "zero-shot")).unwrap();
    let embed = |what: &[&str]| -> Vec<Vec<f64>> {
        let mut args = vec!["embed", "--bundle", &b_s, "--json"];
        args.extend(what);
        serde_json::from_str(&ok(&xtal(&args), "embed")).unwrap()
    };
    let structure = embed(&["cif", &cif_s]).remove(0);
    let mut text_args = vec!["text"];
    text_args.extend(phrases);
    let texts = embed(&text_args);
    let logit_scale = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|l| l["best"] == true)
        .unwrap()["val_logit_scale"]
        .as_f64()
        .unwrap();
    let cosines: Vec<f64> = texts
        .iter()
        .map(|t| t.iter().zip(&structure).map(|(a, b)| a * b).sum())
        .collect();
    let exps: Vec<f64> = cosines
        .iter()
        .map(|c| (c * logit_scale.min(4.60517).exp()).exp())
        .collect();
    let total: f64 = exps.iter().sum();
    assert_eq!(got.len(), phrases.len());
    for pair in got.windows(2) {
        assert!(pair[0]["score"].as_f64() >= pair[1]["score"].as_f64());
    }
    for (i, phrase) in phrases.iter().enumerate() {
        let row = got.iter().find(|r| r["phrase"] == *phrase).unwrap();
        let (score, p) = (
            row["score"].as_f64().unwrap(),
            row["probability"].as_f64().unwrap(),
        );
        assert!(
            (score - cosines[i]).abs() < 1e-5,
            "{phrase}: {score} vs {}",
            cosines[i]
        );
        assert!(
            (p - exps[i] / total).abs() < 1e-5,
            "{phrase}: {p} vs {}",
            exps[i] / total
        );
    }
    bad(
        &xtal(&[
            "zero-shot",
            "--bundle",
            &b_s,
            "--cif",
            &s(&dir.join("none.cif")),
            "x",
        ]),
        "none.cif",
    );

    // Bad input.
    bad(
        &xtal(&["bundle", "verify", &s(&dir.join("none.xtal"))]),
        "none.xtal",
    );
    let bytes = std::fs::read(&b).unwrap();
    let cut = dir.join("cut.xtal");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    bad(&xtal(&["search", "--bundle", &s(&cut), "x"]), "cut.xtal");
    std::fs::write(dir.join("bad.cif"), "data_x\n_cell_length_a 3\n").unwrap();
    bad(
        &xtal(&["embed", "--bundle", &s(&b), "cif", &s(&dir.join("bad.cif"))]),
        "bad.cif",
    );
    let no_index = dir.join("no-index.xtal");
    ok(
        &xtal(&["bundle", "pack", "--run", &s(&run), "-o", &s(&no_index)]),
        "pack without index",
    );
    bad(
        &xtal(&["search", "--bundle", &s(&no_index), "x"]),
        "no retrieval index",
    );

    // Fine-tune: 16 id,text pairs from the index; the loss over them falls, the structure
    // side of the index and its map stay, the text side is recomputed by the new model.
    let index: Value = serde_json::from_str(&ok(
        &xtal(&[
            "search",
            "--bundle",
            &s(&b),
            "material",
            "-k",
            "16",
            "--json",
        ]),
        "search",
    ))
    .unwrap();
    let mut pairs = String::from("id,text\n");
    for (i, hit) in index["results"].as_array().unwrap().iter().enumerate() {
        pairs.push_str(&format!(
            "{},\"{} entry {i}\"\n",
            hit["id"].as_str().unwrap(),
            hit["formula"].as_str().unwrap_or("")
        ));
    }
    let pairs_path = dir.join("pairs.csv");
    std::fs::write(&pairs_path, &pairs).unwrap();
    let tuned = dir.join("tuned.xtal");
    let tune = |extra: &[&str]| {
        let mut args = vec!["bundle", "fine-tune"];
        let (b, p, t) = (s(&b), s(&pairs_path), s(&tuned));
        let owned = [
            b,
            "--pairs".into(),
            p,
            "-o".into(),
            t,
            "--steps".into(),
            "25".into(),
            "--lr".into(),
            "0.01".into(),
            "--batch-size".into(),
            "8".into(),
            "--json".into(),
        ];
        let mut all: Vec<String> = owned.to_vec();
        all.extend(extra.iter().map(|a| a.to_string()));
        args.extend(all.iter().map(String::as_str));
        xtal(&args)
    };
    let report: Value = serde_json::from_str(&ok(&tune(&[]), "fine-tune")).unwrap();
    let (before, after) = (
        report["loss_before"].as_f64().unwrap(),
        report["loss_after"].as_f64().unwrap(),
    );
    assert!(after < before, "fine-tune loss {before} → {after}");
    assert_eq!(report["losses"].as_array().unwrap().len(), 25);
    assert_eq!(report["pairs"], 16);
    bad(&tune(&[]), "--force");
    ok(
        &xtal(&["bundle", "verify", &s(&tuned)]),
        "verify the fine-tuned bundle",
    );
    let inspect = |p: &Path| -> Value {
        serde_json::from_str(&ok(
            &xtal(&["bundle", "inspect", &s(p), "--json"]),
            "inspect",
        ))
        .unwrap()
    };
    let tuned_manifest = inspect(&tuned);
    assert_eq!(tuned_manifest["source"]["fine_tune"]["pairs"], 16);
    assert_eq!(
        tuned_manifest["index"]["entries"],
        manifest["index"]["entries"]
    );
    // A CIF still lands on its own entry (structure side untouched).
    let (id, cif) = &cifs[0];
    let hits: Value = serde_json::from_str(&ok(
        &xtal(&[
            "search",
            "--bundle",
            &s(&tuned),
            "--cif",
            &s(cif),
            "--against",
            "structure",
            "-k",
            "1",
            "--json",
        ]),
        "search --cif",
    ))
    .unwrap();
    assert_eq!(hits["results"][0]["id"], id.as_str());
    std::fs::write(&pairs_path, "id,text\nnot-an-id,x\nother,y\n").unwrap();
    bad(&tune(&["--force"]), "line 2: id `not-an-id`");
    let _ = std::fs::remove_dir_all(&dir);
}
