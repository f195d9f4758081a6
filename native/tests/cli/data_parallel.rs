//! Data-parallel training: two `xtal train clip` processes on 127.0.0.1 (burn-collective's
//! orchestrator in rank 0, peer-to-peer tensors between them) against one process at the same
//! global batch; exact resume; ranks that disagree stop instead of hanging.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{epoch_lines, scratch, stderr, xtal};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The sample CLIP of the README's main job, two epochs, on `data` into `out`.
fn sample_clip(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "clip",
        "--config",
        &s(&repo("configs/sample_clip.json")),
        "--data",
        &s(data),
        "--out",
        &s(out),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-plots",
    ]
    .map(String::from)
    .to_vec()
}

/// Ports free on 127.0.0.1 now (held together so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct RankRun {
    code: Option<i32>,
    stderr: String,
}

/// Two ranks of `args(rank)` with a fresh coordinator on 127.0.0.1; a rank still running
/// after `limit` is killed (a hung rank fails the test instead of hanging it).
fn two_ranks(dir: &Path, args: impl Fn(usize) -> Vec<String>, limit: Duration) -> Vec<RankRun> {
    let ports = free_ports(3);
    let coordinator = format!("127.0.0.1:{}", ports[0]);
    let mut children: Vec<(Child, PathBuf)> = (0..2)
        .map(|rank| {
            let log = dir.join(format!("rank{rank}-{}.log", ports[0]));
            let mut a = args(rank);
            a.extend(
                [
                    "--nodes",
                    "2",
                    "--node-rank",
                    &rank.to_string(),
                    "--coordinator",
                    &coordinator,
                    "--node-address",
                    &format!("127.0.0.1:{}", ports[1 + rank]),
                ]
                .map(String::from),
            );
            let child = Command::new(env!("CARGO_BIN_EXE_xtal"))
                .args(&a)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    let start = Instant::now();
    let mut codes = vec![None; 2];
    while codes.iter().any(Option::is_none) && start.elapsed() < limit {
        for (i, (child, _)) in children.iter_mut().enumerate() {
            if codes[i].is_none()
                && let Some(status) = child.try_wait().unwrap()
            {
                codes[i] = Some(status.code());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    children
        .iter_mut()
        .zip(codes)
        .map(|((child, log), code)| {
            // Still running at the limit: killed, and no exit code.
            let code = code.unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                None
            });
            RankRun {
                code,
                stderr: std::fs::read_to_string(log).unwrap_or_default(),
            }
        })
        .collect()
}

fn epochs(run: &Path) -> Vec<Value> {
    epoch_lines(run)
        .into_iter()
        .filter(|l| l["kind"] == "epoch")
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs())
}

#[test]
fn two_ranks_train_like_one_process_resume_exactly_and_stop_together() {
    let dir = scratch("data-parallel");
    let data = dir.join("data");
    let out = xtal(&[
        "prepare",
        &s(&repo("data/sample/materials.csv")),
        "-o",
        &s(&data),
        "--text-column",
        "description",
        "--text-column",
        "caption",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let limit = Duration::from_secs(600);

    // One process, global batch 64.
    let one = dir.join("one");
    let out = xtal(
        &sample_clip(&data, &one)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Two ranks of 32 each; rank 1 is given its own --out, which it must not write.
    let (dp, quiet) = (dir.join("dp"), dir.join("dp-rank1"));
    let runs = two_ranks(
        &dir,
        |rank| sample_clip(&data, if rank == 0 { &dp } else { &quiet }),
        limit,
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "rank {rank}: {}", r.stderr);
    }
    assert!(runs[0].stderr.contains("rank 0 of 2"), "{}", runs[0].stderr);
    assert!(!quiet.exists(), "rank 1 wrote {}", quiet.display());
    let (a, b) = (epochs(&one), epochs(&dp));
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"], "optimiser steps");
        for key in ["train_loss", "val_loss", "val_mrr_t2g", "val_logit_scale"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                close(x, y, 1e-4),
                "epoch {}: {key} {x} vs {y}",
                a[0]["epoch"]
            );
        }
    }
    // The checkpoints and the summary are rank 0's, as of a one-process run.
    assert!(dp.join("checkpoints/best.ckpt").is_file());
    assert!(dp.join("summary.json").is_file());

    // Stopped after epoch 1 and resumed by both ranks: the uninterrupted run, line for line.
    let resumed = dir.join("resumed");
    let runs = two_ranks(
        &dir,
        |_| {
            let mut a = sample_clip(&data, &resumed);
            a.extend(["--stop-after", "1"].map(String::from));
            a
        },
        limit,
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "rank {rank}: {}", r.stderr);
    }
    assert_eq!(epochs(&resumed).len(), 1);
    let runs = two_ranks(
        &dir,
        |_| {
            [
                "train",
                "clip",
                "--out",
                &s(&resumed),
                "--resume",
                "--device",
                "cpu",
                "--no-plots",
            ]
            .map(String::from)
            .to_vec()
        },
        limit,
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "rank {rank}: {}", r.stderr);
    }
    assert_eq!(epoch_lines(&resumed), epoch_lines(&dp));

    // Ranks whose parameters part (another seed) both stop with the reason, neither hangs.
    let runs = two_ranks(
        &dir,
        |rank| {
            let mut a = sample_clip(&data, &dir.join(format!("parted{rank}")));
            a.extend(["--seed", if rank == 0 { "1" } else { "2" }].map(String::from));
            a
        },
        limit,
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(1), "rank {rank}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("after optimiser step 1, rank 1's parameters differ from rank 0's"),
            "rank {rank}: {}",
            r.stderr
        );
    }

    // Settings that cannot work are refused before any rank waits for another.
    let mut args = sample_clip(&data, &dir.join("bad"));
    args.extend(["--nodes", "2"].map(String::from));
    let out = xtal(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--node-rank"), "{}", stderr(&out));
    let mut args = sample_clip(&data, &dir.join("bad"));
    args.extend(
        [
            "--nodes",
            "3",
            "--node-rank",
            "0",
            "--coordinator",
            "127.0.0.1:1",
        ]
        .map(String::from),
    );
    let out = xtal(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("training.batch_size = 64 does not split evenly over --nodes 3"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("bad").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
