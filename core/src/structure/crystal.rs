//! `Structure`: a periodic crystal — lattice plus sites with species and occupancies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::elements::{electronegativity_or_nan, element, symbol};
use super::lattice::Lattice;

/// An element with an optional oxidation state (e.g. Fe2+).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Species {
    /// Atomic number, 1 … 103.
    pub z: u8,
    pub oxidation: Option<f64>,
}

impl Species {
    pub fn symbol(&self) -> &'static str {
        symbol(self.z)
    }

    /// "Fe", "Fe2+", "O2-" as pymatgen writes species.
    pub fn label(&self) -> String {
        match self.oxidation {
            None => self.symbol().to_string(),
            Some(o) => {
                let sign = if o < 0.0 { '-' } else { '+' };
                let m = o.abs();
                let amount = if m.fract() == 0.0 {
                    format!("{}", m as i64)
                } else {
                    format!("{m}")
                };
                format!("{}{amount}{sign}", self.symbol())
            }
        }
    }
}

/// One site: fractional coordinates and what occupies it (occupancies sum to ≤ 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub frac: [f64; 3],
    pub species: Vec<(Species, f64)>,
    pub label: String,
    /// Magnetic moment in μB, Cartesian (as pymatgen's `magmom` site property), from a
    /// magnetic CIF's `_atom_site_moment` loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magmom: Option<[f64; 3]>,
}

impl Site {
    /// True when one species fully occupies the site.
    pub fn is_ordered(&self) -> bool {
        self.species.len() == 1 && (self.species[0].1 - 1.0).abs() < 1e-8
    }

    /// The atomic number of an ordered site.
    pub fn z(&self) -> Option<u8> {
        self.is_ordered().then(|| self.species[0].0.z)
    }

    /// Occupancy-weighted electronegativity over the occupied amount (pymatgen's `average_electroneg`).
    fn average_electronegativity(&self) -> f64 {
        let total: f64 = self.species.iter().map(|(_, o)| o.abs()).sum();
        self.species
            .iter()
            .map(|(s, o)| electronegativity_or_nan(s.z) * o.abs())
            .sum::<f64>()
            / total
    }

    /// pymatgen's `species_string`: "Fe" for an ordered site, "Fe:0.500, Ni:0.500" otherwise.
    pub fn species_string(&self) -> String {
        if self.is_ordered() {
            return self.species[0].0.label();
        }
        let mut sorted = self.species.clone();
        sorted.sort_by_key(|a| a.0.label());
        let parts: Vec<String> = sorted
            .iter()
            .map(|(s, o)| format!("{}:{o:.3}", s.label()))
            .collect();
        parts.join(", ")
    }
}

/// A site with partial or mixed occupancy, where one element per site is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("site {0} is disordered (partial or mixed occupancy)")]
pub struct DisorderedSite(pub usize);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    pub lattice: Lattice,
    pub sites: Vec<Site>,
}

impl Structure {
    pub fn volume(&self) -> f64 {
        self.lattice.volume()
    }

    /// The structure as a P1 CIF (cell parameters and one `_atom_site` row per species of
    /// each site, with its occupancy) in data block `name`: what viewers such as 3Dmol.js
    /// and VESTA read.
    pub fn to_cif(&self, name: &str) -> String {
        let [a, b, c] = self.lattice.lengths();
        let [alpha, beta, gamma] = self.lattice.angles();
        let block: String = name
            .chars()
            .map(|ch| if ch.is_ascii_graphic() { ch } else { '_' })
            .collect();
        let mut out = format!(
            "data_{block}\n_symmetry_space_group_name_H-M 'P 1'\n_symmetry_Int_Tables_number 1\n\
             _cell_length_a {a:.8}\n_cell_length_b {b:.8}\n_cell_length_c {c:.8}\n\
             _cell_angle_alpha {alpha:.8}\n_cell_angle_beta {beta:.8}\n_cell_angle_gamma {gamma:.8}\n\
             loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n\
             loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n\
             _atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
        );
        let mut n = 0;
        for site in &self.sites {
            for (species, occupancy) in &site.species {
                n += 1;
                let [x, y, z] = site.frac;
                let symbol = species.symbol();
                let _ = writeln!(
                    out,
                    "{symbol}{n} {symbol} {x:.8} {y:.8} {z:.8} {occupancy:.6}"
                );
            }
        }
        out
    }

