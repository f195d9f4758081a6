//! The CIF reader on real files from other projects' test suites (pymatgen's tests/files/cif and
//! diffpy.structure's test data, tests/fixtures/cif_corpus/, licences there), against pymatgen's
//! answers (answers.jsonl, made by make_answers.py):
//! - where pymatgen reads a file without doubt ("certain"), xtal gives the same structures:
//!   cell, site count, composition, every site's species and position, magnetic moments;
//! - where pymatgen only guesses ("guess"), xtal either gives the composition the file itself
//!   states (`_chemical_formula_sum`) or pymatgen's structure while saying what it assumed, or
//!   refuses with an error naming a line; each file's expected outcome is listed below;
//! - no file panics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use xtal_core::structure::{CifOptions, CifStructure, Structure, read_cif_bytes};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cif_corpus")
}

#[derive(Deserialize)]
struct Answer {
    file: String,
    status: String,
    formula_sum: Option<String>,
    structures: Vec<PyStructure>,
}

#[derive(Deserialize)]
struct PyStructure {
    nsites: usize,
    abc: [f64; 3],
    angles: [f64; 3],
    #[serde(default)]
    sites: Vec<PySite>,
    #[serde(default)]
    magmoms: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct PySite {
    species: BTreeMap<String, f64>,
    frac: [f64; 3],
}

fn answers() -> Vec<Answer> {
    std::fs::read_to_string(corpus().join("answers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read(file: &str) -> Result<Vec<CifStructure>, String> {
    let bytes = std::fs::read(corpus().join("files").join(file)).unwrap();
    read_cif_bytes(&bytes, &CifOptions::default()).map_err(|e| e.to_string())
}

fn composition(s: &Structure) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for site in &s.sites {
        for (sp, o) in &site.species {
            *out.entry(sp.symbol().to_string()).or_insert(0.0) += o;
        }
    }
    out
}

/// Why `ours` is not pymatgen's structure `theirs`, or `None` when they agree: cell within 1e-4
/// relative, the same number of sites, and every pymatgen site found in ours (same species and
/// amounts within 1e-3, position within 1e-3 fractional, modulo 1), magnetic moments within 1e-3.
fn differs(ours: &Structure, theirs: &PyStructure) -> Option<String> {
    let lengths = ours.lattice.lengths();
    let angles = ours.lattice.angles();
    for k in 0..3 {
        if (lengths[k] - theirs.abc[k]).abs() > 1e-4 * theirs.abc[k]
            || (angles[k] - theirs.angles[k]).abs() > 1e-4 * theirs.angles[k]
        {
            return Some(format!(
                "cell {lengths:?} {angles:?} vs {:?} {:?}",
                theirs.abc, theirs.angles
            ));
        }
    }
    if ours.sites.len() != theirs.nsites {
        return Some(format!("{} sites vs {}", ours.sites.len(), theirs.nsites));
    }
    for (i, t) in theirs.sites.iter().enumerate() {
        let found = ours.sites.iter().position(|s| {
            let close = (0..3).all(|k| {
                let d = s.frac[k] - t.frac[k];
                (d - d.round()).abs() < 1e-3
            });
            let mut species: BTreeMap<String, f64> = BTreeMap::new();
            for (sp, o) in &s.species {
                *species.entry(sp.symbol().to_string()).or_insert(0.0) += o;
            }
            close
                && species.len() == t.species.len()
                && t.species
                    .iter()
                    .all(|(e, o)| species.get(e).is_some_and(|p| (p - o).abs() < 1e-3))
        });
        let Some(j) = found else {
            return Some(format!(
                "pymatgen's site {i} {:?} {:?} is not in ours",
                t.species, t.frac
            ));
        };
        if let Some(m) = theirs.magmoms.as_ref().and_then(|m| m.get(i)) {
            let theirs: Vec<f64> = match m {
                serde_json::Value::Array(v) => v.iter().filter_map(|x| x.as_f64()).collect(),
                serde_json::Value::Number(n) => vec![0.0, 0.0, n.as_f64().unwrap_or(0.0)],
                _ => continue,
            };
            let ours = ours.sites[j].magmom.unwrap_or([0.0; 3]);
            if theirs.len() != 3 || (0..3).any(|k| (ours[k] - theirs[k]).abs() > 1e-3) {
                return Some(format!("site {i}: moment {ours:?} vs {theirs:?}"));
            }
        }
    }
    None
}

/// `_chemical_formula_sum` ("Na3 O4 P", "C26 H16 Be N2") as amounts per element.
fn formula_sum(text: &str) -> BTreeMap<String, f64> {
    text.split_whitespace()
        .filter_map(|w| {
            let split = w
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(w.len());
            let amount = if split == w.len() {
                1.0
            } else {
                w[split..].parse::<f64>().ok()?
            };
            Some((w[..split].to_string(), amount))
        })
        .collect()
}

/// Same elements in the same ratios (within 1 % of the largest amount).
fn same_ratios(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    let norm = |m: &BTreeMap<String, f64>| {
        let total: f64 = m.values().sum();
        m.iter()
            .filter(|(_, v)| **v > 1e-9)
            .map(|(k, v)| (k.clone(), v / total))
            .collect::<BTreeMap<_, _>>()
    };
    let (a, b) = (norm(a), norm(b));
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| (v - w).abs() < 0.01))
}

