//! Running the built `xtal` binary the way a user does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn xtal(args: &[&str]) -> Output {
    xtal_in(Path::new("."), args)
}

/// `xtal` run from the directory `cwd`.
pub fn xtal_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtal"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .expect("xtal runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CLIP small enough to train in a second or two.
pub const TINY_CLIP: &[&str] = &[
    "--set",
    "model.text_width=32",
    "--set",
    "model.text_layers=1",
    "--set",
    "model.text_heads=2",
    "--set",
    "model.max_seq_length=48",
    "--set",
    "model.clip_dim=16",
    "--set",
    "training.val_split=0.25",
    "--set",
    "training.log_interval=1",
    "--batch-size",
    "8",
    "--epochs",
    "3",
];

/// A fresh scratch directory for one test, unique to this test process.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first 48 sample materials as a CSV, and two of their CIFs as files.
pub fn materials(dir: &Path) -> (PathBuf, Vec<(String, PathBuf)>) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/materials.csv");
    let mut reader = csv::Reader::from_path(src).unwrap();
    let headers = reader.headers().unwrap().clone();
    let (id, cif) = (
        headers.iter().position(|h| h == "id").unwrap(),
        headers.iter().position(|h| h == "cif").unwrap(),
    );
    let out = dir.join("materials.csv");
    let mut writer = csv::Writer::from_path(&out).unwrap();
    writer.write_record(&headers).unwrap();
    let mut cifs = Vec::new();
    for (i, row) in reader.records().take(48).enumerate() {
        let row = row.unwrap();
        writer.write_record(&row).unwrap();
        if i == 30 || i == 41 {
            let path = dir.join(format!("{}.cif", &row[id]));
            std::fs::write(&path, &row[cif]).unwrap();
            cifs.push((row[id].to_string(), path));
        }
    }
    writer.flush().unwrap();
    (out, cifs)
}

/// A run's metric lines, without the seconds each epoch took (the rest is deterministic).
pub fn epoch_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// `xtal train clip` on `data` into `out` with the tiny model and `extra` arguments.
pub fn train_clip(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "clip",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(TINY_CLIP);
    args.extend_from_slice(extra);
    xtal(&args)
}
