//! Space groups through moyo (the Rust successor of spglib): detecting a structure's space group
//! and generating the operations of a group given only by name or number.

use moyo::MoyoDataset;
use moyo::base::{AngleTolerance, Cell, Lattice as MoyoLattice};
use moyo::data::{HallSymbol, Setting, hall_symbol_entry};
use serde::{Deserialize, Serialize};

use super::cif::SymOp;
use super::crystal::Structure;

/// Tolerances of the symmetry search; the defaults are pymatgen's SpacegroupAnalyzer's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SymmetryTolerance {
    /// Distance tolerance (Å).
    pub symprec: f64,
    /// Angle tolerance (degrees).
    pub angle_tolerance: f64,
}

impl Default for SymmetryTolerance {
    fn default() -> Self {
        Self {
            symprec: 0.01,
            angle_tolerance: 5.0,
        }
    }
}

/// The seven crystal systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrystalSystem {
    Triclinic,
    Monoclinic,
    Orthorhombic,
    Tetragonal,
    Trigonal,
    Hexagonal,
    Cubic,
}

impl CrystalSystem {
    pub const ALL: [CrystalSystem; 7] = [
        Self::Triclinic,
        Self::Monoclinic,
        Self::Orthorhombic,
        Self::Tetragonal,
        Self::Trigonal,
        Self::Hexagonal,
        Self::Cubic,
    ];

    /// Of a space-group number (1 … 230).
    pub fn of_space_group(number: u16) -> Option<Self> {
        Some(match number {
            1..=2 => Self::Triclinic,
            3..=15 => Self::Monoclinic,
            16..=74 => Self::Orthorhombic,
            75..=142 => Self::Tetragonal,
            143..=167 => Self::Trigonal,
            168..=194 => Self::Hexagonal,
            195..=230 => Self::Cubic,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Triclinic => "triclinic",
            Self::Monoclinic => "monoclinic",
            Self::Orthorhombic => "orthorhombic",
            Self::Tetragonal => "tetragonal",
            Self::Trigonal => "trigonal",
            Self::Hexagonal => "hexagonal",
            Self::Cubic => "cubic",
        }
    }

    pub fn index(&self) -> usize {
        Self::ALL.iter().position(|c| c == self).unwrap_or(0)
    }
}

/// What the symmetry search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceGroupInfo {
    pub number: u16,
    /// Short Hermann–Mauguin symbol, e.g. "P2_1/c".
    pub symbol: String,
    pub crystal_system: CrystalSystem,
}

#[derive(Debug, thiserror::Error)]
#[error("symmetry search failed: {0}")]
pub struct SymmetryError(String);

/// Space group of a structure. Sites with different species or occupancies count as different.
pub fn space_group(
    structure: &Structure,
    tolerance: SymmetryTolerance,
) -> Result<SpaceGroupInfo, SymmetryError> {
    let mut kinds: Vec<String> = Vec::new();
    let numbers = structure
        .sites
        .iter()
        .map(|s| {
            let key = s.species_string();
            let k = kinds.iter().position(|x| *x == key).unwrap_or_else(|| {
                kinds.push(key);
                kinds.len() - 1
            });
            k as i32
        })
        .collect();
    let positions = structure.sites.iter().map(|s| s.frac.into()).collect();
    let cell = Cell::new(
        MoyoLattice::from_basis(structure.lattice.matrix),
        positions,
        numbers,
    );
    let dataset = MoyoDataset::new(
        &cell,
        tolerance.symprec,
        AngleTolerance::Radian(tolerance.angle_tolerance.to_radians()),
        Setting::Spglib,
        false,
    )
    .map_err(|e| SymmetryError(e.to_string()))?;
    let number = dataset.number as u16;
    Ok(SpaceGroupInfo {
        number,
        symbol: dataset.hm_symbol.replace(' ', ""),
        crystal_system: CrystalSystem::of_space_group(number)
            .ok_or_else(|| SymmetryError(format!("space group {number}")))?,
    })
}

