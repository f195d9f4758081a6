//! From a parsed CIF block to a [`Structure`], following what pymatgen's CifParser does so that
//! site counts, order and coordinates agree with it: sites related by a symmetry operation in
//! the asymmetric unit share one position (mixed occupancy), every position is expanded by all
//! operations and wrapped into [0, 1), duplicates within `site_tolerance` are merged, and sites
//! are finally sorted by electronegativity.

use super::CifError;
use super::symop::SymOp;
use super::syntax::{Block, Value, parse};
use crate::structure::crystal::{Site, Species, Structure};
use crate::structure::elements::atomic_number;
use crate::structure::lattice::{Lattice, dot};
use crate::structure::symmetry;

/// A cell with more sites than this is refused (expansion and dedup grow with its square).
pub const MAX_SITES: usize = 20_000;

/// Reader settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CifOptions {
    /// Two positions closer than this in every fractional coordinate (modulo 1) are one site
    /// (pymatgen's default `site_tolerance`).
    pub site_tolerance: f64,
    /// Occupancies of one site may add up to 1 + this and are then scaled to 1; more is an error.
    pub occupancy_tolerance: f64,
    /// Fractional coordinates within this relative distance of 1/3 or 2/3 are set to exactly
    /// that (files often write 0.6667), as pymatgen's `frac_tolerance` does.
    pub frac_tolerance: f64,
}

impl Default for CifOptions {
    fn default() -> Self {
        Self {
            site_tolerance: 1e-4,
            occupancy_tolerance: 1e-3,
            frac_tolerance: 1e-4,
        }
    }
}

/// A structure and the data block it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CifStructure {
    pub block: String,
    pub structure: Structure,
}

/// Reads every data block of a CIF that holds atom sites. Blocks without sites (publication or
/// global blocks) are skipped; a file with none is an error.
pub fn read_cif(text: &str, options: &CifOptions) -> Result<Vec<CifStructure>, CifError> {
    let blocks = parse(text)?;
    let mut out = Vec::new();
    for block in &blocks {
        if !has_sites(block) {
            continue;
        }
        let structure = structure_from_block(block, options)?;
        out.push(CifStructure {
            block: block.name.clone(),
            structure,
        });
    }
    if out.is_empty() {
        return Err(CifError::syntax(
            blocks[0].line,
            format!(
                "no data block with atom sites (_atom_site_fract_x) among {} block(s)",
                blocks.len()
            ),
        ));
    }
    Ok(out)
}

fn has_sites(block: &Block) -> bool {
    block.values("_atom_site_fract_x").is_some() || block.values("_atom_site_cartn_x").is_some()
}

struct Ctx<'a> {
    block: &'a Block,
}

impl Ctx<'_> {
    fn err(&self, line: usize, message: String) -> CifError {
        CifError::Content {
            block: self.block.name.clone(),
            line,
            message,
        }
    }

    fn number(&self, v: &Value, tag: &str) -> Result<f64, CifError> {
        parse_number(&v.text)
            .ok_or_else(|| self.err(v.line, format!("{tag}: '{}' is not a number", v.text)))
    }

    fn required(&self, tag: &str) -> Result<f64, CifError> {
        match self.block.value(tag) {
            Some(v) if !v.is_missing() => self.number(v, tag),
            Some(v) => Err(self.err(v.line, format!("{tag} is unknown ('{}')", v.text))),
            None => Err(self.err(self.block.line, format!("{tag} is missing"))),
        }
    }
}