    /// The structure repeated `n[0] × n[1] × n[2]` times (sites of each image cell in turn).
    pub fn supercell(&self, n: [usize; 3]) -> Structure {
        let n = n.map(|k| k.max(1));
        let m = &self.lattice.matrix;
        let lattice = Lattice::new(std::array::from_fn(|i| m[i].map(|x| x * n[i] as f64)));
        let mut sites = Vec::with_capacity(self.sites.len() * n.iter().product::<usize>());
        for a in 0..n[0] {
            for b in 0..n[1] {
                for c in 0..n[2] {
                    let shift = [a as f64, b as f64, c as f64];
                    sites.extend(self.sites.iter().map(|s| Site {
                        frac: std::array::from_fn(|k| (s.frac[k] + shift[k]) / n[k] as f64),
                        ..s.clone()
                    }));
                }
            }
        }
        Structure { lattice, sites }
    }

    /// True when every site holds one species with full occupancy.
    pub fn is_ordered(&self) -> bool {
        self.sites.iter().all(Site::is_ordered)
    }

    /// The element of every site of an ordered structure.
    pub fn atomic_numbers(&self) -> Result<Vec<u8>, DisorderedSite> {
        self.sites
            .iter()
            .enumerate()
            .map(|(i, s)| s.z().ok_or(DisorderedSite(i)))
            .collect()
    }

    /// Amount of each element (atomic number → sum of occupancies).
    pub fn composition(&self) -> BTreeMap<u8, f64> {
        let mut c = BTreeMap::new();
        for site in &self.sites {
            for (s, o) in &site.species {
                *c.entry(s.z).or_insert(0.0) += o;
            }
        }
        c
    }

    /// Density in g/cm³.
    pub fn density(&self) -> f64 {
        const AMU_G: f64 = 1.660_539_068_92e-24;
        let mass: f64 = self
            .composition()
            .iter()
            .map(|(z, n)| element(*z).map_or(0.0, |e| e.mass) * n)
            .sum();
        mass * AMU_G / (self.volume() * 1e-24)
    }

    /// Reduced formula as pymatgen's `Composition.reduced_formula` writes it (elements by
    /// electronegativity, a trailing polyanion pair in brackets, O2/N2/H2… for elemental gases).
    pub fn reduced_formula(&self) -> String {
        reduced_formula(&self.composition())
    }

    /// Sort sites as pymatgen's `get_sorted_structure` (stable, by electronegativity then
    /// species string), which is the site order pymatgen gives every structure it reads.
    pub fn sort_sites(&mut self) {
        let mut keyed: Vec<(f64, String, Site)> = std::mem::take(&mut self.sites)
            .into_iter()
            .map(|s| (s.average_electronegativity(), s.species_string(), s))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        self.sites = keyed.into_iter().map(|(_, _, s)| s).collect();
    }
}

const AMOUNT_TOLERANCE: f64 = 1e-8;

fn reduced_formula(composition: &BTreeMap<u8, f64>) -> String {
    let all_int = composition
        .values()
        .all(|v| (v - v.round()).abs() < AMOUNT_TOLERANCE);
    let mut syms: Vec<(u8, f64)> = composition
        .iter()
        .map(|(z, n)| (*z, *n))
        .filter(|(_, n)| n.abs() > AMOUNT_TOLERANCE)
        .collect();
    sort_by_electronegativity(&mut syms);
    if !all_int {
        // pymatgen falls back to the unreduced formula with explicit amounts.
        return syms
            .iter()
            .map(|(z, n)| format!("{}{}", symbol(*z), format_amount(*n, false)))
            .collect();
    }
    let ints: Vec<(u8, i64)> = syms.iter().map(|(z, n)| (*z, n.round() as i64)).collect();
    let formula = reduce_formula(&ints);
    match formula.as_str() {
        "LiO" => "LiO2".into(),
        "NaO" => "NaO2".into(),
        "KO" => "KO2".into(),
        "HO" => "H2O2".into(),
        "CsO" => "CsO2".into(),
        "RbO" => "RbO2".into(),
        "O" => "O2".into(),
        "N" => "N2".into(),
        "F" => "F2".into(),
        "Cl" => "Cl2".into(),
        "H" => "H2".into(),
        _ => formula,
    }
}