/// Operations of a space group given by its number, in the ITA standard setting.
pub fn operations_of_number(number: u16) -> Option<Vec<SymOp>> {
    // moyo indexes its table with number - 1, so 0 must not reach it.
    if number == 0 {
        return None;
    }
    operations_of_hall_number(Setting::Standard.hall_number(number as i32)?)
}

/// Operations of a space group given by a Hermann–Mauguin symbol ("P 21/c", "Fd-3m:2", "R-3m H").
pub fn operations_of_hm_symbol(symbol: &str) -> Option<Vec<SymOp>> {
    resolve_hm_symbol(symbol, false).map(|m| m.operations)
}

/// A Hermann–Mauguin symbol resolved to one setting of one space group.
#[derive(Debug, Clone, PartialEq)]
pub struct HmMatch {
    pub operations: Vec<SymOp>,
    pub number: u16,
    /// What was assumed to get there (an old notation, a setting the symbol leaves open).
    pub notes: Vec<String>,
    /// Where the symbol does not say which origin choice: the operations of origin choice 1
    /// (`operations` are origin choice 2's), for the reader to decide from the sites.
    pub origin_choice_1: Option<Vec<SymOp>>,
}

/// Resolves a Hermann–Mauguin symbol as files write it: with or without spaces and underscores
/// ('P m -3 m', 'P2_1/n', 'P 1 21/n 1'), with a setting after a colon or a space ('R 3 :H',
/// 'Fd-3m:1', 'C2:b1', ICSD's 'F d -3 m Z'), in the old cubic notation without bars ('P m 3 m',
/// 'F d 3 m'). Where the symbol leaves the setting open, `rhombohedral_cell` (a = b = c and
/// α = β = γ ≠ 90°) picks rhombohedral over hexagonal axes, and the standard setting is taken
/// otherwise; each such choice is a note.
pub fn resolve_hm_symbol(symbol: &str, rhombohedral_cell: bool) -> Option<HmMatch> {
    let canon = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let symbol = symbol.trim();
    // The setting: after ':' or as a last word H, R (axes), S, Z (ICSD's origin choices 1, 2).
    let (body, choice) = match symbol.split_once(':') {
        Some((b, c)) => (b.trim(), Some(c.trim().to_ascii_lowercase())),
        None => match symbol.rsplit_once(char::is_whitespace) {
            Some((b, last)) if ["H", "R", "S", "Z"].contains(&last) => {
                (b.trim(), Some(last.to_ascii_lowercase()))
            }
            _ => (symbol, None),
        },
    };
    let choice = choice.map(|c| match c.as_str() {
        "s" => "1".to_string(),
        "z" => "2".to_string(),
        _ => c,
    });
    let mut notes = Vec::new();
    let mut origin_choice_1 = None;
    let mut candidates = hm_candidates(&canon(body));
    if candidates.is_empty() {
        // Before 1983 cubic symbols were written without the bar: Pm3m is Pm-3m.
        let barred = old_cubic_to_barred(&canon(body));
        candidates = hm_candidates(&barred)
            .into_iter()
            .filter(|&(h, _)| hall_symbol_entry(h).is_some_and(|e| e.number >= 195))
            .collect();
        if !candidates.is_empty() {
            notes.push(format!(
                "'{body}' read in the old cubic notation as '{barred}'"
            ));
        }
    }
    if candidates.is_empty() {
        return nonstandard_centring(&canon(body), symbol);
    }
    // Symbols that spell out a setting ('P 1 21/n 1') beat the group's short name ('P 21/c').
    if candidates.iter().any(|&(_, exact)| exact) {
        candidates.retain(|&(_, exact)| exact);
    }
    let mut halls: Vec<i32> = candidates.iter().map(|&(h, _)| h).collect();
    let setting_of = |h: i32| {
        hall_symbol_entry(h)
            .map_or("", |e| e.setting)
            .to_ascii_lowercase()
    };
    match &choice {
        Some(choice) => {
            let picked: Vec<i32> = halls
                .iter()
                .copied()
                .filter(|&h| {
                    let s = setting_of(h);
                    s == *choice || s.trim_start_matches('-') == choice.as_str()
                })
                .collect();
            if picked.is_empty() {
                if !halls.is_empty() {
                    notes.push(format!(
                        "setting ':{choice}' is not one of this group's: the standard setting is used"
                    ));
                }
            } else {
                halls = picked;
            }
        }
        None => {
            let settings: Vec<String> = halls.iter().map(|&h| setting_of(h)).collect();
            if settings.iter().any(|s| s == "r") && settings.iter().any(|s| s == "h") {
                let axes = if rhombohedral_cell { "r" } else { "h" };
                halls.retain(|&h| setting_of(h) == axes);
                notes.push(format!(
                    "'{symbol}' does not say which axes: {} axes assumed from the cell",
                    if rhombohedral_cell {
                        "rhombohedral"
                    } else {
                        "hexagonal"
                    }
                ));
            } else if settings.iter().any(|s| s == "1") && settings.iter().any(|s| s == "2") {
                origin_choice_1 = halls
                    .iter()
                    .find(|&&h| setting_of(h) == "1")
                    .and_then(|&h| operations_of_hall_number(h));
                halls.retain(|&h| setting_of(h) == "2");
            }
        }
    }
    // Prefer the standard setting (origin choice 2, hexagonal axes) when the symbol is ambiguous.
    let standard = Setting::Standard.hall_numbers();
    let hall = halls
        .iter()
        .copied()
        .find(|h| standard.contains(h))
        .or(halls.first().copied())?;
    Some(HmMatch {
        operations: operations_of_hall_number(hall)?,
        number: hall_symbol_entry(hall)?.number as u16,
        notes,
        origin_choice_1,
    })
}

