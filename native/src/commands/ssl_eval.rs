//! `xtal ssl eval`: the three evaluation scenarios of the SSL features on labelled rows of a
//! prepared dataset, each target taken from one source (properties mean different things per
//! source).
//!
//! 1. Linear probes at train/test splits 90/10 … 60/40: ridge with a cross-validated alpha and
//!    minimum-norm least squares, on flat FTCP (25,200), FTCP → PCA-2048 (fitted on the
//!    training rows), the SSL features and the same encoders at random initialisation.
//! 2. Hybrid FTCP + SSL ridge at 80/20: each group's share of the exact linear SHAP
//!    attribution and its permutation importance, with the enrichment ratio
//!    (attribution share ÷ share of the columns).
//! 3. Sample efficiency: the probes trained on 1 %, 5 %, 10 % and 100 % of the training rows
//!    (a share of fewer than 10 rows is left out, with the reason).
//!
//! Rows are matched by index into one `SslData`, never by file order.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args as ClapArgs;
use serde::Serialize;
use serde_json::Value;
use xtal_core::data::{SeededRng, seeded_shuffle};
use xtal_core::models::ftcp_ssl::{BlockKind, FEATURE_DIM};
use xtal_core::train::pca::fit_pca;
use xtal_core::train::ridge::{LinearModel, RidgePath, Scaling, cross_validate, log_alphas};
use xtal_core::train::ssl::SslData;

use super::ssl::{OtherData, SslRunInfo, extract_features};
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

const TEST_FRACTIONS: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
const FEW_SHOT: [f64; 4] = [0.01, 0.05, 0.10, 1.0];
const FEW_SHOT_REPEATS: usize = 3;
/// Below this many training rows a few-shot point is left out, not reported: a ridge over
/// 2048 columns cross-validated on a handful of rows gave MAEs far above the targets' range.
const FEW_SHOT_MIN_ROWS: usize = 10;
/// The sets the scenario-1 and few-shot probes compare.
const PROBE_SETS: [Set; 4] = [Set::Ftcp, Set::FtcpPca, Set::Ssl, Set::Control];
const PERMUTATION_REPEATS: usize = 5;

#[derive(Debug, Clone, Copy, Serialize)]
struct Scores {
    mae: f64,
    rmse: f64,
    r2: f64,
}

fn scores(pred: &[f64], truth: &[f64]) -> Scores {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let sse: f64 = pred.iter().zip(truth).map(|(p, t)| (p - t).powi(2)).sum();
    let sst: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    Scores {
        mae: pred
            .iter()
            .zip(truth)
            .map(|(p, t)| (p - t).abs())
            .sum::<f64>()
            / n,
        rmse: (sse / n).sqrt(),
        r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
    }
}

/// Rows of features.
type Matrix = Vec<Vec<f64>>;
/// A probe's rows: borrowed from a feature set, or built for it (PCA coordinates, the hybrid).
type Rows<'a> = Vec<Cow<'a, [f64]>>;

/// The feature sets, each a row-major matrix over the target's rows.
struct Sets {
    ftcp: Vec<Vec<f64>>,
    ssl: Vec<Vec<f64>>,
    control: Vec<Vec<f64>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Set {
    Ftcp,
    FtcpPca,
    Ssl,
    Control,
    Hybrid,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Ftcp => "FTCP (25,200)",
            Set::FtcpPca => "FTCP → PCA-2048",
            Set::Ssl => "SSL (2048)",
            Set::Control => "random-init encoders (2048)",
            Set::Hybrid => "FTCP + SSL (27,248)",
        }
    }
}

impl Sets {
    /// How a probe scales `set`: FTCP keeps its own row min–max (z-scoring its near-constant
    /// columns lets them drown the informative ones: on band gap the flat-FTCP ridge fell to
    /// R² ≈ 0), learned features are standardised, and the hybrid does each to its part.
    fn scaling(&self, set: Set) -> Scaling {
        match set {
            Set::Ftcp | Set::FtcpPca => Scaling::Center,
            Set::Ssl | Set::Control => Scaling::Standardize,
            Set::Hybrid => Scaling::StandardizeFrom(self.ftcp.first().map_or(0, Vec::len)),
        }
    }