/// Files where pymatgen only guesses and the file states no formula: the composition of each
/// structure xtal must give instead, worked out by hand from the file (the Pauling File lists
/// each site's Wyckoff multiplicity), and why.
const BETTER_THAN_PYMATGEN: [(&str, &[&str], &str); 4] = [
    (
        "diffpy/badspacegroup.cif",
        &["K2 Mg2 Al4 Si8 O24"],
        "'C2:b1' is C 1 2 1 (cell choice 1, unique axis b), which pymatgen does not recognise: \
         it returns the asymmetric unit in P1. Under C 1 2 1 (x,y,z; -x,y,-z; and +(1/2,1/2,0)) \
         the sites on the twofold axes (Al1, Al2, Mg1 at x = z = 0; K1 at 1/2,0,1/2) give 2 \
         positions each, the general ones (Si1, Si2, O1-O6) 4 each",
    ),
    (
        "pymatgen/PF_sd_1002871.cif",
        &["Cu2 Br4 N12", "Cu4 Br8 N24"],
        "type symbol 'NH3' is ammonia (pymatgen: nihonium); the published cell's 'F4/mmm' is \
         P4/mmm with F centring, where pymatgen applies I4/mmm's operations (its number, 139) \
         to F-cell coordinates. Multiplicities: I4/mmm Cu 2a, Br 4d, N 8h + 4e; F4/mmm Cu 4a, \
         Br 8d, N 16h + 8e",
    ),
    (
        "pymatgen/PF_sd_1500382.cif",
        &["Mg6 B2 O10.236 F1.764", "Mg6 B2 O10.236 F1.764"],
        "the 'OH' site (6h, occupancy 0.706) is a hydroxide oxygen, which pymatgen drops: O is \
         6 (6h) + 6 x 0.706, F 6 x 0.294, Mg 6h, B 2c",
    ),
    (
        "pymatgen/PF_sd_1601634.cif",
        &["Zn2.58 Fe1.38 As4 Pb2.04 O20"],
        "'OH2' (0.655) and 'OH' (0.345) share a 4i site: water and hydroxide oxygens, which \
         pymatgen drops: O is 8j + 4i (OH2 + OH) + 4i + 4i = 20; Zn, Fe, Pb at 4f (0.645, \
         0.345, 0.010) and Pb at 2a",
    ),
];

fn formula_of(ours: &[CifStructure]) -> Vec<BTreeMap<String, f64>> {
    ours.iter().map(|s| composition(&s.structure)).collect()
}

fn same_amounts(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| (v - w).abs() < 1e-6))
}

#[derive(Deserialize)]
struct Variant {
    file: String,
    derived_from: String,
    feature: String,
}

/// Real files rewritten in one legacy form each (`%` lines, CR line ends, Latin-1, fractions
/// as coordinates, decimal translations, a Hall symbol or a symbol variant instead of the
/// operations, missing angles, `?` type symbols, `Wat` labels, CIF 2.0 triple quotes, mixture
/// symbols; make_variants.py): each must give pymatgen's structure for the original file, and
/// say what it assumed wherever the form leaves something open.
/// Legacy forms the reader accepts only by assuming something, and words its warning must use.
/// Forms that are merely valid spellings (CR line ends, CIF 2.0 quotes, fractions, exact decimal
/// translations such as `x+0.5`, symbols without operations) need no warning; rounded ones
/// (`0.66667`) are covered by a unit test of the reader.
const ASSUMPTION_WARNINGS: &[(&str, &str)] = &[
    ("percent_lines", "skipped as a comment"),
    ("block_name_spaces", "block name with spaces"),
    ("multiline_quote", "runs over lines"),
    ("latin1", "Latin-1"),
    ("dot_type_symbol", "read from label"),
    ("missing_angles", "assumed"),
    ("mixture_symbol", "mixed site"),
    ("wat_label", "read as O"),
    ("unquoted_symbol", "unquoted value with spaces"),
];

