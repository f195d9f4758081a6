//! `xtal devices`: what this build can compute on, optionally proving each device works.

use anyhow::Context;
use xtal_core::check::{LinearStepCase, LinearStepResult, linear_step};
use xtal_core::device::{DeviceInfo, OnDevice, available_devices, run_on};

#[derive(clap::Args)]
pub struct Args {
    /// Run a small forward/backward/optimiser check on every usable device and compare with the CPU.
    #[arg(long)]
    check: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The built-in check case: deterministic, no files needed.
fn builtin_case() -> LinearStepCase {
    let (batch, in_features, out_features) = (4, 8, 3);
    let wave = |n: usize, scale: f32, phase: f32| -> Vec<f32> {
        (0..n)
            .map(|k| scale * ((k as f32) * 0.731 + phase).sin())
            .collect()
    };
    LinearStepCase {
        batch,
        in_features,
        out_features,
        input: wave(batch * in_features, 1.0, 0.1),
        target: wave(batch * out_features, 0.8, 0.7),
        weight: wave(in_features * out_features, 0.3, 1.3),
        bias: wave(out_features, 0.1, 2.1),
        learning_rate: 0.1,
    }
}

struct Check<'a>(&'a LinearStepCase);

impl OnDevice for Check<'_> {
    type Output = anyhow::Result<LinearStepResult>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        Ok(linear_step::<B>(self.0, &device)?.read()?)
    }
}

/// How far a device's check may land from the CPU's. CPU backends agree to rounding; GPU
/// kernels round differently (tensor-core matrix products, fused and reordered reductions):
/// an H200 landed 2.3e-4 from the CPU on this check.
fn tolerance(spec: &str) -> f32 {
    if spec.starts_with("cpu") { 1e-4 } else { 1e-3 }
}

#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    info: DeviceInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_max_abs_diff_vs_cpu: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_tolerance: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut rows: Vec<Row> = available_devices()
        .into_iter()
        .map(|info| Row {
            info,
            check_max_abs_diff_vs_cpu: None,
            check_tolerance: None,
            check_error: None,
        })
        .collect();
    let mut failed = 0;
    if args.check {
        let case = builtin_case();
        let reference = run_on(
            &xtal_core::device::DeviceSpec::Cpu(xtal_core::device::CpuBackend::NdArray),
            Check(&case),
        )?
        .context("the check failed on the CPU")?;
        for row in rows.iter_mut().filter(|r| r.info.usable) {
            let spec = super::one_device(&row.info.spec)?;
            match run_on(&spec, Check(&case))
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
            {
                Ok(result) => {
                    let diff = result.max_abs_diff(&reference);
                    let allowed = tolerance(&row.info.spec);
                    if diff.is_nan() || diff > allowed {
                        failed += 1;
                    }
                    row.check_max_abs_diff_vs_cpu = Some(diff);
                    row.check_tolerance = Some(allowed);
                }
                Err(e) => {
                    failed += 1;
                    row.check_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    if failed > 0 {
        anyhow::bail!("{failed} device(s) failed the check (see the table above)");
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<12} {:<6} {:<40} {:<28} note",
        "device", "usable", "name", "backend"
    );
    for row in rows {
        let mut note = row.info.note.clone().unwrap_or_default();
        if let (Some(diff), Some(allowed)) = (row.check_max_abs_diff_vs_cpu, row.check_tolerance) {
            let verdict = if diff <= allowed { "ok" } else { "MISMATCH" };
            note = format!(
                "check {verdict}: max |diff| vs cpu {diff:.1e} (tolerance {allowed:.0e}){}{note}",
                if note.is_empty() { "" } else { "; " }
            );
        }
        if let Some(error) = &row.check_error {
            note = format!("check FAILED: {error}");
        }
        println!(
            "{:<12} {:<6} {:<40} {:<28} {}",
            row.info.spec,
            if row.info.usable { "yes" } else { "no" },
            row.info.name,
            row.info.backend,
            note
        );
    }
}
