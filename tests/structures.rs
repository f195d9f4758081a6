//! CIF → Structure → symmetry / FTCP / neighbours, against facts computed by pymatgen 2026.10
//! and spglib 2.8 and FTCP tensors computed by the original FTCP code
//! (tests/fixtures/structures, copied from ../shared/fixtures with its README).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use xtal_core::featurize::{ElementTable, FtcpConfig, ftcp, neighbors_within};
use xtal_core::structure::{CifOptions, Structure, SymmetryTolerance, read_cif, space_group};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/structures")
}

#[derive(Deserialize)]
struct Facts {
    id: String,
    a: f64,
    b: f64,
    c: f64,
    alpha: f64,
    beta: f64,
    gamma: f64,
    volume: f64,
    density: f64,
    nsites: usize,
    reduced_formula: String,
    spacegroup_number: u16,
    crystal_system: String,
    #[serde(default)]
    neighbors_8a: Option<Vec<usize>>,
    #[serde(rename = "neighbors_8A", default)]
    neighbors_8a_upper: Option<Vec<usize>>,
}

fn facts(name: &str) -> Vec<Facts> {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn cifs() -> HashMap<String, String> {
    let mut r = csv::Reader::from_path(fixtures().join("cifs.csv")).unwrap();
    r.records()
        .map(|rec| rec.unwrap())
        .map(|rec| (rec[0].to_string(), rec[1].to_string()))
        .collect()
}

fn read_one(text: &str) -> Structure {
    let mut all = read_cif(text, &CifOptions::default()).unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0).structure
}

/// Structures where moyo's space group (stable for symprec 0.005–0.02 Å) is a supergroup of what
/// spglib 2.8 reports at 0.01 Å: the two libraries weigh near-symmetric carbon_24 cells differently.
const SPGLIB_DIFFERS: [&str; 2] = [
    "carbon24-test-C-90841-9811-65",
    "carbon24-val-C-47638-2587-2",
];

/// True when the space group found changes within a factor 2 of the default symprec: the
/// structure sits at the tolerance edge, where moyo and spglib may legitimately disagree.
fn at_tolerance_edge(s: &Structure) -> bool {
    let number = |symprec: f64| {
        space_group(
            s,
            SymmetryTolerance {
                symprec,
                ..SymmetryTolerance::default()
            },
        )
        .map(|g| g.number)
        .ok()
    };
    let n = number(0.01);
    number(0.005) != n || number(0.02) != n
}

/// Compares one structure with pymatgen's facts; returns the mismatches.
fn compare(s: &Structure, f: &Facts) -> Vec<String> {
    let mut bad = Vec::new();
    let close = |x: f64, y: f64, rel: f64| (x - y).abs() <= rel * y.abs().max(1.0);
    let [a, b, c] = s.lattice.lengths();
    let [alpha, beta, gamma] = s.lattice.angles();
    for (name, got, want) in [
        ("a", a, f.a),
        ("b", b, f.b),
        ("c", c, f.c),
        ("alpha", alpha, f.alpha),
        ("beta", beta, f.beta),
        ("gamma", gamma, f.gamma),
        ("volume", s.volume(), f.volume),
        ("density", s.density(), f.density),
    ] {
        if !close(got, want, 1e-6) {
            bad.push(format!("{name} {got} vs {want}"));
        }
    }
    if s.sites.len() != f.nsites {
        bad.push(format!("nsites {} vs {}", s.sites.len(), f.nsites));
    }
    if s.reduced_formula() != f.reduced_formula {
        bad.push(format!(
            "formula {} vs {}",
            s.reduced_formula(),
            f.reduced_formula
        ));
    }
    match space_group(s, SymmetryTolerance::default()) {
        Ok(sg) => {
            let excused = sg.number != f.spacegroup_number
                && (SPGLIB_DIFFERS.contains(&f.id.as_str()) || at_tolerance_edge(s));
            if sg.number != f.spacegroup_number && !excused {
                bad.push(format!(
                    "space group {} vs {}",
                    sg.number, f.spacegroup_number
                ));
            }
            if sg.crystal_system.name() != f.crystal_system && !excused {
                bad.push(format!(
                    "crystal system {} vs {}",
                    sg.crystal_system.name(),
                    f.crystal_system
                ));
            }
        }
        Err(e) => bad.push(e.to_string()),
    }
    bad
}

