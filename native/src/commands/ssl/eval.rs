//! `xtal ssl eval`: the evaluation scenarios (`xtal_core::train::ssl_probes`) of the SSL
//! features on labelled rows of a prepared dataset, each target taken from one source
//! (properties mean different things per source); this file picks the rows, extracts the
//! features and writes report.json, report.md and the plots.
//!
//! Rows are matched by index into one `SslData`, never by file order.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args as ClapArgs;
use serde_json::Value;
use xtal_core::data::seeded_shuffle;
use xtal_core::models::ftcp_ssl::FEATURE_DIM;
use xtal_core::train::ssl_probes::{
    PROBE_SETS, ProbeSettings, Scores, Set, Sets, SplitResult, TargetReport, evaluate_target,
    mean_sd, scaled_flat,
};

use super::extract::{OtherData, extract_features};
use super::run_info::SslRunInfo;
use crate::exit::BadInput;
use crate::plots::{self, Bars, Curves};
use crate::run_dir::RunDir;

#[derive(ClapArgs)]
pub struct EvalArgs {
    /// A trained SSL run.
    #[arg(long)]
    run: PathBuf,
    /// A labelled dataset from `xtal prepare` (default: the run's own data).
    #[command(flatten)]
    other: OtherData,
    /// Report directory: report.json, report.md, plots/.
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long)]
    force: bool,
    /// `property@source` (repeatable); `property` alone when one source has it.
    #[arg(long = "target", default_values = ["band_gap@mp40", "heat_ref@perov5"])]
    targets: Vec<String>,
    /// At most this many rows per target (a seeded sample): ridge on flat FTCP solves an
    /// n × n system per fold.
    #[arg(long, default_value_t = 1500)]
    max_rows: usize,
    /// Seeded train/test splits per ratio in scenario 1; the report gives their mean, their
    /// spread and the paired differences (one split of a few hundred rows is too noisy to rank
    /// representations).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    repeats: u64,
    /// Cross-validation folds for the ridge alpha.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let info = SslRunInfo::load(&args.run)?;
    let loaded = args.other.source(&info).load(Some(&info.normalizer))?;
    // `property@source`, or `property` alone when its rows all come from one source.
    let targets: Vec<(String, Option<String>)> = args
        .targets
        .iter()
        .map(|t| match t.split_once('@') {
            Some((p, s)) => (p.to_string(), Some(s.to_string())),
            None => (t.clone(), None),
        })
        .collect();
    if args.max_rows < 20 || args.folds < 2 {
        return Err(
            BadInput("--max-rows must be at least 20 and --folds at least 2".into()).into(),
        );
    }
    // Each target's rows (indices into the data), a seeded sample of at most max_rows.
    let mut per_target = Vec::new();
    for (prop, source) in &targets {
        let source_of = |r: &Value| {
            r.get("source")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut sources = std::collections::BTreeSet::new();
        let mut rows: Vec<(usize, f64)> = loaded
            .records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.as_ref()?;
                let row_source = source_of(r);
                if source.as_ref().is_some_and(|s| *s != row_source) {
                    return None;
                }
                let y = r.get("properties")?.get(prop)?.as_f64()?;
                sources.insert(row_source);
                y.is_finite().then_some((i, y))
            })
            .collect();
        if source.is_none() && sources.len() > 1 {
            return Err(BadInput(format!(
                "--target {prop}: its rows come from several sources ({}), where it need not mean the same; use {prop}@SOURCE",
                sources.into_iter().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        let source = source
            .clone()
            .or_else(|| sources.into_iter().next())
            .unwrap_or_default();
        let available = rows.len();
        if available < 20 {
            return Err(BadInput(format!(
                "--target {prop}: {available} rows with an FTCP tensor and a finite {prop}; need at least 20"
            ))
            .into());
        }
        seeded_shuffle(&mut rows, args.seed);
        rows.truncate(args.max_rows);
        rows.sort_by_key(|r| r.0);
        per_target.push((prop.clone(), source, rows, available));
    }
    let run = RunDir::new(&args.out);
    if run.path.exists() && !args.force {
        run.create(false, "")?; // refuses a non-empty report before the slow extraction
    }
    let mut union: Vec<usize> = per_target
        .iter()
        .flat_map(|t| t.2.iter().map(|r| r.0))
        .collect();
    union.sort_unstable();
    union.dedup();
    eprintln!(
        "extracting SSL and random-init features of {} rows",
        union.len()
    );
    let ssl = extract_features(
        &args.run,
        &info,
        &loaded.data,
        &union,
        false,
        args.batch_size,
        &args.device,
    )?;
    let control = extract_features(
        &args.run,
        &info,
        &loaded.data,
        &union,
        true,
        args.batch_size,
        &args.device,
    )?;
    // Created only now: a run whose blocks cannot be read leaves no empty report behind.
    run.create(args.force, "")?;
    let row_of = |i: usize| union.binary_search(&i).unwrap_or(0);
    let mut reports = Vec::new();
    for (prop, source, rows, available) in per_target {
        let started = Instant::now();
        eprintln!("{prop}@{source}: {} rows", rows.len());
        let slice = |m: &[f32], i: usize| -> Vec<f64> {
            let k = row_of(i);
            m[k * FEATURE_DIM..(k + 1) * FEATURE_DIM]
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        let sets = Sets {
            ftcp: rows
                .iter()
                .map(|r| scaled_flat(&loaded.data, r.0))
                .collect(),
            ssl: rows.iter().map(|r| slice(&ssl, r.0)).collect(),
            control: rows.iter().map(|r| slice(&control, r.0)).collect(),
        };
        let y: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let settings = ProbeSettings {
            repeats: args.repeats,
            folds: args.folds,
            seed: args.seed,
        };
        let mut report = evaluate_target(
            &sets,
            &y,
            &settings,
            &prop,
            &source,
            available,
            &mut |line| eprintln!("{line}"),
        )?;
        report.seconds = started.elapsed().as_secs_f64();
        plot_target(&report, &run)?;
        reports.push(report);
    }
    run.write_json(
        "report.json",
        &serde_json::json!({"run": args.run, "targets": reports}),
    )?;
    let md = markdown(&reports);
    crate::output::write_atomic(&run.file("report.md"), md.as_bytes())?;
    println!("{md}");
    eprintln!("report: {}", run.path.display());
    Ok(())
}

fn plot_target(r: &TargetReport, run: &RunDir) -> anyhow::Result<()> {
    let dir = run.plots();
    let name = if r.source.is_empty() {
        r.target.clone()
    } else {
        format!("{}_{}", r.target, r.source)
    };
    let sets: Vec<&str> = r.scenario1[0]
        .probes
        .iter()
        .filter(|p| p.probe.starts_with("ridge"))
        .map(|p| p.set)
        .collect();
    let series = |metric: fn(&Scores) -> f64| {
        sets.iter()
            .map(|s| {
                let points = r
                    .scenario1
                    .iter()
                    .filter_map(|split| {
                        let p = split
                            .probes
                            .iter()
                            .find(|p| p.set == *s && p.probe.starts_with("ridge"))?;
                        Some((split.train_percent, metric(&p.test)))
                    })
                    .collect();
                (format!("ridge on {s}"), points)
            })
            .collect::<Vec<_>>()
    };
    plots::save(
        &Curves {
            title: format!("Scenario 1 — {}@{}: ridge probes", r.target, r.source),
            x_label: "training share (%)".into(),
            y_label: "test MAE".into(),
            series: series(|s| s.mae),
            references: vec![],
        },
        &dir,
        &format!("scenario1_{name}"),
    )?;
    plots::save(
        &Bars {
            title: format!(
                "Scenario 2 — {}@{}: hybrid ridge attribution",
                r.target, r.source
            ),
            y_label: "share".into(),
            categories: r
                .scenario2
                .groups
                .iter()
                .map(|g| g.group.to_string())
                .collect(),
            series: vec![
                (
                    "columns".into(),
                    r.scenario2.groups.iter().map(|g| g.column_share).collect(),
                ),
                (
                    "|SHAP|".into(),
                    r.scenario2.groups.iter().map(|g| g.shap_share).collect(),
                ),
            ],
        },
        &dir,
        &format!("scenario2_{name}"),
    )?;
    let few: Vec<(String, Vec<(f64, f64)>)> = PROBE_SETS
        .iter()
        .map(|set| {
            let s = set.name();
            let points = r
                .scenario3
                .iter()
                .filter_map(|f| {
                    Some((
                        f.percent.log10(),
                        f.results.iter().find(|x| x.0 == s)?.1.mae,
                    ))
                })
                .collect();
            (s.to_string(), points)
        })
        .collect();
    plots::save(
        &Curves {
            title: format!("Scenario 3 — {}@{}: sample efficiency", r.target, r.source),
            x_label: "share of the training rows, log10 (%): 1 = 10 %, 2 = 100 %".into(),
            y_label: "test MAE".into(),
            series: few,
            references: vec![],
        },
        &dir,
        &format!("scenario3_{name}"),
    )?;
    Ok(())
}

fn markdown(reports: &[TargetReport]) -> String {
    let mut md = String::from(
        "# SSL feature evaluation\n\n\
         Probe inputs: FTCP keeps its row min–max scaling (columns centred only), learned \
         features are standardised per column, and the hybrid scales its FTCP part by one \
         factor to the SSL part's mean column variance; every statistic comes from the \
         training rows. With fewer training rows than 2048, PCA-2048 keeps every direction, \
         a rotation under which the centred ridge is unchanged: it then equals flat FTCP.\n",
    );
    for r in reports {
        md += &format!(
            "\n## {}@{} ({} rows{})\n\n### Scenario 1: linear probes (test MAE ± sd / RMSE / R², mean of {} seeded splits per ratio)\n\n| split | features | probe | alpha | MAE | RMSE | R² |\n|---|---|---|---|---|---|---|\n",
            r.target,
            r.source,
            r.rows,
            if r.rows < r.available {
                format!(", a seeded sample of {}", r.available)
            } else {
                String::new()
            },
            r.repeats
        );
        for s in &r.scenario1 {
            for p in &s.probes {
                md += &format!(
                    "| {:.0}/{:.0} | {} | {} | {} | {:.4} ± {:.4} | {:.4} | {:.3} |\n",
                    s.train_percent,
                    100.0 - s.train_percent,
                    p.set,
                    p.probe,
                    if p.alpha > 0.0 {
                        format!("{:.2e}", p.alpha)
                    } else {
                        "–".into()
                    },
                    p.test.mae,
                    p.test_std.mae,
                    p.test.rmse,
                    p.test.r2
                );
            }
        }
        // The verdicts the report must state honestly: per ratio (means), and paired over
        // every split (both probes saw the same rows).
        let verdict = |a: &str, b: &str| {
            let ridge_of = |s: &SplitResult, set: &str| {
                s.probes
                    .iter()
                    .find(|p| p.set == set && p.probe.starts_with("ridge"))
                    .map(|p| (p.test.mae, p.mae_per_repeat.clone()))
                    .unwrap_or((f64::NAN, Vec::new()))
            };
            let mut wins = 0;
            let mut differences = Vec::new();
            for s in &r.scenario1 {
                let ((mean_a, runs_a), (mean_b, runs_b)) = (ridge_of(s, a), ridge_of(s, b));
                wins += usize::from(mean_a < mean_b);
                differences.extend(runs_a.iter().zip(&runs_b).map(|(x, y)| x - y));
            }
            let (mean, sd) = mean_sd(&differences);
            let paired = differences.iter().filter(|d| **d < 0.0).count();
            format!(
                "{a} has the lower mean ridge MAE than {b} at {wins} of {} ratios, and in \
                 {paired} of {} paired splits (MAE difference {mean:+.4} ± {sd:.4})",
                r.scenario1.len(),
                differences.len()
            )
        };
        md += &format!(
            "\n{}.\n{}.\n{}.\n",
            verdict(Set::Ssl.name(), Set::Control.name()),
            verdict(Set::Ssl.name(), Set::FtcpPca.name()),
            verdict(Set::Ssl.name(), Set::Ftcp.name())
        );
        let b = &r.block_swaps;
        md += &format!(
            "\n#### Which block moves the probe (ridge MAE, 80/20, mean of {} splits; SSL {:.4}, control {:.4})\n\n| block | SSL with this block from the control | change | control with this block from SSL | change |\n|---|---|---|---|---|\n",
            r.repeats, b.ssl, b.control
        );
        for s in &b.blocks {
            md += &format!(
                "| {} {} | {:.4} | {:+.4} | {:.4} | {:+.4} |\n",
                s.block,
                s.name,
                s.ssl_with_control_block,
                s.ssl_with_control_block - b.ssl,
                s.control_with_ssl_block,
                s.control_with_ssl_block - b.control
            );
        }
        md += &format!(
            "\n### Scenario 2: hybrid FTCP + SSL ridge (80/20; test R² {:.3}, MAE {:.4})\n\n| group | columns | column share | |SHAP| share | enrichment | permutation R² drop |\n|---|---|---|---|---|---|\n",
            r.scenario2.test.r2, r.scenario2.test.mae
        );
        for g in &r.scenario2.groups {
            md += &format!(
                "| {} | {} | {:.2} % | {:.2} % | {:.2}× | {:.4} |\n",
                g.group,
                g.columns,
                100.0 * g.column_share,
                100.0 * g.shap_share,
                g.enrichment,
                g.permutation_r2_drop
            );
        }
        md += "\n### Scenario 3: sample efficiency (80/20 test rows; ridge, test MAE, mean of 3 draws below 100 %)\n\n| training rows | ";
        let names: Vec<&str> = PROBE_SETS.iter().map(|s| s.name()).collect();
        md += &names.join(" | ");
        md += " |\n|---|";
        md += &"---|".repeat(names.len());
        md += "\n";
        for f in &r.scenario3 {
            md += &format!("| {:.0} % ({}) |", f.percent, f.train_rows);
            if f.skipped.is_some() {
                md += &" too few rows |".repeat(names.len());
            }
            for (_, s) in &f.results {
                md += &format!(" {:.4} |", s.mae);
            }
            md += "\n";
        }
    }
    md
}