    /// The rows `train` and `test` of `set` (PCA fitted on `train` only).
    fn matrices(
        &self,
        set: Set,
        train: &[usize],
        test: &[usize],
    ) -> anyhow::Result<(Rows<'_>, Rows<'_>)> {
        fn take<'a>(m: &'a Matrix, idx: &[usize]) -> Rows<'a> {
            idx.iter()
                .map(|&i| Cow::Borrowed(m[i].as_slice()))
                .collect()
        }
        Ok(match set {
            Set::Ftcp => (take(&self.ftcp, train), take(&self.ftcp, test)),
            Set::Ssl => (take(&self.ssl, train), take(&self.ssl, test)),
            Set::Control => (take(&self.control, train), take(&self.control, test)),
            Set::Hybrid => {
                let join = |idx: &[usize]| -> Rows<'_> {
                    idx.iter()
                        .map(|&i| {
                            Cow::Owned([self.ftcp[i].as_slice(), self.ssl[i].as_slice()].concat())
                        })
                        .collect()
                };
                (join(train), join(test))
            }
            Set::FtcpPca => {
                let rows: Vec<&[f64]> = train.iter().map(|&i| self.ftcp[i].as_slice()).collect();
                let pca = fit_pca(&rows, FEATURE_DIM)?;
                let project = |idx: &[usize]| -> Rows<'_> {
                    let rows: Vec<&[f64]> = idx.iter().map(|&i| self.ftcp[i].as_slice()).collect();
                    pca.transform_rows(&rows)
                        .into_iter()
                        .map(Cow::Owned)
                        .collect()
                };
                (project(train), project(test))
            }
        })
    }
}

/// The ridge path of the training rows and its cross-validated alpha (a fixed alpha of 1
/// when too few rows to fold).
fn ridge_path<R: AsRef<[f64]>>(
    x: &[R],
    y: &[f64],
    folds: usize,
    scaling: Scaling,
) -> anyhow::Result<(RidgePath, f64)> {
    let rows: Vec<&[f64]> = x.iter().map(AsRef::as_ref).collect();
    let folds = folds.min(rows.len() / 2);
    let alpha = if folds >= 2 {
        cross_validate(&rows, y, &log_alphas(-3, 7, 2), folds, scaling)?.best_alpha()
    } else {
        1.0
    };
    Ok((RidgePath::new(&rows, y, scaling)?, alpha))
}

/// Ridge with a cross-validated alpha.
fn ridge<R: AsRef<[f64]>>(
    x: &[R],
    y: &[f64],
    folds: usize,
    scaling: Scaling,
) -> anyhow::Result<LinearModel> {
    let (path, alpha) = ridge_path(x, y, folds, scaling)?;
    Ok(path.at(alpha)?)
}

fn predict<R: AsRef<[f64]>>(model: &LinearModel, x: &[R]) -> Vec<f64> {
    x.iter().map(|r| model.predict(r.as_ref())).collect()
}

#[derive(Serialize)]
struct ProbeResult {
    set: &'static str,
    probe: &'static str,
    /// Geometric mean over the repeats of the chosen alpha (0: least squares).
    alpha: f64,
    /// Mean over the repeats.
    test: Scores,
    /// Standard deviation over the repeats.
    test_std: Scores,
    /// Each repeat's test MAE, split r of every probe on the same rows (paired).
    mae_per_repeat: Vec<f64>,
}

/// Mean and population standard deviation (0, 0 for nothing).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, sd)
}

impl ProbeResult {
    fn new(set: Set, probe: &'static str, alphas: &[f64], runs: &[Scores]) -> Self {
        let summary = |f: fn(&Scores) -> f64| mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
        let (mae, rmse, r2) = (summary(|s| s.mae), summary(|s| s.rmse), summary(|s| s.r2));
        let alpha = if alphas.iter().all(|a| *a > 0.0) && !alphas.is_empty() {
            (alphas.iter().map(|a| a.ln()).sum::<f64>() / alphas.len() as f64).exp()
        } else {
            0.0
        };
        Self {
            set: set.name(),
            probe,
            alpha,
            test: Scores {
                mae: mae.0,
                rmse: rmse.0,
                r2: r2.0,
            },
            test_std: Scores {
                mae: mae.1,
                rmse: rmse.1,
                r2: r2.1,
            },
            mae_per_repeat: runs.iter().map(|s| s.mae).collect(),
        }
    }
}