fn assert_none_differ(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn structures_match_pymatgen_facts() {
    let cifs = cifs();
    let all = facts("facts.jsonl");
    assert_eq!(all.len(), 1200);
    let mut failures = Vec::new();
    for f in &all {
        let s = read_one(&cifs[&f.id]);
        let mut bad = compare(&s, f);
        let want = f
            .neighbors_8a_upper
            .as_ref()
            .or(f.neighbors_8a.as_ref())
            .unwrap();
        let got: Vec<usize> = neighbors_within(&s, 8.0)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        if &got != want {
            bad.push(format!("neighbour counts {got:?} vs {want:?}"));
        }
        if !bad.is_empty() {
            failures.push(format!("{}: {}", f.id, bad.join("; ")));
        }
    }
    assert_none_differ(&failures, all.len());
}

#[test]
fn symmetry_expansion_matches_pymatgen() {
    let all = facts("facts_symmetrized.jsonl");
    assert_eq!(all.len(), 98);
    let mut failures = Vec::new();
    for f in &all {
        let text =
            std::fs::read_to_string(fixtures().join("symmetrized").join(format!("{}.cif", f.id)))
                .unwrap();
        let bad = compare(&read_one(&text), f);
        if !bad.is_empty() {
            failures.push(format!("{}: {}", f.id, bad.join("; ")));
        }
    }
    assert_none_differ(&failures, all.len());
}

/// The original FTCP code's tensors of the fixture structures (400 × 63 each, max_elms 4,
/// max_sites 100) and their ids, in order.
fn original_ftcp() -> (Vec<String>, Vec<f64>) {
    let ids: Vec<String> = std::fs::read_to_string(fixtures().join("ftcp_ids.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let mut npz = npyz::npz::NpzArchive::open(fixtures().join("ftcp_pvlab_4_100.npz")).unwrap();
    let array = npz.by_name("ftcp").unwrap().unwrap();
    assert_eq!(array.shape(), &[ids.len() as u64, 400, 63]);
    (ids, array.into_vec().unwrap())
}

#[test]
fn ftcp_matches_the_original_code() {
    let cifs = cifs();
    let (ids, reference) = original_ftcp();
    let table = ElementTable::from_atom_init_json(
        &std::fs::read_to_string(fixtures().join("atom_init.json")).unwrap(),
        "atom_init.json",
    )
    .unwrap();
    let config = FtcpConfig::default();
    let mut worst = (0.0f64, String::new());
    for (n, id) in ids.iter().enumerate() {
        let t = ftcp(&read_one(&cifs[id]), &config, &table).unwrap();
        assert_eq!((t.rows, t.cols), (400, 63));
        let want = &reference[n * 400 * 63..(n + 1) * 400 * 63];
        for (i, (g, w)) in t.data.iter().zip(want).enumerate() {
            let d = (g - w).abs();
            if d > worst.0 {
                worst = (d, format!("{id} row {} col {}: {g} vs {w}", i / 63, i % 63));
            }
        }
    }
    assert!(worst.0 <= 1e-4, "max |diff| {:e} at {}", worst.0, worst.1);
}

/// The FTCP parts (the regions the self-supervised blocks read) on tensors the original code
/// produced: disjoint, every value the original sets lies in one of them, and each holds what
/// pymatgen says — the cell, one occupancy one-hot per site, one element one-hot per distinct
/// element, 59 k-distances within the search radius.
#[test]
fn ftcp_parts_hold_what_the_original_code_put_there() {
    use xtal_core::featurize::FtcpPart;
    let (ids, reference) = original_ftcp();
    let facts: HashMap<String, Facts> = facts("facts.jsonl")
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect();
    let config = FtcpConfig::default();
    let (rows, cols) = (config.rows(), config.cols());
    let regions: Vec<_> = FtcpPart::ALL.iter().map(|p| config.region(*p)).collect();
    let sizes: Vec<usize> = regions.iter().map(|r| r.len()).collect();
    assert_eq!(sizes, [412, 6, 300, 400, 59, 368, 5428]);
    let mut checked = 0;
    for (n, id) in ids.iter().enumerate() {
        let t = &reference[n * rows * cols..(n + 1) * rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let holders = regions.iter().filter(|g| g.contains(r, c)).count();
                assert!(holders <= 1, "row {r} col {c} is in {holders} parts");
                assert!(
                    holders == 1 || t[r * cols + c] == 0.0,
                    "{id}: row {r} col {c} = {} lies in no part",
                    t[r * cols + c]
                );
            }
        }
        let part = |p: FtcpPart| config.region(p).extract(t, cols);
        let Some(f) = facts.get(id) else { continue };
        let cell = [f.a, f.b, f.c, f.alpha, f.beta, f.gamma];
        for (got, want) in part(FtcpPart::Lattice).iter().zip(cell) {
            assert!(
                (got - want).abs() <= 1e-4 * want,
                "{id}: cell {got} vs {want}"
            );
        }
        let occupancy = part(FtcpPart::Occupancy);
        let ones = |v: &[f64]| v.iter().filter(|x| **x == 1.0).count();
        assert_eq!(ones(&occupancy), f.nsites.min(config.max_sites), "{id}");
        for (s, row) in occupancy.chunks(config.element_columns()).enumerate() {
            assert_eq!(ones(row), usize::from(s < f.nsites), "{id} site {s}");
        }
        let distinct = f
            .reduced_formula
            .chars()
            .filter(char::is_ascii_uppercase)
            .count();
        assert_eq!(ones(&part(FtcpPart::Elements)), distinct, "{id}");
        let k = part(FtcpPart::KDistances);
        assert!(k.iter().all(|d| *d > 0.0 && *d <= 1.4), "{id}: {k:?}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} structures had facts");
}
