//! Runs are self-contained and relocatable: a run records its data relative to itself and
//! keeps what reading other data needs (the FTCP normaliser), so that a run moved with its
//! data, or alone, evaluates and packs the same from any working directory.

use std::path::Path;

use serde_json::Value;

use crate::common::{TINY_CLIP, materials, scratch, stderr, xtal_in};

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `eval clip --json`'s evaluation, run from `cwd`.
fn evaluation(cwd: &Path, run: &str, data: Option<&str>) -> Value {
    let mut args = vec!["eval", "clip", "--run", run, "--json"];
    if let Some(d) = data {
        args.extend(["--data", d]);
    }
    let out: Value = serde_json::from_str(&ok(&xtal_in(cwd, &args), "eval")).unwrap();
    out["evaluation"].clone()
}

#[test]
fn a_run_moved_with_its_data_or_alone_works_from_any_directory() {
    let dir = scratch("relocation");
    materials(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    // As a user types it: paths relative to where xtal runs.
    ok(
        &xtal_in(&dir, &["prepare", "materials.csv", "-o", "a/data"]),
        "prepare",
    );
    let mut train = vec![
        "train",
        "clip",
        "--data",
        "a/data",
        "--out",
        "a/run",
        "--no-plots",
    ];
    train.extend_from_slice(TINY_CLIP);
    ok(&xtal_in(&dir, &train), "train");
    let own = evaluation(&dir, "a/run", None);
    let other = evaluation(&dir, "a/run", Some("a/data"));
    assert!(own["retrieval"].is_object(), "{own}");

    // Run and data moved together, commands run from elsewhere.
    std::fs::rename(dir.join("a"), dir.join("b")).unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert_eq!(evaluation(&elsewhere, "../b/run", None), own);
    assert_eq!(evaluation(&elsewhere, "../b/run", Some("../b/data")), other);

    // The run alone, its data gone from where it recorded it: other data still reads as
    // the run read its own (the run's copy of the normaliser), and the run still packs.
    std::fs::create_dir_all(dir.join("c")).unwrap();
    std::fs::rename(dir.join("b/run"), dir.join("c/run")).unwrap();
    std::fs::rename(dir.join("b/data"), dir.join("moved-data")).unwrap();
    assert_eq!(
        evaluation(&elsewhere, "../c/run", Some("../moved-data")),
        other
    );
    ok(
        &xtal_in(
            &elsewhere,
            &[
                "bundle",
                "pack",
                "--run",
                "../c/run",
                "--index",
                "../moved-data",
                "-o",
                "moved.xtal",
            ],
        ),
        "pack",
    );
    // Without data, the run's own is named as missing (exit 2), never silently replaced.
    let out = xtal_in(&elsewhere, &["eval", "clip", "--run", "../c/run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("dataset.jsonl"), "{}", stderr(&out));
}
