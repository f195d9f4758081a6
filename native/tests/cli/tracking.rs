//! Experiment tracking read back by the real tools: TensorBoard's own event reader finds every
//! figure of `metrics.jsonl`, and an MLflow server started here on 127.0.0.1 holds the run's
//! parameters, metric histories, plots and best checkpoint, across a resume. The Python with
//! `tensorboard` and `mlflow` is tests/setup.sh's (`XTAL_TRACKING_PYTHON`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clip::dataset;
use crate::common::{scratch, stderr, train_clip, xtal};

fn tracking_python() -> Option<PathBuf> {
    match std::env::var_os("XTAL_TRACKING_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var("CI").is_err(),
                "XTAL_TRACKING_PYTHON unset under CI=true: tests/setup.sh makes it"
            );
            eprintln!("SKIPPED: XTAL_TRACKING_PYTHON unset (eval \"$(bash tests/setup.sh)\")");
            None
        }
    }
}

fn python_json(python: &Path, script: &str, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every figure of the metric lines as `kind/key` → {step: value}.
fn figures(run: &Path) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for line in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let (kind, step) = (v["kind"].as_str().unwrap(), v["step"].as_i64().unwrap());
        for (k, x) in v.as_object().unwrap() {
            if let (false, Some(x)) = (k == "kind" || k == "step", x.as_f64()) {
                out.entry(format!("{kind}/{k}"))
                    .or_default()
                    .insert(step, x);
            }
        }
    }
    out
}

fn assert_same_figures(
    found: &BTreeMap<String, BTreeMap<i64, f64>>,
    expected: &BTreeMap<String, BTreeMap<i64, f64>>,
    tolerance: f64,
    what: &str,
) {
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: tags"
    );
    for (tag, series) in expected {
        let got = &found[tag];
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            series.keys().collect::<Vec<_>>(),
            "{what}: steps of {tag}"
        );
        for (step, x) in series {
            let y = got[step];
            assert!(
                (x - y).abs() <= tolerance * x.abs().max(1e-3),
                "{what}: {tag} at step {step}: {y} vs {x} in metrics.jsonl"
            );
        }
    }
}

/// As a map tag → {step: value}, from `[[step, value], ...]` per tag.
fn series(v: &Value) -> BTreeMap<String, BTreeMap<i64, f64>> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (tag.clone(), points)
        })
        .collect()
}

/// TensorBoard's reader over the run's event files: scalars per tag, image tags.
const READ_TENSORBOARD: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)]
               for t in tags["images"]},
}))
"#;

/// The MLflow client's view of a run: status, name, parameters, metric histories, artifact
/// paths, and where `checkpoints/best.ckpt` was downloaded.
const READ_MLFLOW: &str = r#"
import json, sys
from mlflow.tracking import MlflowClient
uri, run_id, dst = sys.argv[1:4]
client = MlflowClient(tracking_uri=uri)
run = client.get_run(run_id)
def walk(path=None):
    out = []
    for a in client.list_artifacts(run_id, path):
        out += walk(a.path) if a.is_dir else [a.path]
    return out
print(json.dumps({
    "status": run.info.status,
    "name": run.info.run_name,
    "experiment": client.get_experiment(run.info.experiment_id).name,
    "params": run.data.params,
    "metrics": {k: [[m.step, m.value] for m in client.get_metric_history(run_id, k)]
                for k in run.data.metrics},
    "artifacts": walk(),
    "best": client.download_artifacts(run_id, "checkpoints/best.ckpt", dst),
}))
"#;

/// An `mlflow server` on a free port of 127.0.0.1, stopped (with its workers) when dropped.
struct MlflowServer {
    child: Child,
    uri: String,
}

