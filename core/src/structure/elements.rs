//! The periodic table xtal knows (H … Lr), read from `core/data/elements.tsv`, a table generated
//! from pymatgen's element data so that masses, electronegativities and sort orders agree with it.

use std::sync::OnceLock;

/// Data of one element; unknown values are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementData {
    pub z: u8,
    pub symbol: &'static str,
    /// Standard atomic mass (amu).
    pub mass: f64,
    /// Pauling electronegativity (none for He, Ne, Ar).
    pub electronegativity: Option<f64>,
    pub period: u8,
    pub group: u8,
    /// 's', 'p', 'd' or 'f'.
    pub block: char,
    /// Atomic radius (Å).
    pub radius: Option<f64>,
    /// First ionisation energy (eV).
    pub ionization: Option<f64>,
    /// Electron affinity (eV).
    pub affinity: Option<f64>,
    /// Molar volume (cm³/mol).
    pub molar_volume: Option<f64>,
}

/// Number of elements in the table (H … Lr).
pub const NUM_ELEMENTS: usize = 103;

const TABLE_TSV: &str = include_str!("../../data/elements.tsv");

/// All elements, index `z - 1`.
pub fn elements() -> &'static [ElementData] {
    static TABLE: OnceLock<Vec<ElementData>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table: Vec<ElementData> = TABLE_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("z\t") && !l.is_empty())
            .map(parse_row)
            .collect();
        assert_eq!(
            table.len(),
            NUM_ELEMENTS,
            "core/data/elements.tsv is incomplete"
        );
        table
    })
}

// The table is compiled into the binary and checked by tests, so a malformed row is a build defect.
fn parse_row(line: &'static str) -> ElementData {
    let f: Vec<&'static str> = line.split('\t').collect();
    let opt = |s: &str| s.parse::<f64>().ok();
    ElementData {
        z: f[0].parse().expect("z"),
        symbol: f[1],
        mass: f[2].parse().expect("mass"),
        electronegativity: opt(f[3]),
        period: f[4].parse().expect("period"),
        group: f[5].parse().expect("group"),
        block: f[6].chars().next().expect("block"),
        radius: opt(f[7]),
        ionization: opt(f[8]),
        affinity: opt(f[9]),
        molar_volume: opt(f[10]),
    }
}

/// Element by atomic number (1 … 103).
pub fn element(z: u8) -> Option<&'static ElementData> {
    elements().get((z as usize).checked_sub(1)?)
}

/// Atomic number of an element symbol (exact case, e.g. "Fe").
pub fn atomic_number(symbol: &str) -> Option<u8> {
    elements().iter().find(|e| e.symbol == symbol).map(|e| e.z)
}

/// Symbol of an atomic number; "X" when unknown (never happens for a parsed structure).
pub fn symbol(z: u8) -> &'static str {
    element(z).map(|e| e.symbol).unwrap_or("X")
}

/// Electronegativity for ordering as pymatgen does; unknown values are NaN there.
pub fn electronegativity_or_nan(z: u8) -> f64 {
    element(z)
        .and_then(|e| e.electronegativity)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_ordered() {
        let t = elements();
        assert_eq!(t.len(), 103);
        assert!(t.iter().enumerate().all(|(i, e)| e.z as usize == i + 1));
        assert_eq!(atomic_number("Fe"), Some(26));
        assert_eq!(symbol(103), "Lr");
        assert!((element(8).unwrap().mass - 15.9994).abs() < 1e-9);
    }
}