/// A centring no standard setting has ('C-1', 'F4/mmm', 'I2/c' in a cell chosen to compare
/// with a related structure): the operations of the primitive symbol ('P-1', 'P4/mmm') with
/// the centring's translations added. The group's number is unknown (0) here.
fn nonstandard_centring(canon: &str, symbol: &str) -> Option<HmMatch> {
    let mut chars = canon.chars();
    let letter = chars.next()?;
    let centring: &[[f64; 3]] = match letter {
        'a' => &[[0.0, 0.5, 0.5]],
        'b' => &[[0.5, 0.0, 0.5]],
        'c' => &[[0.5, 0.5, 0.0]],
        'i' => &[[0.5, 0.5, 0.5]],
        'f' => &[[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]],
        _ => return None,
    };
    let primitive = format!("p{}", chars.as_str());
    let found = resolve_hm_symbol(&primitive, false)?;
    let mut operations = found.operations.clone();
    for t in centring {
        operations.extend(found.operations.iter().map(|op| SymOp {
            rotation: op.rotation,
            translation: std::array::from_fn(|i| (op.translation[i] + t[i]).rem_euclid(1.0)),
        }));
    }
    let mut notes = found.notes;
    notes.push(format!(
        "'{symbol}' is not a standard setting: read as the operations of '{}' with {} centring",
        primitive.to_ascii_uppercase(),
        letter.to_ascii_uppercase()
    ));
    Some(HmMatch {
        operations,
        number: 0,
        notes,
        origin_choice_1: None,
    })
}

/// Hall numbers whose symbol matches a canonical (spaceless, lower-case) H-M symbol, and whether
/// it matched the setting's own full symbol (exact) or only the group's short name.
fn hm_candidates(wanted: &str) -> Vec<(i32, bool)> {
    let canon = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    (1..=530)
        .filter_map(|h| {
            let e = hall_symbol_entry(h)?;
            // 'P 1 21/n 1' is also written 'P 21/n': drop the 1s of a full symbol.
            let words: Vec<&str> = e.hm_full.split_whitespace().collect();
            let without_ones = if words.len() > 2 {
                words
                    .iter()
                    .filter(|w| **w != "1")
                    .copied()
                    .collect::<Vec<_>>()
                    .join("")
            } else {
                e.hm_full.to_string()
            };
            if canon(e.hm_full) == wanted || canon(&without_ones) == wanted {
                Some((h, true))
            } else if canon(e.hm_short) == wanted {
                Some((h, false))
            } else {
                None
            }
        })
        .collect()
}

