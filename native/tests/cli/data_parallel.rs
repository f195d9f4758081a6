//! Data-parallel training: two `xtal train clip` processes on 127.0.0.1 (burn-collective's
//! orchestrator in rank 0, peer-to-peer tensors between them) against one process at the same
//! global batch; exact resume; ranks that disagree stop instead of hanging. The other
//! families (`train property`, `train tensor`, `ssl train`, `ssl bottleneck`) through the same
//! loop and flags.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{epoch_lines, scratch, stderr, train_clip, xtal};

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

/// `args` with `--device cpu,cpu`: two ranks as threads of one process.
fn on_two_devices(mut args: Vec<String>) -> Vec<String> {
    match args.iter().position(|a| a == "--device") {
        Some(i) => args[i + 1] = "cpu,cpu".into(),
        None => args.extend(["--device", "cpu,cpu"].map(String::from)),
    }
    args
}

fn run_ok(name: &str, args: &[String]) {
    let out = xtal(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
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

    // Two ranks as threads of one process (one per device): the two processes' run, bit for
    // bit (the same sums in the same order); stopped and resumed, the same again.
    let threads = dir.join("threads");
    let out = xtal(
        &on_two_devices(sample_clip(&data, &threads))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rank 1 of 2 (one per device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(epoch_lines(&threads), epoch_lines(&dp));
    let threads_resumed = dir.join("threads-resumed");
    let mut args = on_two_devices(sample_clip(&data, &threads_resumed));
    args.extend(["--stop-after", "1"].map(String::from));
    run_ok("threads, stopped", &args);
    let args = [
        "train",
        "clip",
        "--out",
        &s(&threads_resumed),
        "--resume",
        "--no-plots",
    ];
    run_ok(
        "threads, resumed",
        &on_two_devices(args.map(String::from).to_vec()),
    );
    assert_eq!(epoch_lines(&threads_resumed), epoch_lines(&dp));

    // Two processes of two devices each: four ranks of 16, one process's numbers.
    let four = dir.join("four");
    let runs = two_ranks(
        &dir,
        |rank| on_two_devices(sample_clip(&data, if rank == 0 { &four } else { &quiet })),
        limit,
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "process {rank}: {}", r.stderr);
    }
    assert!(runs[1].stderr.contains("rank 3 of 4"), "{}", runs[1].stderr);
    assert!(!quiet.exists(), "process 1 wrote {}", quiet.display());
    let (a, b) = (epochs(&one), epochs(&four));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"], "optimiser steps");
        for key in ["train_loss", "val_loss", "val_mrr_t2g"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(close(x, y, 1e-4), "four ranks: {key} {x} vs {y}");
        }
    }

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

    // Ranks that start apart (another seed) both stop with the reason, neither hangs.
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
            r.stderr.contains(
                "before the first optimiser step, rank 1's parameters differ from rank 0's"
            ),
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
    for (devices, says) in [
        (
            "cpu,cpu,cpu",
            "training.batch_size = 64 does not split evenly over the 3 devices",
        ),
        (
            "cpu,cpu:ndarray",
            "the devices of one run must be of one backend",
        ),
    ] {
        let mut args = sample_clip(&data, &dir.join("bad"));
        let at = args.iter().position(|a| a == "--device").unwrap();
        args[at + 1] = devices.into();
        let out = xtal(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(2), "{devices}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{devices}: {}", stderr(&out));
        assert!(!dir.join("bad").exists(), "{devices}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `args` as one process, then as two ranks (rank 1 given `--out` + "-rank1", which it must
/// not create): both exit 0. The one-process run and rank 0's run directories.
fn one_and_two(dir: &Path, name: &str, args: impl Fn(&Path) -> Vec<String>) -> (PathBuf, PathBuf) {
    let one = dir.join(format!("{name}-one"));
    let out = xtal(&args(&one).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    let (dp, quiet) = (
        dir.join(format!("{name}-dp")),
        dir.join(format!("{name}-rank1")),
    );
    let runs = two_ranks(
        dir,
        |rank| args(if rank == 0 { &dp } else { &quiet }),
        Duration::from_secs(600),
    );
    for (rank, r) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "{name} rank {rank}: {}", r.stderr);
    }
    assert!(
        runs[1].stderr.contains("rank 0 writes the run"),
        "{}",
        runs[1].stderr
    );
    assert!(!quiet.exists(), "{name}: rank 1 wrote {}", quiet.display());
    (one, dp)
}

/// `args` as two ranks in one process (`--device cpu,cpu`) into `{name}-threads`.
fn two_devices(dir: &Path, name: &str, args: impl Fn(&Path) -> Vec<String>) -> PathBuf {
    let out = dir.join(format!("{name}-threads"));
    run_ok(name, &on_two_devices(args(&out)));
    out
}

/// Every epoch's `keys` of two runs' metrics within `tol` (relative), with equal step counts.
fn same_epochs(name: &str, a: &Path, b: &Path, keys: &[&str], tol: f64) {
    let (a, b) = (epochs(a), epochs(b));
    assert!(!a.is_empty(), "{name}: no epochs");
    assert_eq!(a.len(), b.len(), "{name}: epochs");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"], "{name}: optimiser steps");
        for key in keys {
            let (p, q) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                close(p, q, tol),
                "{name} epoch {}: {key} {p} vs {q}",
                x["epoch"]
            );
        }
    }
}

/// Property regression and tensor heads (mean losses: each rank's mean over its half, averaged)
/// train like one process at the same global batch; SSL blocks and the bottleneck train with
/// rank 0 alone writing (SSL ranks mask their halves with streams of their own, so only
/// rank 0's masking is one process's: no equality is claimed there).
#[test]
fn every_family_trains_data_parallel() {
    let dir = scratch("data-parallel-families");
    let data = dir.join("data");
    let out = xtal(&[
        "prepare",
        &s(&repo("data/sample/materials.csv")),
        "-o",
        &s(&data),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let property = |out: &Path| {
        [
            "train",
            "property",
            "--data",
            &s(&data),
            "--target",
            "band_gap",
            "--source",
            "mp40",
            "--out",
            &s(out),
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
        ]
        .map(String::from)
        .to_vec()
    };
    let (one, dp) = one_and_two(&dir, "property", property);
    let threads = two_devices(&dir, "property", property);
    same_epochs("property", &one, &dp, &["train_loss", "val_mae"], 1e-4);
    same_epochs("property", &one, &threads, &["train_loss", "val_mae"], 1e-4);
    assert!(dp.join("summary.json").is_file() && dp.join("plots/parity.png").is_file());

    let tensor_data = dir.join("tensor-data");
    crate::clip::dataset(&tensor_data);
    let clip = dir.join("clip");
    let out = train_clip(&tensor_data, &clip, &["--no-plots"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tensor = |out: &Path| {
        [
            "train",
            "tensor",
            "--clip-run",
            &s(&clip),
            "--out",
            &s(out),
            "--epochs",
            "4",
            "--batch-size",
            "8",
            "--lr",
            "0.01",
            "--no-plots",
            // Each rank draws its own dropout: without it, the one-process numbers.
            "--set",
            "tensor_regression.head_dropout=0",
        ]
        .map(String::from)
        .to_vec()
    };
    let (one, dp) = one_and_two(&dir, "tensor", tensor);
    let threads = two_devices(&dir, "tensor", tensor);
    same_epochs("tensor", &one, &dp, &["train_loss", "val_loss"], 1e-4);
    same_epochs("tensor", &one, &threads, &["train_loss", "val_loss"], 1e-4);
    assert!(dp.join("predictions.csv").is_file());

    let ssl = |out: &Path| {
        [
            "ssl",
            "train",
            "--data",
            &s(&data),
            "--out",
            &s(out),
            "--block",
            "1,2",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--limit",
            "64",
            "--width",
            "16",
            "--layers",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    let (_, dp) = one_and_two(&dir, "ssl", ssl);
    let threads = two_devices(&dir, "ssl", ssl);
    // Two blocks in turn: each rank joins once for both (a rank that left after block 1 and
    // joined again for block 2 found rank 0 unable to host the coordinator a second time).
    for run in [&dp, &threads] {
        for name in ["block1_elements", "block2_lattice"] {
            let block = run.join(name);
            let lines = epochs(&block);
            assert_eq!(lines.len(), 1, "{}", block.display());
            assert_eq!(lines[0]["step"], 4, "64 rows, global batch 16");
            assert!(lines[0]["val_loss"].as_f64().unwrap().is_finite());
            assert!(block.join("checkpoints/best.ckpt").is_file());
            assert!(block.join("summary.json").is_file());
        }
    }

    // The bottleneck over features of the run's data (its seeded random encoders: the run
    // trained two of the six blocks).
    let features = dir.join("features.npy");
    let out = xtal(&[
        "ssl",
        "extract",
        "--run",
        &s(&dp),
        "--random-init",
        "-o",
        &s(&features),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bottleneck = |out: &Path| {
        [
            "ssl",
            "bottleneck",
            "--features",
            &s(&features),
            "--dim",
            "8",
            "--out",
            &s(out),
            "--epochs",
            "2",
            "--batch-size",
            "32",
        ]
        .map(String::from)
        .to_vec()
    };
    let (one, dp) = one_and_two(&dir, "bottleneck", bottleneck);
    let threads = two_devices(&dir, "bottleneck", bottleneck);
    same_epochs("bottleneck", &one, &dp, &["train_loss", "val_loss"], 1e-4);
    same_epochs(
        "bottleneck",
        &one,
        &threads,
        &["train_loss", "val_loss"],
        1e-4,
    );
    assert!(dp.join("features_8.npy").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