#[derive(Serialize)]
struct SplitResult {
    train_percent: f64,
    train: usize,
    test: usize,
    probes: Vec<ProbeResult>,
}

/// One block's part in the SSL–control gap (80/20 splits, the scenario-1 repeats): each
/// representation with that block's columns taken from the other.
#[derive(Serialize)]
struct BlockSwap {
    block: usize,
    name: &'static str,
    /// Ridge test MAE of the SSL features with this block from the control.
    ssl_with_control_block: f64,
    /// Ridge test MAE of the control with this block from the SSL features.
    control_with_ssl_block: f64,
}

#[derive(Serialize)]
struct BlockSwaps {
    /// Ridge test MAE of the SSL features and of the control on the same splits.
    ssl: f64,
    control: f64,
    blocks: Vec<BlockSwap>,
}

#[derive(Serialize)]
struct Attribution {
    group: &'static str,
    columns: usize,
    column_share: f64,
    shap_share: f64,
    enrichment: f64,
    permutation_r2_drop: f64,
}

#[derive(Serialize)]
struct Hybrid {
    test: Scores,
    alpha: f64,
    groups: Vec<Attribution>,
}

#[derive(Serialize)]
struct FewShot {
    percent: f64,
    train_rows: usize,
    /// Why this point has no results (too few training rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    /// Per set: mean test scores over the repeats.
    results: Vec<(&'static str, Scores)>,
}

#[derive(Serialize)]
struct TargetReport {
    target: String,
    source: String,
    rows: usize,
    available: usize,
    /// Seeded splits per ratio in scenario 1.
    repeats: u64,
    scenario1: Vec<SplitResult>,
    block_swaps: BlockSwaps,
    scenario2: Hybrid,
    scenario3: Vec<FewShot>,
    seconds: f64,
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
        let report = evaluate_target(&sets, &y, &args, &prop, &source, available, started)?;
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

/// The whole FTCP tensor of row `i`, scaled as in training, flattened.
fn scaled_flat(data: &SslData, i: usize) -> Vec<f64> {
    let s = data.sample(i);
    let mut v: Vec<f64> = s.raw.iter().map(|&x| x as f64).collect();
    data.normalizer.transform(&mut v);
    v
}

fn split(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    seeded_shuffle(&mut order, seed);
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let (test, train) = order.split_at(n_test);
    (train.to_vec(), test.to_vec())
}

/// Scenario 1's train/test splits at one ratio: `--repeats` seeds from `--seed` on.
fn repeated_splits(n: usize, test_fraction: f64, args: &EvalArgs) -> Vec<(Vec<usize>, Vec<usize>)> {
    (0..args.repeats)
        .map(|r| split(n, test_fraction, args.seed + r))
        .collect()
}

fn evaluate_target(
    sets: &Sets,
    y: &[f64],
    args: &EvalArgs,
    prop: &str,
    source: &str,
    available: usize,
    started: Instant,
) -> anyhow::Result<TargetReport> {
    let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
    // Scenario 1.
    let mut scenario1 = Vec::new();
    for tf in TEST_FRACTIONS {
        // Per set: ridge alphas, ridge scores, least-squares scores, one entry per repeat.
        let mut runs = vec![(Vec::new(), Vec::new(), Vec::new()); PROBE_SETS.len()];
        let (mut n_train, mut n_test) = (0, 0);
        for (train, test) in repeated_splits(y.len(), tf, args) {
            (n_train, n_test) = (train.len(), test.len());
            let (ytr, yte) = (pick(&train), pick(&test));
            for (k, set) in PROBE_SETS.iter().enumerate() {
                let (xtr, xte) = sets.matrices(*set, &train, &test)?;
                // One decomposition gives both the ridge and the least-squares fit.
                let (path, alpha) = ridge_path(&xtr, &ytr, args.folds, sets.scaling(*set))?;
                runs[k].0.push(alpha);
                runs[k]
                    .1
                    .push(scores(&predict(&path.at(alpha)?, &xte), &yte));
                runs[k].2.push(scores(&predict(&path.at(0.0)?, &xte), &yte));
            }
        }
        let mut probes = Vec::new();
        for (set, (alphas, ridge_runs, ols_runs)) in PROBE_SETS.iter().zip(&runs) {
            probes.push(ProbeResult::new(
                *set,
                "ridge (CV alpha)",
                alphas,
                ridge_runs,
            ));
            probes.push(ProbeResult::new(*set, "least squares", &[], ols_runs));
        }
        eprintln!(
            "  scenario 1, {:.0}/{:.0} ({} splits): {}",
            100.0 * (1.0 - tf),
            100.0 * tf,
            args.repeats,
            probes
                .iter()
                .filter(|p| p.probe.starts_with("ridge"))
                .map(|p| format!("{} MAE {:.4}", p.set, p.test.mae))
                .collect::<Vec<_>>()
                .join(", ")
        );
        scenario1.push(SplitResult {
            train_percent: 100.0 * (1.0 - tf),
            train: n_train,
            test: n_test,
            probes,
        });
    }
    let ridge_at_80 = |set: Set| {
        scenario1
            .iter()
            .find(|s: &&SplitResult| s.train_percent.round() == 80.0)
            .and_then(|s| {
                s.probes
                    .iter()
                    .find(|p| p.set == set.name() && p.probe.starts_with("ridge"))
            })
            .map_or(f64::NAN, |p| p.test.mae)
    };
    let block_swaps = BlockSwaps {
        ssl: ridge_at_80(Set::Ssl),
        control: ridge_at_80(Set::Control),
        blocks: block_swaps(sets, y, args)?,
    };
    eprintln!(
        "  block swaps (80/20): SSL MAE {:.4}, control {:.4}; {}",
        block_swaps.ssl,
        block_swaps.control,
        block_swaps
            .blocks
            .iter()
            .map(|b| format!(
                "SSL with block {} from the control {:.4}",
                b.block, b.ssl_with_control_block
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Scenario 2.
    let (train, test) = split(y.len(), 0.2, args.seed);
    let (ytr, yte) = (pick(&train), pick(&test));
    let (xtr, xte) = sets.matrices(Set::Hybrid, &train, &test)?;
    let model = ridge(&xtr, &ytr, args.folds, sets.scaling(Set::Hybrid))?;
    let base = scores(&predict(&model, &xte), &yte);
    let d_ftcp = sets.ftcp[0].len();
    let d_total = xtr[0].len();
    let groups = [("FTCP", 0..d_ftcp), ("SSL", d_ftcp..d_total)];
    let mut shap = [0.0f64; 2];
    for x in &xte {
        for (j, c) in model.contributions(x).iter().enumerate() {
            shap[usize::from(j >= d_ftcp)] += c.abs();
        }
    }
    let shap_total = (shap[0] + shap[1]).max(f64::MIN_POSITIVE);
    let mut attributions = Vec::new();
    for (g, (name, cols)) in groups.iter().enumerate() {
        let mut drop = 0.0;
        for r in 0..PERMUTATION_REPEATS {
            let mut order: Vec<usize> = (0..xte.len()).collect();
            seeded_shuffle(&mut order, args.seed + 1 + r as u64);
            let permuted: Vec<Vec<f64>> = (0..xte.len())
                .map(|i| {
                    let mut row = xte[i].to_vec();
                    row[cols.clone()].copy_from_slice(&xte[order[i]][cols.clone()]);
                    row
                })
                .collect();
            drop += (base.r2 - scores(&predict(&model, &permuted), &yte).r2)
                / PERMUTATION_REPEATS as f64;
        }
        let column_share = cols.len() as f64 / d_total as f64;
        let shap_share = shap[g] / shap_total;
        attributions.push(Attribution {
            group: name,
            columns: cols.len(),
            column_share,
            shap_share,
            enrichment: shap_share / column_share,
            permutation_r2_drop: drop,
        });
    }
    eprintln!(
        "  scenario 2: hybrid R² {:.3}; SSL holds {:.1} % of the SHAP attribution with {:.1} % of the columns ({:.2}×)",
        base.r2,
        100.0 * attributions[1].shap_share,
        100.0 * attributions[1].column_share,
        attributions[1].enrichment
    );
    let scenario2 = Hybrid {
        test: base,
        alpha: model.alpha,
        groups: attributions,
    };
    // Scenario 3.
    let mut scenario3 = Vec::new();
    for fraction in FEW_SHOT {
        let n = ((train.len() as f64 * fraction).round() as usize).min(train.len());
        if n < FEW_SHOT_MIN_ROWS {
            let why = format!(
                "{:.0} % of {} training rows is {n}, fewer than the {FEW_SHOT_MIN_ROWS} a cross-validated probe needs",
                100.0 * fraction,
                train.len()
            );
            eprintln!("  scenario 3: left out — {why}");
            scenario3.push(FewShot {
                percent: 100.0 * fraction,
                train_rows: n,
                skipped: Some(why),
                results: Vec::new(),
            });
            continue;
        }
        let repeats = if fraction < 1.0 { FEW_SHOT_REPEATS } else { 1 };
        let mut sums = vec![(0.0, 0.0, 0.0); PROBE_SETS.len()];
        for r in 0..repeats {
            let mut subset = train.clone();
            let mut rng = SeededRng::new(args.seed ^ ((r as u64 + 1) * 7919));
            seeded_shuffle(&mut subset, rng.next_u64());
            subset.truncate(n);
            let ysub = pick(&subset);
            for (k, set) in PROBE_SETS.iter().enumerate() {
                let (xtr, xte) = sets.matrices(*set, &subset, &test)?;
                let model = ridge(&xtr, &ysub, args.folds, sets.scaling(*set))?;
                let s = scores(&predict(&model, &xte), &yte);
                sums[k].0 += s.mae / repeats as f64;
                sums[k].1 += s.rmse / repeats as f64;
                sums[k].2 += s.r2 / repeats as f64;
            }
        }
        scenario3.push(FewShot {
            percent: 100.0 * fraction,
            train_rows: n,
            skipped: None,
            results: PROBE_SETS
                .iter()
                .zip(sums)
                .map(|(s, (mae, rmse, r2))| (s.name(), Scores { mae, rmse, r2 }))
                .collect(),
        });
    }
    Ok(TargetReport {
        target: prop.to_string(),
        source: source.to_string(),
        rows: y.len(),
        available,
        repeats: args.repeats,
        scenario1,
        block_swaps,
        scenario2,
        scenario3,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Which block's pretraining moves the probe: at 80/20 over the scenario-1 repeats, the ridge
/// MAE of SSL with one block's columns from the control, and of the control with one block's
/// columns from SSL (the gap a block explains shows in both directions). The unswapped scores
/// are scenario 1's on the same splits.
fn block_swaps(sets: &Sets, y: &[f64], args: &EvalArgs) -> anyhow::Result<Vec<BlockSwap>> {
    let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
    let swapped = |into: &Matrix, from: &Matrix, kind: BlockKind, idx: &[usize]| {
        let cols = kind.offset()..kind.offset() + kind.output_dim();
        idx.iter()
            .map(|&i| {
                let mut row = into[i].clone();
                row[cols.clone()].copy_from_slice(&from[i][cols.clone()]);
                row
            })
            .collect::<Matrix>()
    };
    let splits = repeated_splits(y.len(), 0.2, args);
    let mae = |into: &Matrix, from: &Matrix, kind: BlockKind| -> anyhow::Result<f64> {
        let mut total = 0.0;
        for (train, test) in &splits {
            let (train, test) = (train.as_slice(), test.as_slice());
            let model = ridge(
                &swapped(into, from, kind, train),
                &pick(train),
                args.folds,
                Scaling::Standardize,
            )?;
            let pred = predict(&model, &swapped(into, from, kind, test));
            total += scores(&pred, &pick(test)).mae / splits.len() as f64;
        }
        Ok(total)
    };
    BlockKind::ALL
        .into_iter()
        .map(|kind| {
            Ok(BlockSwap {
                block: kind.number(),
                name: kind.name(),
                ssl_with_control_block: mae(&sets.ssl, &sets.control, kind)?,
                control_with_ssl_block: mae(&sets.control, &sets.ssl, kind)?,
            })
        })
        .collect()
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
