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
    let canon = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let (body, choice) = match symbol.split_once(':') {
        Some((b, c)) => (b.to_string(), Some(c.trim().to_ascii_lowercase())),
        None => {
            let t = symbol.trim();
            match t.strip_suffix(" H").or_else(|| t.strip_suffix(" R")) {
                Some(b) => (b.to_string(), Some(t[t.len() - 1..].to_ascii_lowercase())),
                None => (t.to_string(), None),
            }
        }
    };
    let wanted = canon(&body);
    let standard = Setting::Standard.hall_numbers();
    let mut candidates: Vec<i32> = (1..=530)
        .filter(|&h| {
            hall_symbol_entry(h)
                .is_some_and(|e| canon(e.hm_short) == wanted || canon(e.hm_full) == wanted)
        })
        .collect();
    if let Some(choice) = choice {
        let picked: Vec<i32> = candidates
            .iter()
            .copied()
            .filter(|&h| {
                hall_symbol_entry(h)
                    .is_some_and(|e| e.setting.to_ascii_lowercase().ends_with(&choice))
            })
            .collect();
        if !picked.is_empty() {
            candidates = picked;
        }
    }
    // Prefer the standard setting (origin choice 2, hexagonal axes) when the symbol is ambiguous.
    let hall = candidates
        .iter()
        .copied()
        .find(|h| standard.contains(h))
        .or(candidates.first().copied())?;
    operations_of_hall_number(hall)
}

/// Operations of a space group given by a Hall symbol ("-P 2ybc").
pub fn operations_of_hall_symbol(symbol: &str) -> Option<Vec<SymOp>> {
    HallSymbol::new(symbol.trim()).map(|h| all_operations(&h))
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