/// 'pm3m' → 'pm-3m', 'fd3' → 'fd-3', 'ia3d' → 'ia-3d': a 3 right after a glide or mirror letter.
fn old_cubic_to_barred(canon: &str) -> String {
    let mut out = String::with_capacity(canon.len() + 1);
    let mut prev = ' ';
    for c in canon.chars() {
        if c == '3' && matches!(prev, 'm' | 'n' | 'a' | 'd') {
            out.push('-');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Operations of a space group given by a Hall symbol ("-P 2ybc"), as CIFs write them: ITA's
/// axis primes `'` and `"` (moyo spells them `^` and `=`), any letter case.
pub fn operations_of_hall_symbol(symbol: &str) -> Option<Vec<SymOp>> {
    let mut words = symbol.split_whitespace();
    let lattice = words.next()?.to_ascii_uppercase();
    let rest: Vec<String> = words
        .map(|w| w.to_ascii_lowercase().replace('\'', "^").replace('"', "="))
        .collect();
    let normalised = std::iter::once(lattice)
        .chain(rest)
        .collect::<Vec<_>>()
        .join(" ");
    HallSymbol::new(&normalised).map(|h| all_operations(&h))
}

fn operations_of_hall_number(hall: i32) -> Option<Vec<SymOp>> {
    HallSymbol::from_hall_number(hall).map(|h| all_operations(&h))
}

/// The coset representatives combined with every centring translation, centring outermost.
fn all_operations(hall: &HallSymbol) -> Vec<SymOp> {
    let ops = hall.traverse();
    let mut out = Vec::with_capacity(ops.len() * hall.centering_translations.len());
    let zero = moyo::base::Translation::zeros();
    let translations = std::iter::once(&zero).chain(
        hall.centering_translations
            .iter()
            .filter(|t| t.norm() > 1e-12),
    );
    for t in translations {
        for op in &ops {
            out.push(SymOp {
                rotation: std::array::from_fn(|i| {
                    std::array::from_fn(|j| op.rotation[(i, j)] as f64)
                }),
                translation: std::array::from_fn(|i| (op.translation[i] + t[i]).rem_euclid(1.0)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_names_and_numbers() {
        assert_eq!(operations_of_number(225).unwrap().len(), 192);
        assert_eq!(operations_of_hm_symbol("F m -3 m").unwrap().len(), 192);
        assert_eq!(operations_of_hm_symbol("P 21/c").unwrap().len(), 4);
        assert_eq!(operations_of_hm_symbol("Fd-3m:1").unwrap().len(), 192);
        assert_eq!(operations_of_hm_symbol("R -3 m :H").unwrap().len(), 36);
        assert_eq!(operations_of_hm_symbol("R -3 m :R").unwrap().len(), 12);
        assert_eq!(operations_of_hall_symbol("-P 2ybc").unwrap().len(), 4);
        assert!(operations_of_hm_symbol("Q 9").is_none());
        assert!(operations_of_number(231).is_none());
        assert!(operations_of_number(0).is_none());
    }

    #[test]
    fn symbols_as_files_write_them() {
        let n = |s: &str| resolve_hm_symbol(s, false).map(|m| (m.number, m.operations.len()));
        assert_eq!(n("P m 3 m"), Some((221, 48)));
        assert_eq!(n("F d 3 m"), Some((227, 192)));
        assert_eq!(n("Ia3d"), Some((230, 96)));
        assert_eq!(n("P2_1/n"), Some((14, 4)));
        assert_eq!(n("P 1 21/n 1"), Some((14, 4)));
        assert_eq!(n("P 21/c"), Some((14, 4)));
        assert_eq!(n("R 3 :H"), Some((146, 9)));
        assert_eq!(n("R 3 :R"), Some((146, 3)));
        assert_eq!(n("R -3 m H"), Some((166, 36)));
        assert_eq!(n("C2:b1"), Some((5, 4)));
        assert_eq!(n("F d -3 m Z"), Some((227, 192)));
        assert_eq!(n("F d -3 m S"), Some((227, 192)));
        assert!(n("Q 9").is_none());
        // Centrings no standard setting has: the primitive group's operations, centred.
        assert_eq!(n("C-1"), Some((0, 4)));
        assert_eq!(n("F4/mmm"), Some((0, 64)));
        assert!(n("C 9").is_none());
        assert!(n("P 3 3").is_none());
        // P 23 has no bar to restore: the old-notation rule must not turn it into something else.
        assert_eq!(n("P 2 3"), Some((195, 12)));
        // The settings a symbol leaves open are chosen, and said.
        let rhombohedral = resolve_hm_symbol("R -3 m", true).unwrap();
        assert_eq!(rhombohedral.operations.len(), 12);
        assert_eq!(rhombohedral.notes.len(), 1);
        assert_eq!(
            resolve_hm_symbol("R -3 m", false).unwrap().operations.len(),
            36
        );
        assert_eq!(resolve_hm_symbol("P m 3 m", false).unwrap().notes.len(), 1);
        assert!(
            resolve_hm_symbol("P m -3 m", false)
                .unwrap()
                .notes
                .is_empty()
        );
        let origin = resolve_hm_symbol("F d -3 m", false).unwrap();
        assert!(origin.origin_choice_1.is_some());
        // Origin choice 1 puts an inversion centre off the origin.
        let choice1 = resolve_hm_symbol("F d -3 m:1", false).unwrap();
        assert!(choice1.notes.is_empty() && choice1.origin_choice_1.is_none());
        assert!(choice1.operations.iter().any(|op| op.rotation[0][0] == -1.0
            && op.rotation[1][1] == -1.0
            && op.rotation[2][2] == -1.0
            && op.translation != [0.0; 3]
            && op.translation.iter().all(|t| (t - 0.25).abs() < 1e-9)));
    }

    /// Found by fuzzing real CIFs: these panicked inside moyo's Hall-symbol parser.
    #[test]
    fn malformed_hall_symbols_are_errors() {
        for symbol in [
            "",
            "-",
            "P -",
            "P 3 2\"x",
            "R 3 :H",
            "P 2 (0 0 x)",
            "P 2 (0 0",
            "P 3 2é",
            "P 2 (é 0 0)",
        ] {
            assert!(operations_of_hall_symbol(symbol).is_none(), "{symbol}");
            assert!(HallSymbol::new(symbol).is_none(), "{symbol}");
        }
        // Axes that no lattice combines generate an infinite group: refused, not enumerated.
        assert!(operations_of_hall_symbol("P 3 2^x").is_none());
        assert!(operations_of_hall_symbol("P 4 3x").is_none());
        // Every one of the 530 settings still reads.
        for hall in 1..=530 {
            assert!(
                HallSymbol::from_hall_number(hall).is_some(),
                "Hall number {hall}"
            );
        }
        // ITA's spelling (\" for a double-primed axis), in any case.
        assert_eq!(operations_of_hall_symbol("P 3 2\"").unwrap().len(), 6);
        assert_eq!(operations_of_hall_symbol("-p 2YBC").unwrap().len(), 4);
    }

    /// Found by the fuzz target: a = b, γ = 9° sent moyo 0.22's Bravais search into an endless
    /// loop (fixed in vendor/moyo). spglib 2.8 (pymatgen, symprec 0.01) says P2, No. 3.
    #[test]
    fn skewed_cell_terminates_with_spglibs_answer() {
        let cif = "data_x\n_cell_length_a 4.06027069\n_cell_length_b 4.06027069\n_cell_length_c 4.06027069\n\
            _cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 9\n_symmetry_space_group_name_H-M Pmm2\n\
            loop_\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n\
            Mg 0 0 0.00200934\nTe 0.5 0.5 0.50323229\nN 0 0.5 0.50032931\nO 0.5 0 0.50110424\nO 0.5 0.5 0.00347774\n";
        let s = crate::structure::read_cif(cif, &Default::default())
            .unwrap()
            .remove(0)
            .structure;
        assert_eq!(
            space_group(&s, SymmetryTolerance::default())
                .unwrap()
                .number,
            3
        );
    }
}