#[test]
fn legacy_forms_of_real_files_give_the_original_structure() {
    let answers = answers();
    let variants: Vec<Variant> = std::fs::read_to_string(corpus().join("variants.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(variants.len() >= 40, "{} variants", variants.len());
    let mut failures = Vec::new();
    for v in &variants {
        let original = answers
            .iter()
            .find(|a| a.file == v.derived_from)
            .unwrap_or_else(|| panic!("{}: no answer for {}", v.file, v.derived_from));
        let ours = std::panic::catch_unwind(|| read(&v.file))
            .unwrap_or_else(|_| panic!("{}: the reader panicked", v.file));
        let verdict = match &ours {
            Err(e) => Some(format!("refused: {e}")),
            Ok(ours) => differs(&ours[0].structure, &original.structures[0]).or_else(|| {
                // What the reader assumed must be said, not just done.
                let expected = ASSUMPTION_WARNINGS.iter().find(|(f, _)| *f == v.feature);
                expected.and_then(|(_, needle)| {
                    let said = ours[0].warnings.iter().any(|w| w.message.contains(needle));
                    (!said).then(|| {
                        format!("no warning mentioning {needle:?}: {:?}", ours[0].warnings)
                    })
                })
            }),
        };
        if let Some(why) = verdict {
            failures.push(format!("{} ({}): {why}", v.file, v.feature));
        }
    }
    eprintln!(
        "CIF variants: {} of {} give the original's structure",
        variants.len() - failures.len(),
        variants.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn real_cifs_read_as_pymatgen_reads_them_or_better() {
    let answers = answers();
    assert!(
        answers.len() >= 60,
        "the corpus has {} files",
        answers.len()
    );
    let mut failures = Vec::new();
    let (mut certain, mut certain_same, mut guess, mut guess_right, mut refused) = (0, 0, 0, 0, 0);
    for a in &answers {
        // A panic here names the file.
        let ours = std::panic::catch_unwind(|| read(&a.file))
            .unwrap_or_else(|_| panic!("{}: the reader panicked", a.file));
        let better = BETTER_THAN_PYMATGEN.iter().find(|(f, _, _)| *f == a.file);
        match a.status.as_str() {
            "certain" => {
                certain += 1;
                let verdict = match &ours {
                    Err(e) => Some(format!("refused: {e}")),
                    Ok(ours) if ours.len() != a.structures.len() => Some(format!(
                        "{} structures vs {}",
                        ours.len(),
                        a.structures.len()
                    )),
                    Ok(ours) => ours
                        .iter()
                        .zip(&a.structures)
                        .find_map(|(o, t)| differs(&o.structure, t)),
                };
                match verdict {
                    None => certain_same += 1,
                    Some(why) => failures.push(format!("{} (certain): {why}", a.file)),
                }
            }
            "guess" => {
                guess += 1;
                match &ours {
                    Err(e) if better.is_some() => {
                        failures.push(format!("{}: refused: {e}", a.file))
                    }
                    Err(_) => refused += 1,
                    Ok(ours) => {
                        let c = composition(&ours[0].structure);
                        let stated = a.formula_sum.as_deref().map(formula_sum);
                        // Where pymatgen is known to be wrong, xtal must give the right answer;
                        // elsewhere the file's own formula or pymatgen's structure.
                        let right = match better {
                            Some((_, formulas, _)) => {
                                let ours = formula_of(ours);
                                ours.len() == formulas.len()
                                    && ours
                                        .iter()
                                        .zip(formulas.iter())
                                        .all(|(o, f)| same_amounts(o, &formula_sum(f)))
                            }
                            None => {
                                stated.as_ref().is_some_and(|f| same_ratios(&c, f))
                                    || a.structures
                                        .first()
                                        .is_some_and(|t| differs(&ours[0].structure, t).is_none())
                            }
                        };
                        if right {
                            guess_right += 1;
                        } else {
                            failures.push(format!(
                                "{} (pymatgen guesses): composition {c:?}, the file says {:?}",
                                a.file, a.formula_sum
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // pymatgen refuses an incommensurate magnetic structure; so must xtal (its average cell
    // would be a wrong answer).
    let modulated = read("pymatgen/magnetic.incommensurate.example.Cr.mcif").unwrap_err();
    assert!(
        modulated.contains("incommensurately modulated"),
        "{modulated}"
    );
    eprintln!(
        "CIF corpus: {certain_same}/{certain} files pymatgen reads without doubt give the same \
         structures; of {guess} it only guesses, {guess_right} read right, {refused} refused"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