/// A CIF number: `5.4310(2)` → 5.431, `-.5` → -0.5; `?`, `.` and text are not numbers.
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = match t.find('(') {
        Some(i) if t.ends_with(')') => &t[..i],
        _ => t,
    };
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn structure_from_block(block: &Block, options: &CifOptions) -> Result<Structure, CifError> {
    let ctx = Ctx { block };
    let lattice = lattice(&ctx)?;
    let ops = operations(&ctx)?;
    // Asymmetric unit: rows whose positions are related by an operation share a site.
    let mut asym: Vec<AsymSite> = Vec::new();
    for row in site_rows(&ctx, &lattice, options)? {
        let matched = asym.iter_mut().find(|a| {
            ops.iter()
                .any(|op| close_pbc(&op.apply(row.frac), &a.frac, options.site_tolerance))
        });
        match matched {
            Some(site) => {
                for (species, occupancy) in row.species {
                    add_species(&mut site.species, species, occupancy);
                }
            }
            None => asym.push(row),
        }
    }

    // Groups of equal composition, each expanded over all operations.
    let mut sites: Vec<Site> = Vec::new();
    let mut done = vec![false; asym.len()];
    for i in 0..asym.len() {
        if done[i] {
            continue;
        }
        let mut generated: Vec<([f64; 3], usize)> = Vec::new();
        for j in i..asym.len() {
            if done[j] || !same_composition(&asym[j].species, &asym[i].species) {
                continue;
            }
            done[j] = true;
            for op in &ops {
                let c = op.apply(asym[j].frac).map(|x| x - x.floor());
                if !generated
                    .iter()
                    .any(|(g, _)| close_pbc(&c, g, options.site_tolerance))
                {
                    generated.push((c, j));
                    if sites.len() + generated.len() > MAX_SITES {
                        let message = format!(
                            "more than {MAX_SITES} sites after applying the symmetry operations"
                        );
                        return Err(ctx.err(asym[j].line, message));
                    }
                }
            }
        }
        for (frac, j) in generated {
            let AsymSite {
                species,
                label,
                line,
                ..
            } = &asym[j];
            let total: f64 = species.iter().map(|(_, o)| o).sum();
            if total > 1.0 + options.occupancy_tolerance {
                return Err(ctx.err(
                    *line,
                    format!("site {label}: occupancies add up to {total:.4} > 1"),
                ));
            }
            let scale = if total > 1.0 { 1.0 / total } else { 1.0 };
            sites.push(Site {
                frac,
                species: species.iter().map(|(s, o)| (*s, o * scale)).collect(),
                label: label.clone(),
            });
        }
    }
    if sites.is_empty() {
        return Err(ctx.err(block.line, "no occupied atom sites".into()));
    }
    let mut structure = Structure { lattice, sites };
    structure.sort_sites();
    Ok(structure)
}

/// A position of the asymmetric unit and what occupies it, with the CIF line it came from.
struct AsymSite {
    frac: [f64; 3],
    species: Vec<(Species, f64)>,
    label: String,
    line: usize,
}

fn add_species(species: &mut Vec<(Species, f64)>, s: Species, occupancy: f64) {
    match species.iter_mut().find(|(x, _)| *x == s) {
        Some((_, o)) => *o += occupancy,
        None => species.push((s, occupancy)),
    }
}

