//! `xtal cif` and `xtal prepare` end to end, against pymatgen facts and the original FTCP code's
//! tensors (tests/fixtures/structures).

use std::path::{Path, PathBuf};

use crate::common::{scratch, stderr, xtal};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/structures")
}

#[test]
fn cif_json_matches_pymatgen_for_a_symmetrized_file() {
    let facts = std::fs::read_to_string(fixtures().join("facts_symmetrized.jsonl")).unwrap();
    let want: serde_json::Value = serde_json::from_str(facts.lines().next().unwrap()).unwrap();
    let id = want["id"].as_str().unwrap();
    let file = fixtures().join(format!("symmetrized/{id}.cif"));
    let out = xtal(&["cif", "--json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["a", "b", "c", "alpha", "beta", "gamma", "volume", "density"] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() < 1e-6 * w.abs(), "{key}: {g} vs {w}");
    }
    for key in [
        "nsites",
        "reduced_formula",
        "spacegroup_number",
        "crystal_system",
    ] {
        assert_eq!(got[key], want[key], "{key}");
    }
}

#[test]
fn malformed_or_missing_cif_exits_2_naming_file_and_line() {
    let dir = scratch("structures-bad-cif");
    let bad = dir.join("bad.cif");
    std::fs::write(&bad, "data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nFe1 0 0 zero\n").unwrap();
    let out = xtal(&["cif", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.cif") && stderr(&out).contains("line 13"),
        "{}",
        stderr(&out)
    );
    let out = xtal(&["cif", dir.join("missing.cif").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.cif"), "{}", stderr(&out));
}

/// A CSV of fixture structures plus one broken CIF and one with five elements.
fn small_csv(dir: &Path) -> (PathBuf, Vec<String>) {
    let mut reader = csv::Reader::from_path(fixtures().join("cifs.csv")).unwrap();
    let ftcp_ids: Vec<String> = std::fs::read_to_string(fixtures().join("ftcp_ids.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let path = dir.join("materials.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "description", "band_gap", "cif"])
        .unwrap();
    let mut ids = Vec::new();
    for rec in reader.records().map(Result::unwrap) {
        if ftcp_ids[..20].contains(&rec[0].to_string()) {
            w.write_record([&rec[0], "a crystal", "1.5", &rec[1]])
                .unwrap();
            ids.push(rec[0].to_string());
        }
    }
    w.write_record([
        "broken",
        "x",
        "",
        "data_b\n_cell_length_a 1\nloop_\n_atom_site_label\n_atom_site_fract_x\n1\n",
    ])
    .unwrap();
    let five = "data_f\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa 0 0 0\nK 0.5 0 0\nCl 0 0.5 0\nBr 0 0 0.5\nI 0.5 0.5 0.5\n";
    w.write_record(["five", "", "2", five]).unwrap();
    w.flush().unwrap();
    (path, ids)
}

#[test]
fn prepare_writes_a_dataset_numpy_can_read_and_ftcp_matches_the_original() {
    let dir = scratch("structures-prepare");
    let (csv_path, ids) = small_csv(&dir);
    let out_dir = dir.join("ds");
    let atom_init = fixtures().join("atom_init.json");
    let args = [
        "prepare",
        csv_path.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--atom-init",
        atom_init.to_str().unwrap(),
    ];
    let out = xtal(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let failures = std::fs::read_to_string(out_dir.join("failures.csv")).unwrap();
    assert!(
        failures.contains("broken,") && failures.contains("line 6"),
        "{failures}"
    );
    assert!(
        failures.contains("five,\"FTCP: 5 distinct elements"),
        "{failures}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("dataset.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        ids.len() + 1,
        "every readable structure is kept, the broken one is not"
    );
    assert!(
        records
            .iter()
            .all(|r| r["properties"]["band_gap"].is_number() || r["id"] == "five")
    );
    let five = records.iter().find(|r| r["id"] == "five").unwrap();
    assert!(five["ftcp_index"].is_null() && five["graph_index"].is_number());
    // Validation rows are drawn among the CSV's 22 rows before featurising (so that shards
    // agree); the broken row leaves whichever split it drew.
    let drawn = ((ids.len() + 2) as f64 * 0.1).round() as usize;
    let val = records.iter().filter(|r| r["split"] == "val").count();
    assert!(val == drawn || val + 1 == drawn, "{val} of {drawn}");

    // FTCP rows equal the original code's tensors.
    let bytes = std::fs::read(out_dir.join("ftcp.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[ids.len() as u64, 400, 63]);
    let ours: Vec<f32> = npy.into_vec().unwrap();
    let mut npz = npyz::npz::NpzArchive::open(fixtures().join("ftcp_pvlab_4_100.npz")).unwrap();
    let reference: Vec<f64> = npz.by_name("ftcp").unwrap().unwrap().into_vec().unwrap();
    let ftcp_ids: Vec<String> = std::fs::read_to_string(fixtures().join("ftcp_ids.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let n = 400 * 63;
    for r in records.iter().filter(|r| r["ftcp_index"].is_number()) {
        let k = r["ftcp_index"].as_u64().unwrap() as usize;
        let m = ftcp_ids
            .iter()
            .position(|i| i == r["id"].as_str().unwrap())
            .unwrap();
        for (a, b) in ours[k * n..(k + 1) * n]
            .iter()
            .zip(&reference[m * n..(m + 1) * n])
        {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 + 1e-6 * b.abs(),
                "{}: {a} vs {b}",
                r["id"]
            );
        }
    }
    let normalizer: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("ftcp_normalizer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(normalizer["min"].as_array().unwrap().len(), 400);

    // The same input gives the same files with any number of threads.
    let one_thread = dir.join("ds1");
    let out = xtal(&[
        "prepare",
        csv_path.to_str().unwrap(),
        "-o",
        one_thread.to_str().unwrap(),
        "--atom-init",
        atom_init.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for file in [
        "dataset.jsonl",
        "ftcp.npy",
        "graph_edges.npy",
        "graph_distances.npy",
        "failures.csv",
        "ftcp_normalizer.json",
    ] {
        assert!(
            std::fs::read(out_dir.join(file)).unwrap()
                == std::fs::read(one_thread.join(file)).unwrap(),
            "{file} differs"
        );
    }

    // An existing output is never touched without --force.
    let before = std::fs::read(out_dir.join("dataset.jsonl")).unwrap();
    let again = xtal(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"));
    assert_eq!(
        std::fs::read(out_dir.join("dataset.jsonl")).unwrap(),
        before
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prepare_rejects_a_csv_without_an_id_column() {
    let dir = scratch("structures-noid");
    let p = dir.join("x.csv");
    std::fs::write(&p, "name,cif\na,b\n").unwrap();
    let out = xtal(&[
        "prepare",
        p.to_str().unwrap(),
        "-o",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no 'id' column"), "{}", stderr(&out));
    let missing = dir.join("missing.csv");
    let out = xtal(&[
        "prepare",
        missing.to_str().unwrap(),
        "-o",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
    assert!(!dir.join("o").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prepare_copies_a_tensor_column_and_names_a_malformed_one() {
    let dir = scratch("structures-tensor");
    let cif = "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa 0 0 0\nCl 0.5 0.5 0.5\n";
    let write = |rows: &[[&str; 4]]| {
        let p = dir.join("t.csv");
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.write_record(["id", "description", "elastic", "cif"])
            .unwrap();
        for r in rows {
            w.write_record(r).unwrap();
        }
        w.flush().unwrap();
        p
    };
    let p = write(&[
        ["a", "rock salt", "[[1,2,3],[4,5,6],[7,8,9]]", cif],
        ["b", "rock salt", "", cif],
    ]);
    let out_dir = dir.join("o");
    let run = |p: &Path| {
        xtal(&[
            "prepare",
            p.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--tensor-column",
            "elastic",
            "--force",
        ])
    };
    let out = run(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("dataset.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records[0]["tensor"],
        serde_json::json!([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    );
    assert!(records[1]["tensor"].is_null());
    let _ = std::fs::remove_dir_all(&out_dir);
    let p = write(&[["a", "rock salt", "[1,2,3]", cif]]);
    let out = run(&p);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("t.csv:2: elastic"),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cif_corpus/files")
}

/// Rows that once crashed or hung `prepare` (moyo's Hall-symbol parser: an assertion on `'P 3
/// 2"x'`-style leftovers, an unwrap on `'P -'`, an endless enumeration of `'P 4 3x'`'s infinite
/// group) land in failures.csv with their line; the other rows are written, and what the reader
/// assumed for a legacy file is kept in cif_warnings.csv.
#[test]
fn prepare_survives_rows_that_once_crashed_it_and_keeps_the_readers_warnings() {
    let dir = scratch("structures-prepare-survives");
    let cell = "_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n\
                _cell_angle_beta 90\n_cell_angle_gamma 90\n";
    let sites = "loop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n\
                 _atom_site_fract_z\nNa 0 0 0\nCl 0.5 0.5 0.5\n";
    let with_hall =
        |h: &str| format!("data_h\n{cell}_symmetry_space_group_name_Hall '{h}'\n{sites}");
    let legacy = format!(
        "% from an old program\ndata_NaCl rock salt\n{cell}_symmetry_space_group_name_H-M F m 3 m\n{sites}"
    );
    let magnetic = std::fs::read_to_string(corpus().join("pymatgen/LaMnO3_magnetic.mcif")).unwrap();
    let rows = [
        ("hall-assert", with_hall("P 3 2\"x")),
        ("hall-unwrap", with_hall("P -")),
        ("hall-infinite", with_hall("P 4 3x")),
        ("legacy", legacy),
        ("magnetic", magnetic),
    ];
    let csv_path = dir.join("rows.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(["id", "description", "cif"]).unwrap();
    for (id, cif) in &rows {
        w.write_record([id, "a crystal", cif.as_str()]).unwrap();
    }
    w.flush().unwrap();
    let out_dir = dir.join("ds");
    let out = xtal(&[
        "prepare",
        csv_path.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let failures = std::fs::read_to_string(out_dir.join("failures.csv")).unwrap();
    for id in ["hall-assert", "hall-unwrap", "hall-infinite"] {
        let line = failures
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in failures.csv:\n{failures}"));
        assert!(line.contains("line 8") && line.contains("Hall"), "{line}");
    }
    let dataset = std::fs::read_to_string(out_dir.join("dataset.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = dataset
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_id = |id: &str| records.iter().find(|r| r["id"] == id).unwrap();
    // F m 3 m (the old notation, unquoted) expands the two sites to rock salt's eight.
    assert_eq!(by_id("legacy")["nsites"], 8);
    assert_eq!(by_id("legacy")["spacegroup_number"], 225);
    // The magnetic operations expand LaMnO3 to pymatgen's 20 sites, not the asymmetric unit.
    assert_eq!(by_id("magnetic")["nsites"], 20);
    assert_eq!(by_id("magnetic")["formula"], "LaMnO3");
    let warnings = std::fs::read_to_string(out_dir.join("cif_warnings.csv")).unwrap();
    let legacy_lines: Vec<&str> = warnings
        .lines()
        .filter(|l| l.starts_with("legacy,"))
        .collect();
    for needle in [
        "legacy,1,",
        "legacy,2,",
        "old cubic notation",
        "unquoted value",
    ] {
        assert!(
            legacy_lines.iter().any(|l| l.contains(needle)),
            "{needle} not in cif_warnings.csv:\n{warnings}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["failed"], 3);
    assert_eq!(summary["rows_with_cif_warnings"], 1);
}

/// A CIF file in Latin-1 (as older Windows tools write them) is read, and the report of the
/// preparation says so: the decoding is an assumption like any other.
#[test]
fn prepare_reads_latin1_cif_files_and_says_so() {
    let dir = scratch("structures-prepare-latin1");
    let cifs = dir.join("cifs");
    std::fs::create_dir_all(&cifs).unwrap();
    let latin1 = std::fs::read(corpus().join("variants/Fe3O4--latin1.cif")).unwrap();
    assert!(
        std::str::from_utf8(&latin1).is_err(),
        "the fixture must not be UTF-8"
    );
    std::fs::write(cifs.join("fe3o4.cif"), &latin1).unwrap();
    let csv_path = dir.join("rows.csv");
    std::fs::write(&csv_path, "id,description\nfe3o4,magnetite\n").unwrap();
    let out_dir = dir.join("ds");
    let out = xtal(&[
        "prepare",
        csv_path.to_str().unwrap(),
        "--cif-dir",
        cifs.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warnings = std::fs::read_to_string(out_dir.join("cif_warnings.csv")).unwrap();
    assert!(
        warnings
            .lines()
            .any(|l| l.starts_with("fe3o4,") && l.contains("not UTF-8: read as Latin-1")),
        "{warnings}"
    );
    let dataset = std::fs::read_to_string(out_dir.join("dataset.jsonl")).unwrap();
    assert!(dataset.contains("\"formula\":\"Fe3O4\""), "{dataset}");
}

/// `xtal cif` says what it assumed, line by line, on stderr and in `--json`.
#[test]
fn cif_prints_the_readers_warnings() {
    let file = corpus().join("variants/Fe--missing_angles.cif");
    let legacy = corpus().join("diffpy/LiCl-bad.cif");
    let out = xtal(&["cif", legacy.to_str().unwrap(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: ") && err.contains("LiCl-bad.cif") && err.contains("line "),
        "{err}"
    );
    assert!(
        err.contains("_cell_angle_alpha is missing: 90° assumed"),
        "{err}"
    );
    let out = xtal(&["cif", "--json", legacy.to_str().unwrap()]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = got["warnings"].as_array().unwrap();
    assert!(!warnings.is_empty() && warnings[0]["line"].as_u64().unwrap() > 0);
}