fn sort_by_electronegativity<T>(syms: &mut [(u8, T)]) {
    syms.sort_by(|a, b| {
        electronegativity_or_nan(a.0)
            .total_cmp(&electronegativity_or_nan(b.0))
            .then_with(|| symbol(a.0).cmp(symbol(b.0)))
    });
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// pymatgen's `reduce_formula` on integer amounts already sorted by electronegativity.
fn reduce_formula(syms: &[(u8, i64)]) -> String {
    let factor = syms.iter().fold(0, |g, (_, n)| gcd(g, *n)).max(1);
    let mut polyanion = String::new();
    let n = syms.len();
    if n >= 3 {
        let (last, second) = (syms[n - 1].0, syms[n - 2].0);
        if electronegativity_or_nan(last) - electronegativity_or_nan(second) < 1.65 {
            let pair = [
                (second, syms[n - 2].1 / factor),
                (last, syms[n - 1].1 / factor),
            ];
            let poly_factor = gcd(pair[0].1, pair[1].1).max(1);
            if poly_factor != 1 {
                let inner = reduce_formula(&pair);
                polyanion = format!("({inner}){poly_factor}");
            }
        }
    }
    let kept = if polyanion.is_empty() { n } else { n - 2 };
    let mut out = String::new();
    for (z, amount) in &syms[..kept] {
        let _ = write!(
            out,
            "{}{}",
            symbol(*z),
            format_amount((*amount / factor) as f64, true)
        );
    }
    out + &polyanion
}

/// pymatgen's `formula_double_format`.
fn format_amount(x: f64, ignore_ones: bool) -> String {
    if ignore_ones && x == 1.0 {
        String::new()
    } else if (x - x.round()).abs() < 1e-8 {
        format!("{}", x.round() as i64)
    } else {
        let s = format!("{x:.8}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(pairs: &[(u8, f64)]) -> BTreeMap<u8, f64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_p1_cif_reads_back_as_the_same_structure() {
        let lattice = Lattice::from_parameters(3.1, 4.2, 5.3, 80.0, 95.0, 101.0);
        let site = |frac: [f64; 3], species: Vec<(Species, f64)>| Site {
            frac,
            species,
            label: String::new(),
            magmom: None,
        };
        let sp = |z| Species { z, oxidation: None };
        let structure = Structure {
            lattice,
            sites: vec![
                site([0.0, 0.0, 0.0], vec![(sp(26), 1.0)]),
                site([0.5, 0.25, 0.75], vec![(sp(8), 1.0)]),
                site([0.1, 0.6, 0.3], vec![(sp(27), 0.5), (sp(28), 0.5)]),
            ],
        };
        let cif = structure.to_cif("x y");
        assert!(cif.starts_with("data_x_y\n"), "{cif}");
        let read = crate::structure::read_cif(&cif, &Default::default()).unwrap();
        let back = &read[0].structure;
        for (l, r) in back.lattice.matrix.iter().zip(&lattice.matrix) {
            for (x, y) in l.iter().zip(r) {
                assert!((x - y).abs() < 1e-6, "{:?} vs {:?}", back.lattice, lattice);
            }
        }
        assert_eq!(back.sites.len(), 3, "{cif}");
        // The reader may order sites its own way: match them by position.
        for s in &structure.sites {
            let b = back
                .sites
                .iter()
                .find(|b| {
                    b.frac
                        .iter()
                        .zip(&s.frac)
                        .all(|(x, y)| (x - y).abs() < 1e-7)
                })
                .unwrap_or_else(|| panic!("no site at {:?} in {cif}", s.frac));
            assert_eq!(b.species_string(), s.species_string());
        }
    }

    #[test]
    fn reduced_formulas_as_pymatgen() {
        // Values from pymatgen 2026.10 (Composition(...).reduced_formula).
        assert_eq!(reduced_formula(&comp(&[(20, 2.0), (8, 20.0)])), "CaO10");
        assert_eq!(reduced_formula(&comp(&[(6, 20.0)])), "C");
        assert_eq!(reduced_formula(&comp(&[(8, 4.0)])), "O2");
        assert_eq!(
            reduced_formula(&comp(&[(49, 1.0), (80, 1.0), (7, 2.0), (8, 1.0)])),
            "InHgN2O"
        );
        assert_eq!(
            reduced_formula(&comp(&[(56, 2.0), (16, 2.0), (8, 8.0)])),
            "BaSO4"
        );
        assert_eq!(
            reduced_formula(&comp(&[(26, 2.0), (7, 2.0), (8, 4.0), (3, 2.0)])),
            "LiFeNO2"
        );
        assert_eq!(
            reduced_formula(&comp(&[(20, 1.0), (7, 2.0), (8, 6.0)])),
            "Ca(NO3)2"
        );
        assert_eq!(
            reduced_formula(&comp(&[(26, 0.5), (28, 0.5), (8, 1.0)])),
            "Fe0.5Ni0.5O1"
        );
    }
}