fn same_composition(a: &[(Species, f64)], b: &[(Species, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(s, o)| b.iter().any(|(t, p)| s == t && (o - p).abs() < 1e-8))
}

fn close_pbc(a: &[f64; 3], b: &[f64; 3], tol: f64) -> bool {
    (0..3).all(|i| {
        let d = a[i] - b[i];
        (d - d.round()).abs() < tol
    })
}

fn lattice(ctx: &Ctx) -> Result<Lattice, CifError> {
    let a = ctx.required("_cell_length_a")?;
    let b = ctx.required("_cell_length_b")?;
    let c = ctx.required("_cell_length_c")?;
    let alpha = ctx.required("_cell_angle_alpha")?;
    let beta = ctx.required("_cell_angle_beta")?;
    let gamma = ctx.required("_cell_angle_gamma")?;
    let line = |tag: &str| ctx.block.value(tag).map_or(ctx.block.line, |v| v.line);
    for (tag, v) in [
        ("_cell_length_a", a),
        ("_cell_length_b", b),
        ("_cell_length_c", c),
    ] {
        if v <= 0.0 {
            return Err(ctx.err(line(tag), format!("{tag} must be positive, got {v}")));
        }
    }
    for (tag, v) in [
        ("_cell_angle_alpha", alpha),
        ("_cell_angle_beta", beta),
        ("_cell_angle_gamma", gamma),
    ] {
        if !(v > 0.0 && v < 180.0) {
            return Err(ctx.err(
                line(tag),
                format!("{tag} must lie between 0 and 180 degrees, got {v}"),
            ));
        }
    }
    let lattice = Lattice::from_parameters(a, b, c, alpha, beta, gamma);
    let volume = lattice.volume();
    if volume.is_nan() || volume <= 1e-3 * a * b * c {
        return Err(ctx.err(
            line("_cell_angle_gamma"),
            format!("the cell angles {alpha}, {beta}, {gamma} give a degenerate cell (volume {volume:.3e} Å³)"),
        ));
    }
    // As pymatgen's CifParser: a cell thinner than this is a typo, and would make every
    // neighbour search explode.
    let thinnest = lattice
        .plane_spacings()
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    if thinnest < 0.01 {
        return Err(ctx.err(
            line("_cell_angle_gamma"),
            format!("the cell is only {thinnest:.2e} Å thick between lattice planes"),
        ));
    }
    Ok(lattice)
}

/// Tags that list operations as triplets, in the order pymatgen looks for them.
const SYMOP_TAGS: [&str; 6] = [
    "_symmetry_equiv_pos_as_xyz",
    "_symmetry_equiv_pos_as_xyz_",
    "_space_group_symop_operation_xyz",
    "_space_group_symop_operation_xyz_",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv.pos_as_xyz",
];
const HALL_TAGS: [&str; 3] = [
    "_symmetry_space_group_name_hall",
    "_space_group_name_hall",
    "_space_group.name_hall",
];
const HM_TAGS: [&str; 5] = [
    "_symmetry_space_group_name_h-m",
    "_space_group_name_h-m_alt",
    "_space_group_name_h-m",
    "_space_group.name_h-m_alt",
    "_symmetry_space_group_name_h-m_alt",
];
const NUMBER_TAGS: [&str; 4] = [
    "_space_group_it_number",
    "_symmetry_int_tables_number",
    "_space_group.it_number",
    "_space_group_it_number_",
];

fn operations(ctx: &Ctx) -> Result<Vec<SymOp>, CifError> {
    for tag in SYMOP_TAGS {
        if let Some(values) = ctx.block.values(tag) {
            let mut ops = Vec::with_capacity(values.len());
            for v in values {
                // Some writers put the site id in the same value: "1 x,y,z".
                let text = v.text.trim();
                let text = match text.split_once(char::is_whitespace) {
                    Some((id, rest)) if id.chars().all(|c| c.is_ascii_digit()) => rest,
                    _ => text,
                };
                ops.push(SymOp::parse(text).map_err(|e| ctx.err(v.line, format!("{tag}: {e}")))?);
            }
            if !ops.is_empty() {
                return Ok(ops);
            }
        }
    }
    let block = ctx.block;
    let present = |tags: &[&'static str]| -> Option<(&'static str, &Value)> {
        tags.iter()
            .find_map(|t| block.value(t).filter(|v| !v.is_missing()).map(|v| (*t, v)))
    };
    if let Some((tag, v)) = present(&HALL_TAGS) {
        return symmetry::operations_of_hall_symbol(&v.text)
            .ok_or_else(|| ctx.err(v.line, format!("{tag}: unknown Hall symbol '{}'", v.text)));
    }
    if let Some((tag, v)) = present(&HM_TAGS) {
        if let Some(ops) = symmetry::operations_of_hm_symbol(&v.text) {
            return Ok(ops);
        }
        if present(&NUMBER_TAGS).is_none() {
            return Err(ctx.err(
                v.line,
                format!("{tag}: unknown space-group symbol '{}'", v.text),
            ));
        }
    }
    if let Some((tag, v)) = present(&NUMBER_TAGS) {
        let n = parse_number(&v.text).filter(|n| n.fract() == 0.0 && (1.0..=230.0).contains(n));
        return n
            .and_then(|n| symmetry::operations_of_number(n as u16))
            .ok_or_else(|| {
                ctx.err(
                    v.line,
                    format!("{tag}: '{}' is not a space-group number 1–230", v.text),
                )
            });
    }
    // No symmetry given at all: the sites are the whole cell (P1), as pymatgen assumes.
    Ok(vec![SymOp::IDENTITY])
}

/// The occupied rows of the atom-site loop, one species each, in file order.
fn site_rows(
    ctx: &Ctx,
    lattice: &Lattice,
    options: &CifOptions,
) -> Result<Vec<AsymSite>, CifError> {
    let block = ctx.block;
    let cartesian = block.values("_atom_site_fract_x").is_none();
    let axes: [&str; 3] = if cartesian {
        [
            "_atom_site_cartn_x",
            "_atom_site_cartn_y",
            "_atom_site_cartn_z",
        ]
    } else {
        [
            "_atom_site_fract_x",
            "_atom_site_fract_y",
            "_atom_site_fract_z",
        ]
    };
    let column = |tag: &str| block.values(tag);
    let coords: Vec<Vec<&Value>> = axes
        .iter()
        .map(|t| column(t).ok_or_else(|| ctx.err(block.line, format!("{t} is missing"))))
        .collect::<Result<_, _>>()?;
    let n = coords[0].len();
    let first_line = coords[0].first().map_or(block.line, |v| v.line);
    let types = column("_atom_site_type_symbol");
    let labels = column("_atom_site_label");
    let occupancies = column("_atom_site_occupancy");
    for (name, col) in [
        ("_atom_site_type_symbol", &types),
        ("_atom_site_label", &labels),
        ("_atom_site_occupancy", &occupancies),
    ] {
        if let Some(c) = col
            && c.len() != n
        {
            return Err(ctx.err(
                first_line,
                format!("{name} has {} values for {n} sites", c.len()),
            ));
        }
    }
    if coords.iter().any(|c| c.len() != n) {
        return Err(ctx.err(
            first_line,
            "the x, y and z coordinate columns differ in length".into(),
        ));
    }
    let reciprocal = lattice.reciprocal_crystallographic();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let line = coords[0][i].line;
        let label = labels.as_ref().map(|l| l[i].text.clone());
        let symbol_value = types
            .as_ref()
            .map(|t| t[i])
            .or(labels.as_ref().map(|l| l[i]));
        let Some(symbol_value) = symbol_value else {
            return Err(ctx.err(
                line,
                "sites have neither _atom_site_type_symbol nor _atom_site_label".into(),
            ));
        };
        let species = parse_species(&symbol_value.text).ok_or_else(|| {
            ctx.err(
                symbol_value.line,
                format!("'{}' does not name a chemical element", symbol_value.text),
            )
        })?;
        let occupancy = match occupancies.as_ref().map(|o| o[i]) {
            Some(v) if !v.is_missing() => ctx.number(v, "_atom_site_occupancy")?,
            _ => 1.0,
        };
        if occupancy > 1.0 + 1e-6 {
            return Err(ctx.err(
                line,
                format!(
                    "occupancy {occupancy} of site {} is above 1",
                    label.as_deref().unwrap_or("?")
                ),
            ));
        }
        if occupancy <= 0.0 {
            continue; // Vacant sites carry no atom.
        }
        let mut xyz = [0.0; 3];
        for (k, axis) in axes.iter().enumerate() {
            let v = coords[k][i];
            if v.is_missing() {
                return Err(ctx.err(
                    v.line,
                    format!(
                        "{axis} of site {} is unknown ('{}')",
                        label.as_deref().unwrap_or("?"),
                        v.text
                    ),
                ));
            }
            xyz[k] = ctx.number(v, axis)?;
        }
        if cartesian {
            xyz = std::array::from_fn(|j| dot(xyz, reciprocal.matrix[j]));
        } else {
            for x in &mut xyz {
                for ideal in [1.0 / 3.0, 2.0 / 3.0] {
                    if (*x / ideal - 1.0).abs() <= options.frac_tolerance {
                        *x = ideal;
                    }
                }
            }
        }
        out.push(AsymSite {
            frac: xyz,
            species: vec![(species, occupancy)],
            label: label.unwrap_or_else(|| species.symbol().to_string()),
            line,
        });
    }
    Ok(out)
}