impl MlflowServer {
    fn start(python: &Path, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        use std::os::unix::process::CommandExt;
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("mlflow server starts");
        let server = Self {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "mlflow server did not listen: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }
}

impl Drop for MlflowServer {
    /// SIGTERM to the server's process group (its uvicorn and job workers), SIGKILL if it
    /// has not gone in 20 s. (Not through `kill(1)`: procps-ng 4.0.2's takes `-PGID` amiss.)
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        unsafe { libc::kill(group, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn tensorboard_and_mlflow_hold_what_metrics_jsonl_holds_across_a_resume() {
    let Some(python) = tracking_python() else {
        return;
    };
    let dir = scratch("tracking");
    let data = dir.join("data");
    dataset(&data);
    let server = MlflowServer::start(&python, &dir.join("mlflow"));
    let uri = server.uri.as_str();

    // A server that is not there: exit 2 naming it, and no run directory left behind.
    let nowhere = dir.join("nowhere");
    let out = train_clip(&data, &nowhere, &["--mlflow", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );
    assert!(!nowhere.exists());

    // Interrupted after epoch 1 and resumed: one MLflow run, continued.
    let run = dir.join("run");
    let tracking = [
        "--tensorboard",
        "--mlflow",
        uri,
        "--mlflow-experiment",
        "xtal tests",
        "--set",
        "training.use_wandb=true",
    ];
    let first: Vec<&str> = tracking
        .iter()
        .copied()
        .chain(["--stop-after", "1"])
        .collect();
    let out = train_clip(&data, &run, &first);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("Weights & Biases")
            && warning.contains("--tensorboard")
            && warning.contains("--mlflow"),
        "{warning}"
    );
    let record = |run: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap()
    };
    let run_id = record(&run)["run_id"].as_str().unwrap().to_string();
    let mut resumed = vec!["train", "clip", "--out", run.to_str().unwrap(), "--resume"];
    resumed.extend(&tracking[..5]);
    let out = xtal(&resumed);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(record(&run)["run_id"], run_id.as_str());

    let expected = figures(&run);
    assert!(expected.contains_key("step/loss") && expected.contains_key("epoch/val_r10_g2t"));
    assert_eq!(expected["epoch/val_loss"].len(), 3);

    // TensorBoard: scalars as float32, plots as images.
    let board = python_json(
        &python,
        READ_TENSORBOARD,
        &[run.join("tensorboard").to_str().unwrap()],
    );
    assert_same_figures(&series(&board["scalars"]), &expected, 1e-6, "tensorboard");
    let images = board["images"].as_object().unwrap();
    let pngs: Vec<_> = std::fs::read_dir(run.join("plots"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(!pngs.is_empty());
    for png in &pngs {
        let tag = format!(
            "plots/{}",
            png.path().file_stem().unwrap().to_str().unwrap()
        );
        // The latest image of the tag: the resumed run's plots.
        let found = images
            .get(&tag)
            .and_then(|i| i.as_array()?.last())
            .unwrap_or_else(|| panic!("no image {tag}: {images:?}"));
        assert_eq!(found[2].as_u64().unwrap(), png.metadata().unwrap().len());
    }

    // MLflow, through its own client.
    std::fs::create_dir_all(dir.join("download")).unwrap();
    let got = python_json(
        &python,
        READ_MLFLOW,
        &[uri, &run_id, dir.join("download").to_str().unwrap()],
    );
    assert_eq!(got["status"], "FINISHED");
    assert_eq!(got["name"], "run");
    assert_eq!(got["experiment"], "xtal tests");
    assert_eq!(got["params"]["training.batch_size"], "8");
    assert_eq!(got["params"]["model.clip_dim"], "16");
    assert_same_figures(&series(&got["metrics"]), &expected, 1e-12, "mlflow");
    let artifacts: Vec<&str> = got["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for name in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/best.ckpt",
    ] {
        assert!(artifacts.contains(&name), "{name} not in {artifacts:?}");
    }
    for png in &pngs {
        let name = format!("plots/{}", png.file_name().to_str().unwrap());
        assert!(
            artifacts.contains(&name.as_str()),
            "{name} not in {artifacts:?}"
        );
    }
    assert_eq!(
        std::fs::read(got["best"].as_str().unwrap()).unwrap(),
        std::fs::read(run.join("checkpoints/best.ckpt")).unwrap()
    );
}
