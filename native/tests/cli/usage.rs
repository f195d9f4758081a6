//! The `xtal` binary as a user meets it: help, version, exit codes, device errors.

use std::process::Output;

use crate::common::xtal;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn version_and_help_on_every_subcommand() {
    let version = xtal(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(text(&version).contains(env!("CARGO_PKG_VERSION")));
    for sub in [&[][..], &["devices"], &["bench"], &["cif"], &["prepare"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = xtal(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["no-such-command"][..],
        &["devices", "--no-such-flag"],
        &[],
    ] {
        let out = xtal(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn devices_lists_the_cpu_and_every_backend_state() {
    let out = xtal(&["devices", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["spec"] == "cpu" && r["usable"] == true)
    );
    // A cuda row is always present: either real GPUs, or why there are none.
    let cuda: Vec<_> = rows
        .iter()
        .filter(|r| r["spec"].as_str().unwrap().starts_with("cuda"))
        .collect();
    assert!(!cuda.is_empty());
    for row in cuda.iter().filter(|r| r["usable"] == false) {
        let note = row["note"].as_str().unwrap();
        if cfg!(feature = "cuda") {
            assert!(
                note.contains("CUDA driver") || note.contains("cuInit"),
                "{note}"
            );
        } else {
            assert!(note.contains("--features cuda"), "{note}");
        }
    }
}

#[test]
fn ssl_bench_blocks_outside_1_to_6_are_refused_by_name() {
    for (args, key) in [
        (
            &["bench", "--ssl", "runs/none", "--block", "7"][..],
            "--block",
        ),
        (
            &["bench", "--ssl", "runs/none", "--block", "2,x"][..],
            "--block",
        ),
        (&["bench", "--block", "2"][..], "--ssl"),
    ] {
        let out = xtal(args);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {msg}");
        assert!(
            msg.contains(key) && !msg.contains("panicked"),
            "{args:?}: {msg}"
        );
    }
}

#[test]
fn unknown_or_unavailable_devices_are_clear_errors_with_exit_2() {
    let out = xtal(&["bench", "--device", "tpu", "--seconds", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("unknown device `tpu`") && msg.contains("available here: cpu"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");

    let out = xtal(&["bench", "--device", "cuda:0,cuda:1", "--seconds", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("run one process per device"),
        "{}",
        text(&out)
    );

    let has_cuda_driver = [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    if !has_cuda_driver {
        let out = xtal(&["bench", "--device", "cuda", "--seconds", "0"]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(2), "{msg}");
        assert!(!msg.contains("panicked"), "{msg}");
        if cfg!(feature = "cuda") {
            assert!(msg.contains("no CUDA driver on this machine"), "{msg}");
        } else {
            assert!(msg.contains("not compiled into this build"), "{msg}");
        }
    }
}

#[test]
fn devices_check_passes_on_every_usable_device() {
    let out = xtal(&["devices", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("check ok"), "{msg}");
    assert!(
        !msg.contains("MISMATCH") && !msg.contains("FAILED"),
        "{msg}"
    );
}
