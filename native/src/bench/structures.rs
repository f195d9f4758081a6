//! `xtal bench --structures CSV`: structures/s of CIF → Structure, → FTCP, → neighbour graph
//! (8 Å, all neighbours), and symmetry, on one core and on all cores, optionally next to the
//! Python path (pymatgen + FTCP as the original code computes it) measured in the same run.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use xtal_core::featurize::{FtcpConfig, ftcp, neighbors_within};
use xtal_core::structure::{CifOptions, Structure, SymmetryTolerance, read_cif, space_group};

use crate::exit::BadInput;

pub struct StructureBench<'a> {
    pub csv: &'a Path,
    pub limit: usize,
    pub python: Option<&'a Path>,
    pub atom_init: Option<&'a Path>,
    pub json: bool,
}

fn load(csv_path: &Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut r = csv::Reader::from_path(csv_path)
        .with_context(|| format!("{}: cannot read", csv_path.display()))?;
    let headers = r.headers()?.clone();
    let col = headers
        .iter()
        .position(|h| h == "cif")
        .ok_or_else(|| BadInput(format!("{}: no 'cif' column", csv_path.display())))?;
    let mut out = Vec::new();
    for rec in r.records() {
        out.push(rec?.get(col).unwrap_or("").to_string());
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

fn per_second(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

pub fn run(b: StructureBench) -> anyhow::Result<()> {
    let cifs = load(b.csv, b.limit)?;
    let table = crate::commands::element_table(b.atom_init)?;
    let config = FtcpConfig::default();
    let parse = |c: &String| {
        read_cif(c, &CifOptions::default())
            .ok()
            .map(|mut v| v.remove(0).structure)
    };
    let featurize = |s: &Structure| {
        let _ = ftcp(s, &config, &table);
        neighbors_within(s, 8.0).map_or(0, |n| n.len())
    };

    // One core, stage by stage.
    let t = Instant::now();
    let structures: Vec<Structure> = cifs.iter().filter_map(parse).collect();
    let cif_1 = per_second(cifs.len(), t);
    let small: Vec<&Structure> = structures
        .iter()
        .filter(|s| s.sites.len() <= 100 && s.composition().len() <= 4)
        .collect();
    let t = Instant::now();
    for s in &small {
        let _ = ftcp(s, &config, &table);
    }
    let ftcp_1 = per_second(small.len(), t);
    let t = Instant::now();
    for s in &structures {
        let _ = neighbors_within(s, 8.0);
    }
    let graph_1 = per_second(structures.len(), t);
    let t = Instant::now();
    for s in &structures {
        let _ = space_group(s, SymmetryTolerance::default());
    }
    let symmetry_1 = per_second(structures.len(), t);
    let t = Instant::now();
    for c in &cifs {
        if let Some(s) = parse(c) {
            featurize(&s);
        }
    }
    let total_1 = per_second(cifs.len(), t);
    // All cores, the whole path.
    let t = Instant::now();
    let _: usize = cifs
        .par_iter()
        .filter_map(parse)
        .map(|s| featurize(&s))
        .sum();
    let total_all = per_second(cifs.len(), t);

    // Neighbour search cost per atom as a cell grows: flat when the cost is linear in atoms.
    let scaling: Vec<(usize, f64)> = structures
        .first()
        .map(|s| {
            [1usize, 2, 4, 6]
                .iter()
                .map(|&n| {
                    let big = s.supercell([n, n, n]);
                    let t = Instant::now();
                    let _ = neighbors_within(&big, 8.0);
                    (
                        big.sites.len(),
                        t.elapsed().as_secs_f64() * 1e6 / big.sites.len() as f64,
                    )
                })
                .collect()
        })
        .unwrap_or_default();

    let python = match b.python {
        Some(script) => Some(python_baseline(script, b.csv, cifs.len(), b.atom_init)?),
        None => None,
    };
    let cores = rayon::current_num_threads();
    let ratio = |ours: f64, key: &str| {
        python
            .as_ref()
            .and_then(|p| p[key].as_f64())
            .map(|base| ours / base)
    };
    let report = serde_json::json!({
        "structures": cifs.len(),
        "parsed": structures.len(),
        "cores": cores,
        "one_core_per_s": {"cif": cif_1, "ftcp": ftcp_1, "graph_8A": graph_1, "symmetry": symmetry_1, "cif_ftcp_graph": total_1},
        "all_cores_per_s": {"cif_ftcp_graph": total_all},
        "neighbors_8A_microseconds_per_atom": scaling.iter().map(|(n, us)| serde_json::json!({"atoms": n, "us_per_atom": us})).collect::<Vec<_>>(),
        "python_baseline_per_s": python,
        "speedup_vs_python": {
            "cif": ratio(cif_1, "cif_per_s"),
            "ftcp": ratio(ftcp_1, "ftcp_per_s"),
            "graph_8A": ratio(graph_1, "graph_per_s"),
            "cif_ftcp_graph_one_core": ratio(total_1, "total_per_s"),
            "cif_ftcp_graph_all_cores": ratio(total_all, "total_per_s"),
        },
    });
    if b.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} structures from {} ({} parsed), structures/s:",
        cifs.len(),
        b.csv.display(),
        structures.len()
    );
    println!("{:<28} {:>12} {:>12}", "stage", "xtal", "vs Python");
    let show = |name: &str, v: f64, key: &str| {
        let r = ratio(v, key).map_or("-".to_string(), |r| format!("{r:.1}x"));
        println!("{name:<28} {v:>12.0} {r:>12}");
    };
    show("CIF → Structure (1 core)", cif_1, "cif_per_s");
    show("FTCP (1 core)", ftcp_1, "ftcp_per_s");
    show("neighbours 8 Å (1 core)", graph_1, "graph_per_s");
    show("symmetry (1 core)", symmetry_1, "-");
    show("all three (1 core)", total_1, "total_per_s");
    show(
        &format!("all three ({cores} cores)"),
        total_all,
        "total_per_s",
    );
    let scaling_text: Vec<String> = scaling
        .iter()
        .map(|(n, us)| format!("{n} atoms {us:.0} µs"))
        .collect();
    println!(
        "neighbours 8 Å per atom in supercells: {}",
        scaling_text.join(", ")
    );
    if python.is_none() {
        println!("(pass --python native/benches/python_baseline.py for the pymatgen baseline)");
    }
    Ok(())
}

fn python_baseline(
    script: &Path,
    csv: &Path,
    n: usize,
    atom_init: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let atom_init: PathBuf = atom_init.map(Path::to_path_buf).ok_or_else(|| {
        BadInput("--python needs --atom-init (the original FTCP reads CGCNN's table)".into())
    })?;
    eprintln!("running the Python baseline ({} structures)…", n);
    super::baseline::python_baseline(
        script,
        [
            csv.as_os_str(),
            OsStr::new(&n.to_string()),
            atom_init.as_os_str(),
        ],
    )
}
