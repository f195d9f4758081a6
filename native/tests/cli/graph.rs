//! Graph encoders end to end: `xtal train property` (held-out MAE next to the composition
//! baseline), CLIP with `model.graph_backbone`, `xtal embed --run … cif` and `embed dataset`
//! into the original `graph_emb/` layout that the precomputed-embedding path then trains on.

use std::path::{Path, PathBuf};

use crate::common::{TINY_CLIP, epoch_lines, scratch, stderr, train_clip, xtal};

fn sample_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv")
}

/// The sample data prepared into `dir/data`.
fn prepared(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let o = xtal(&[
        "prepare",
        sample_csv().to_str().unwrap(),
        "-o",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    data
}

/// The CIF of the first `source` row of the sample, written to `dir/ID.cif`.
fn sample_cif(dir: &Path, source: &str) -> (String, PathBuf) {
    let mut r = csv::Reader::from_path(sample_csv()).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let rec = r
        .records()
        .map(Result::unwrap)
        .find(|rec| &rec[col("source")] == source)
        .unwrap();
    let path = dir.join(format!("{}.cif", &rec[col("id")]));
    std::fs::write(&path, &rec[col("cif")]).unwrap();
    (rec[col("id")].to_string(), path)
}

const TINY_GRAPH: &[&str] = &[
    "--width",
    "16",
    "--layers",
    "2",
    "--embedding-dim",
    "12",
    "--epochs",
    "2",
    "--batch-size",
    "16",
];

/// The tiny property model on the sample's mp40 band gaps.
fn train_property(data: &Path, out: &Path) -> std::process::Output {
    let mut args = vec![
        "train",
        "property",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "band_gap",
        "--source",
        "mp40",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(TINY_GRAPH);
    xtal(&args)
}

fn vectors(json: &[u8]) -> Vec<Vec<f32>> {
    serde_json::from_slice(json).unwrap()
}

#[test]
fn property_regression_reports_mae_and_embeds_structures() {
    let dir = scratch("graph-property");
    let data = prepared(&dir);
    let run = dir.join("run");
    let o = train_property(&data, &run);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("composition baseline"), "{out}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    for key in ["validation_mae", "composition_baseline_mae"] {
        let mae = summary[key].as_f64().unwrap();
        assert!(mae.is_finite() && mae > 0.0, "{key} = {mae}");
    }
    // The sample's mp40 rows (619) split by `xtal prepare`'s 10 %.
    let (train, val) = (
        summary["train"].as_u64().unwrap(),
        summary["validation"].as_u64().unwrap(),
    );
    assert_eq!(train + val, 619);
    for f in ["parity.png", "parity.svg", "mae.png"] {
        assert!(run.join("plots").join(f).is_file(), "{f}");
    }
    // Through the shared loop: `best` is the lowest validation MAE, and a run stopped after
    // epoch 1 and resumed gives the uninterrupted run's numbers.
    let lines = epoch_lines(&run);
    let best_mae = lines
        .iter()
        .filter(|l| l["kind"] == "epoch")
        .filter_map(|l| l["val_mae"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!((summary["validation_mae"].as_f64().unwrap() - best_mae).abs() < 1e-9);
    let resumed = dir.join("resumed");
    let mut args = vec![
        "train",
        "property",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "band_gap",
        "--source",
        "mp40",
        "--out",
        resumed.to_str().unwrap(),
        "--stop-after",
        "1",
    ];
    args.extend(TINY_GRAPH);
    let o = xtal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&[
        "train",
        "property",
        "--out",
        resumed.to_str().unwrap(),
        "--resume",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming after epoch 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(epoch_lines(&resumed), lines);

    // A CIF file and the same structure from the dataset embed alike.
    let (id, cif) = sample_cif(&dir, "mp40");
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "--json",
        "cif",
        cif.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_cif = vectors(&o.stdout).remove(0);
    assert_eq!(from_cif.len(), 12);
    let emb = dir.join("emb");
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "dataset",
        data.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let npy = std::fs::read(emb.join("graph_emb").join(format!("{id}.npy"))).unwrap();
    let arr = npyz::NpyFile::new(&npy[..]).unwrap();
    assert_eq!(arr.shape(), &[12]);
    let from_dataset: Vec<f32> = arr.into_vec().unwrap();
    let d = from_cif
        .iter()
        .zip(&from_dataset)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d <= 1e-5, "CIF and dataset embeddings differ by {d}");
    let lines = std::fs::read_to_string(emb.join("dataset.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 833);

    // The original layout trains CLIP on the precomputed 12-D vectors.
    let clip = dir.join("clip");
    let mut args = vec![
        "train",
        "clip",
        "--data",
        emb.to_str().unwrap(),
        "--out",
        clip.to_str().unwrap(),
        "--no-plots",
    ];
    args.extend(TINY_CLIP);
    let o = xtal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("12-D structure"), "{}", stderr(&o));
}

#[test]
fn clip_trains_a_graph_encoder_end_to_end() {
    let dir = scratch("graph-clip");
    let data = prepared(&dir);
    let run = dir.join("run");
    let o = train_clip(
        &data,
        &run,
        &[
            "--no-plots",
            "--set",
            "model.graph_backbone=painn",
            "--set",
            "model.graph_width=16",
            "--set",
            "model.graph_layers=1",
            "--set",
            "model.graph_readout=attention",
            "--set",
            "model.graph_embedding_dim=24",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // PaiNN's own neighbour settings (5 Å, every neighbour) are not the dataset's (8 Å, 12).
    assert!(
        stderr(&o).contains("building them from structures.jsonl"),
        "{}",
        stderr(&o)
    );
    // Every sample structure has a graph, while 73 have no FTCP tensor.
    assert!(stderr(&o).contains("833 pairs"), "{}", stderr(&o));
    let (id, cif) = sample_cif(&dir, "perov5");
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "--json",
        "cif",
        cif.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = vectors(&o.stdout).remove(0);
    assert_eq!(v.len(), 16, "the joint space (clip_dim)");
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit vector, norm {norm}");
    let o = xtal(&["eval", "clip", "--run", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_run = v;

    // Packed, the bundle embeds the CIF itself as the run does.
    let bundle = dir.join("b.xtal");
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = bundle.to_str().unwrap();
    let o = xtal(&["bundle", "verify", b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&["bundle", "inspect", b]);
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(shown.contains("PaiNN graph encoder"), "{shown}");
    let o = xtal(&["predict", "--bundle", b, cif.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("has no tensor head"), "{}", stderr(&o));
    let o = xtal(&[
        "embed",
        "--bundle",
        b,
        "--json",
        "cif",
        cif.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_bundle = vectors(&o.stdout).remove(0);
    let d = from_run
        .iter()
        .zip(&from_bundle)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "bundle vs run: {d:e}");

    // f16 with an index: the packer measures what f16 changes on the graph side, and the
    // CIF finds its own structure first.
    let half = dir.join("half.xtal");
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "--index",
        data.to_str().unwrap(),
        "--no-map",
        "--f16",
        "-o",
        half.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&["bundle", "inspect", "--json", half.to_str().unwrap()]);
    let manifest: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(manifest["structure_input"]["kind"], "graph");
    let check = manifest["f16_check"]["max_abs_diff_structure"]
        .as_f64()
        .unwrap();
    assert!(check > 0.0 && check < 5e-3, "f16 structure |Δ| {check}");
    let o = xtal(&[
        "search",
        "--bundle",
        half.to_str().unwrap(),
        "--against",
        "structure",
        "-k",
        "3",
        "--json",
        "--cif",
        cif.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let found: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hits = found["results"].as_array().unwrap();
    assert_eq!(hits[0]["id"].as_str(), Some(id.as_str()), "{hits:?}");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.99, "{hits:?}");

    // An index of every structure of a dataset, text or not: 40 sample rows, every other one
    // without its description. All 40 are indexed; each structure is embedded as the run
    // embeds its CIF; an entry without text is never a CIF's nearest description.
    let (rows, textless) = dataset_with_textless_rows(&dir.join("mixed.csv"), 40);
    let mixed = dir.join("mixed");
    let o = xtal(&[
        "prepare",
        dir.join("mixed.csv").to_str().unwrap(),
        "-o",
        mixed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = dir.join("all.xtal");
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "--index-structures",
        mixed.to_str().unwrap(),
        "-o",
        all.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("index: 40 structures"),
        "{}",
        stderr(&o)
    );
    let a = all.to_str().unwrap();
    let o = xtal(&["bundle", "verify", a]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (textless_id, textless_cif) = &textless[0];
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "--json",
        "cif",
        textless_cif,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_run = vectors(&o.stdout).remove(0);
    let search = |side: &str| -> Vec<serde_json::Value> {
        let o = xtal(&[
            "search",
            "--bundle",
            a,
            "--against",
            side,
            "-k",
            "50",
            "--json",
            "--cif",
            textless_cif,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["results"].as_array().unwrap().clone()
    };
    let hits = search("structure");
    assert_eq!(hits.len(), rows, "every structure is a structure hit");
    assert_eq!(
        hits[0]["id"].as_str(),
        Some(textless_id.as_str()),
        "{hits:?}"
    );
    assert!(hits[0]["score"].as_f64().unwrap() > 0.9999, "{hits:?}");
    // The bundle's embedding of the same CIF is the run's (the index used the same path).
    let o = xtal(&["embed", "--bundle", a, "--json", "cif", textless_cif]);
    let from_bundle = vectors(&o.stdout).remove(0);
    let d = from_run
        .iter()
        .zip(&from_bundle)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "bundle vs run: {d:e}");
    let hits = search("text");
    assert_eq!(hits.len(), rows - textless.len(), "{hits:?}");
    for h in &hits {
        assert!(!h["description"].as_str().unwrap().is_empty(), "{h}");
        assert!(
            textless.iter().all(|(id, _)| h["id"].as_str() != Some(id)),
            "{h}"
        );
    }
    // The index options of a bundle without one are refused by name.
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "--no-structures",
        "-o",
        dir.join("x.xtal").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--no-structures"), "{}", stderr(&o));
}

/// The first `n` sample rows written to `csv` with every odd row's texts removed; returns `n`
/// and each textless row's id and CIF file (written beside `csv`).
fn dataset_with_textless_rows(csv: &Path, n: usize) -> (usize, Vec<(String, String)>) {
    let mut r = csv::Reader::from_path(sample_csv()).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|x| x == name).unwrap();
    let mut w = csv::Writer::from_path(csv).unwrap();
    w.write_record(&h).unwrap();
    let mut textless = Vec::new();
    for (i, rec) in r.records().map(Result::unwrap).take(n).enumerate() {
        let mut rec: Vec<String> = rec.iter().map(String::from).collect();
        if i % 2 == 1 {
            for c in ["description", "caption", "description_mp"] {
                rec[col(c)].clear();
            }
            let cif = csv.with_file_name(format!("{}.cif", rec[col("id")]));
            std::fs::write(&cif, &rec[col("cif")]).unwrap();
            textless.push((rec[col("id")].clone(), cif.to_str().unwrap().to_string()));
        }
        w.write_record(&rec).unwrap();
    }
    w.flush().unwrap();
    (n, textless)
}

/// The CIFs of the validation rows a property run on `data` held out, and their targets.
fn held_out(data: &Path, dir: &Path) -> Vec<(PathBuf, f64)> {
    let text = std::fs::read_to_string(data.join("dataset.jsonl")).unwrap();
    let mut r = csv::Reader::from_path(sample_csv()).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let cifs: std::collections::HashMap<String, String> = r
        .records()
        .map(Result::unwrap)
        .map(|rec| (rec[col("id")].to_string(), rec[col("cif")].to_string()))
        .collect();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "val" && v["source"] == "mp40")
        .filter_map(|v| {
            let y = v["properties"]["band_gap"].as_f64()?;
            let id = v["id"].as_str().unwrap();
            let path = dir.join(format!("{id}.cif"));
            std::fs::write(&path, &cifs[id]).unwrap();
            Some((path, y))
        })
        .collect()
}

#[test]
fn a_property_bundle_predicts_from_cifs_as_the_run_did() {
    let dir = scratch("graph-property-bundle");
    let data = prepared(&dir);
    let run = dir.join("run");
    let o = train_property(&data, &run);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let bundle = dir.join("gap.xtal");
    let b = bundle.to_str().unwrap();
    let o = xtal(&["bundle", "pack", "--run", run.to_str().unwrap(), "-o", b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&["bundle", "verify", b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&["bundle", "inspect", b]);
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        shown.contains("model      property") && shown.contains("predicts   band_gap of mp40"),
        "{shown}"
    );

    // From CIF text alone, the bundle predicts the held-out structures as the run's own
    // validation (graphs from the prepared dataset, the best checkpoint) measured them.
    let rows = held_out(&data, &dir);
    assert_eq!(rows.len() as u64, summary["validation"].as_u64().unwrap());
    let mut args = vec!["predict", "--bundle", b, "--json"];
    args.extend(rows.iter().map(|(p, _)| p.to_str().unwrap()));
    let o = xtal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let predicted: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(predicted.len(), rows.len());
    assert_eq!(predicted[0]["target"], "band_gap");
    let mae = predicted
        .iter()
        .zip(&rows)
        .map(|(p, (_, y))| (p["prediction"].as_f64().unwrap() - y).abs())
        .sum::<f64>()
        / rows.len() as f64;
    let want = summary["validation_mae"].as_f64().unwrap();
    assert!(
        (mae - want).abs() <= 1e-4 * want,
        "bundle MAE {mae} vs the run's {want}"
    );
    let o = xtal(&["predict", "--bundle", b, rows[0].0.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("band_gap"));

    // f16: smaller, and the packer measures the change on the validation rows.
    let half = dir.join("half.xtal");
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "--f16",
        "-o",
        half.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&half).unwrap().len() < std::fs::metadata(&bundle).unwrap().len());
    let o = xtal(&["bundle", "inspect", "--json", half.to_str().unwrap()]);
    let manifest: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(manifest["model"]["kind"], "property");
    let check = &manifest["f16_check"];
    assert_eq!(check["rows"], summary["validation"]);
    let d = check["max_abs_diff_prediction"].as_f64().unwrap();
    assert!(d > 0.0 && d < 1e-2, "f16 |Δ prediction| {d}");

    // What a property bundle cannot do, and bad input: exit 2 naming it, nothing written.
    let o = xtal(&["search", "--bundle", b, "an oxide"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds a property model"),
        "{}",
        stderr(&o)
    );
    let bad = dir.join("bad.cif");
    std::fs::write(&bad, "data_x\n_cell_length_a 3\n").unwrap();
    let o = xtal(&["predict", "--bundle", b, bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.cif"), "{}", stderr(&o));
    let other = dir.join("other.xtal");
    let o = xtal(&[
        "bundle",
        "pack",
        "--run",
        run.to_str().unwrap(),
        "--index",
        data.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--index"), "{}", stderr(&o));
    assert!(!other.exists());
}

#[test]
fn bad_inputs_exit_2_with_a_reason() {
    let dir = scratch("graph-errors");
    let data = prepared(&dir);
    let run = dir.join("run");
    let train = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "property",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--force",
        ];
        a.extend(extra);
        a.extend(TINY_GRAPH);
        xtal(&a)
    };
    // band_gap of several sources is not pooled silently.
    let o = train(&["--target", "band_gap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("several sources") && stderr(&o).contains("mp40"),
        "{}",
        stderr(&o)
    );
    let o = train(&["--target", "colour", "--source", "mp40"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no record has a property `colour`"),
        "{}",
        stderr(&o)
    );
    let o = train(&[
        "--target",
        "band_gap",
        "--source",
        "mp40",
        "--backbone",
        "schnet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cgcnn, painn"), "{}", stderr(&o));

    // A duplicated site is named, not turned into NaN embeddings.
    let o = train(&["--target", "band_gap", "--source", "mp40"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dup = dir.join("dup.cif");
    std::fs::write(
        &dup,
        "data_d\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa 0 0 0\nCl 0.5 0.5 0.5\nCl 0.5 0.5 0.501\n",
    )
    .unwrap();
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "cif",
        dup.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("dup.cif") && stderr(&o).contains("duplicated site"),
        "{}",
        stderr(&o)
    );
    let missing = dir.join("missing.cif");
    let o = xtal(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "cif",
        missing.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("missing.cif"), "{}", stderr(&o));

    // A CLIP run over precomputed vectors has no structure encoder to embed with.
    let clip = dir.join("ftcp-clip");
    let mut a = vec![
        "train",
        "clip",
        "--data",
        data.to_str().unwrap(),
        "--out",
        clip.to_str().unwrap(),
        "--no-plots",
    ];
    a.extend(TINY_CLIP);
    let o = xtal(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtal(&[
        "embed",
        "--run",
        clip.to_str().unwrap(),
        "cif",
        dup.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("graph encoder"), "{}", stderr(&o));
}

/// `dir` copied to `to` without the graph arrays `xtal prepare` wrote: a model reading the
/// copy builds its graphs from `structures.jsonl`.
fn without_graph_arrays(dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("graph_") {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Graphs read in place from the dataset's `graph_*.npy` and graphs built from its
/// `structures.jsonl` are the same graphs: CLIP and property training on either give the
/// same run, figure for figure. Damaged arrays are exit 2 naming the file.
#[test]
fn graph_arrays_read_in_place_train_as_built_graphs() {
    let dir = scratch("graph-mapped");
    let data = prepared(&dir);
    let built = dir.join("built");
    without_graph_arrays(&data, &built);
    let cgcnn = [
        "--no-plots",
        "--set",
        "model.graph_backbone=cgcnn",
        "--set",
        "model.graph_width=16",
        "--set",
        "model.graph_layers=1",
        "--set",
        "model.graph_embedding_dim=24",
    ];
    let (run_mapped, run_built) = (dir.join("clip-mapped"), dir.join("clip-built"));
    let o = train_clip(&data, &run_mapped, &cgcnn);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("read in place"), "{}", stderr(&o));
    let o = train_clip(&built, &run_built, &cgcnn);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("building them from structures.jsonl"),
        "{}",
        stderr(&o)
    );
    let mapped_lines = epoch_lines(&run_mapped);
    assert!(mapped_lines.iter().any(|l| l["kind"] == "epoch"));
    assert_eq!(mapped_lines, epoch_lines(&run_built));

    // Other neighbour settings than the dataset's: the model builds its own graphs.
    let mut other = cgcnn.to_vec();
    other.extend(["--set", "model.graph_cutoff=6"]);
    let o = train_clip(&data, &dir.join("clip-6A"), &other);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cutoff 8 Å"), "{}", stderr(&o));

    let property = |data: &Path, out: &Path| {
        let o = train_property(data, out);
        assert!(o.status.success(), "{}", stderr(&o));
        epoch_lines(out)
    };
    assert_eq!(
        property(&data, &dir.join("property-mapped")),
        property(&built, &dir.join("property-built"))
    );

    // Damaged arrays: each an exit 2 naming the file, before any training.
    let damaged = |name: &str, damage: &dyn Fn(&mut Vec<u8>), expect: &str| {
        let copy = dir.join(format!("damaged-{name}"));
        without_graph_arrays(&data, &copy);
        for entry in std::fs::read_dir(&data).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name().to_string_lossy().to_string();
            if file.starts_with("graph_") {
                let mut bytes = std::fs::read(entry.path()).unwrap();
                if file == format!("graph_{name}.npy") {
                    damage(&mut bytes);
                }
                std::fs::write(copy.join(&file), bytes).unwrap();
            }
        }
        let run = dir.join(format!("run-damaged-{name}"));
        let o = train_clip(&copy, &run, &cgcnn);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("graph_{name}.npy")) && e.contains(expect),
            "{e}"
        );
        assert!(!run.exists(), "{name}: no run is left behind");
    };
    // The header of every array xtal writes is 128 bytes.
    damaged("edges", &|b| b.truncate(b.len() - 8), "truncated");
    damaged(
        "edges",
        &|b| b[132..136].copy_from_slice(&9999u32.to_le_bytes()),
        "edge 0 joins atoms",
    );
    damaged(
        "distances",
        &|b| b[128..132].copy_from_slice(&f32::NAN.to_le_bytes()),
        "NaN",
    );
    damaged(
        "node_offsets",
        &|b| b[136..144].copy_from_slice(&(-5i64).to_le_bytes()),
        "offset 1 is less than offset 0",
    );
    damaged(
        "vectors",
        &|b| b[..128].copy_from_slice(&b"x".repeat(128)),
        "not a .npy file",
    );
}