/// "Fe", "Fe2+", "O2-", "Cl-", "Fe1" (a label), "FE", "D" (deuterium) → species.
pub fn parse_species(text: &str) -> Option<Species> {
    let letters: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let rest = &text[letters.len()..];
    let mut chars = letters.chars();
    let first = chars.next()?.to_ascii_uppercase();
    let second = chars.next().map(|c| c.to_ascii_lowercase());
    let candidates = [
        second.map(|s| format!("{first}{s}")),
        Some(first.to_string()),
    ];
    let z = candidates
        .into_iter()
        .flatten()
        .find_map(|s| match s.as_str() {
            "D" | "T" => Some(1),
            s => atomic_number(s),
        })?;
    let oxidation = if letters.len() <= 2 {
        parse_oxidation(rest)
    } else {
        None
    };
    Some(Species { z, oxidation })
}

/// "2+", "3-", "+", "-", "+2", "0.5+"; anything else (site numbers of labels) is no charge.
fn parse_oxidation(s: &str) -> Option<f64> {
    let (num, sign) = if let Some(n) = s.strip_suffix('+') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('-') {
        (n, -1.0)
    } else if let Some(n) = s.strip_prefix('+') {
        (n, 1.0)
    } else if let Some(n) = s.strip_prefix('-') {
        (n, -1.0)
    } else {
        return None;
    };
    if num.is_empty() {
        return Some(sign);
    }
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn species_symbols() {
        let s = |t: &str| parse_species(t).map(|s| (s.z, s.oxidation));
        assert_eq!(s("Fe2+"), Some((26, Some(2.0))));
        assert_eq!(s("O2-"), Some((8, Some(-2.0))));
        assert_eq!(s("Cl-"), Some((17, Some(-1.0))));
        assert_eq!(s("Fe1"), Some((26, None)));
        assert_eq!(s("Ca1A"), Some((20, None)));
        assert_eq!(s("FE"), Some((26, None)));
        assert_eq!(s("Xx"), None);
        assert_eq!(s("12"), None);
    }

    #[test]
    fn numbers_with_uncertainty() {
        assert_eq!(parse_number("5.4310(2)"), Some(5.431));
        assert_eq!(parse_number("-.5"), Some(-0.5));
        assert_eq!(parse_number("?"), None);
        assert_eq!(parse_number("1e400"), None);
    }

    const ROCKSALT: &str = "data_NaCl\n_cell_length_a 5.64(1)\n_cell_length_b 5.64\n_cell_length_c 5.64\n\
        _cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n\
        _symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n\
        _atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 Na+ 0 0 0\nCl1 Cl- 0.5 0.5 0.5\n";

    #[test]
    fn expands_a_space_group_given_by_name() {
        let s = &read_cif(ROCKSALT, &CifOptions::default()).unwrap()[0].structure;
        assert_eq!(s.sites.len(), 8);
        assert_eq!(s.reduced_formula(), "NaCl");
        assert!(
            s.sites
                .iter()
                .all(|x| x.frac.iter().all(|c| (0.0..1.0).contains(c)))
        );
        // Na (less electronegative) first, as pymatgen orders sites.
        assert_eq!(s.sites[0].species[0].0.z, 11);
        assert_eq!(s.sites[7].species[0].0.z, 17);
    }

    #[test]
    fn mixed_occupancy_shares_a_site() {
        let cif = "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n\
            _cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_label\n_atom_site_fract_x\n\
            _atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\nFe1 0 0 0 0.5\nNi1 0 0 0 0.5\nO1 0.5 0.5 0.5 1\n";
        let s = &read_cif(cif, &CifOptions::default()).unwrap()[0].structure;
        assert_eq!(s.sites.len(), 2);
        assert!(!s.is_ordered());
        assert_eq!(s.reduced_formula(), "Fe0.5Ni0.5O1");
    }

    /// Found by the fuzz target: a site loop with no rows.
    #[test]
    fn empty_site_loop_is_an_error() {
        let cif = "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n\
            _cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_label\n_atom_site_fract_x\n\
            _atom_site_fract_y\n_atom_site_fract_z\nloop_\n_atom_site_type_symbol\n_atom_site_occupancy\nFe 1\n";
        assert!(read_cif(cif, &CifOptions::default()).is_err());
    }

    #[test]
    fn content_errors_name_lines() {
        let bad = ROCKSALT.replace("Cl1 Cl- 0.5", "Cl1 Cl- zero");
        let e = read_cif(&bad, &CifOptions::default()).unwrap_err();
        assert_eq!(e.line(), 16, "{e}");
        let bad = ROCKSALT.replace("Cl1 Cl-", "Cl1 Qq");
        assert_eq!(
            read_cif(&bad, &CifOptions::default()).unwrap_err().line(),
            16
        );
        let bad = ROCKSALT.replace("_cell_angle_beta 90", "_cell_angle_beta 190");
        assert_eq!(
            read_cif(&bad, &CifOptions::default()).unwrap_err().line(),
            6
        );
        let bad = ROCKSALT.replace("'F m -3 m'", "'F q -3 m'");
        assert_eq!(
            read_cif(&bad, &CifOptions::default()).unwrap_err().line(),
            8
        );
    }
}
