//! From a parsed CIF block to a [`Structure`], following what pymatgen's CifParser does so that
//! site counts, order and coordinates agree with it: sites related by a symmetry operation in
//! the asymmetric unit share one position (mixed occupancy), every position is expanded by all
//! operations and wrapped into [0, 1), duplicates within `site_tolerance` are merged, and sites
//! are finally sorted by electronegativity. What the reader assumes on the way (a default cell
//! angle, a symbol variant, legacy syntax) is a [`CifWarning`] on the structure.

use std::cell::RefCell;

use super::operations::{BlockOperations, operations};
use super::syntax::{Block, Value, decode, parse};
use super::values::{parse_number, parse_species};
use super::{CifError, CifWarning};
use crate::structure::crystal::{Site, Species, Structure};
use crate::structure::lattice::{Lattice, dot};

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

/// A structure, the data block it came from, and what was assumed to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct CifStructure {
    pub block: String,
    pub structure: Structure,
    pub warnings: Vec<CifWarning>,
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
        let (structure, warnings) = structure_from_block(block, options)?;
        out.push(CifStructure {
            block: block.name.clone(),
            structure,
            warnings,
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

/// [`read_cif`] on a file's bytes: UTF-8, or Latin-1 with a warning.
pub fn read_cif_bytes(bytes: &[u8], options: &CifOptions) -> Result<Vec<CifStructure>, CifError> {
    let (text, warning) = decode(bytes);
    let mut out = read_cif(&text, options)?;
    if let Some(w) = warning {
        for s in &mut out {
            s.warnings.insert(0, w.clone());
        }
    }
    Ok(out)
}

/// A block with at least one atom-site row that gives a coordinate (rows of `?` placeholders,
/// as the Pauling File writes for cells it has no sites for, are not sites).
fn has_sites(block: &Block) -> bool {
    ["_atom_site_fract_x", "_atom_site_cartn_x"]
        .iter()
        .any(|tag| {
            block
                .values(tag)
                .is_some_and(|v| v.iter().any(|x| !(x.is_missing() && x.text == "?")))
        })
}

/// One block being read: its values, and the warnings gathered on the way.
pub(super) struct Ctx<'a> {
    pub block: &'a Block,
    warnings: RefCell<Vec<CifWarning>>,
}

impl Ctx<'_> {
    pub fn err(&self, line: usize, message: String) -> CifError {
        CifError::Content {
            block: self.block.name.clone(),
            line,
            message,
        }
    }

    pub fn warn(&self, line: usize, message: String) {
        let mut warnings = self.warnings.borrow_mut();
        let w = CifWarning { line, message };
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }

    fn number(&self, v: &Value, tag: &str) -> Result<f64, CifError> {
        parse_number(&v.text)
            .ok_or_else(|| self.err(v.line, format!("{tag}: '{}' is not a number", v.text)))
    }

    /// A number the file must give, or `None` when the tag is absent altogether.
    fn optional(&self, tag: &str) -> Result<Option<f64>, CifError> {
        match self.block.value(tag) {
            Some(v) if !v.is_missing() => self.number(v, tag).map(Some),
            Some(v) => Err(self.err(v.line, format!("{tag} is unknown ('{}')", v.text))),
            None => Ok(None),
        }
    }

    fn line_of(&self, tag: &str) -> usize {
        self.block.value(tag).map_or(self.block.line, |v| v.line)
    }
}

fn structure_from_block(
    block: &Block,
    options: &CifOptions,
) -> Result<(Structure, Vec<CifWarning>), CifError> {
    let ctx = Ctx {
        block,
        warnings: RefCell::new(block.warnings.clone()),
    };
    refuse_modulated(&ctx)?;
    let cell = CellParameters::read(&ctx)?;
    let BlockOperations {
        ops,
        time_reversal,
        origin_choice_1,
    } = operations(&ctx, cell.rhombohedral())?;
    let lattice = cell.lattice(&ctx, &ops)?;
    let rows = site_rows(&ctx, &lattice, options)?;
    let mut sites = expand(&ctx, &rows, &ops, &time_reversal, &lattice, options)?;
    if let Some(ops_1) = origin_choice_1 {
        // The symbol leaves the origin open. Under the wrong one, atoms on special positions
        // land on general ones: more sites, some too close. Keep the choice with fewer sites,
        // then the one with atoms further apart, then the standard (2).
        let plain = vec![1.0; ops_1.len()];
        // An expansion that fails under origin choice 1 (occupancies over 1) rules it out.
        let sites_1 = expand(&ctx, &rows, &ops_1, &plain, &lattice, options).unwrap_or_default();
        let (n2, n1) = (sites.len(), sites_1.len());
        let use_1 = n1 > 0
            && match n1.cmp(&n2) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                // All-pairs distances: only for cells small enough to afford them.
                std::cmp::Ordering::Equal => {
                    n1 <= 2_000 && closest_pair(&lattice, &sites_1) > closest_pair(&lattice, &sites)
                }
            };
        let line = rows.first().map_or(block.line, |r| r.line);
        if use_1 {
            sites = sites_1;
            ctx.warn(line, format!("the space-group symbol does not say which origin choice: origin choice 1 is used, under which the sites expand to {n1} positions ({n2} under origin choice 2)"));
        } else {
            ctx.warn(line, format!("the space-group symbol does not say which origin choice: origin choice 2 (the standard) is used, under which the sites expand to {n2} positions ({n1} under origin choice 1)"));
        }
    }
    let mut structure = Structure { lattice, sites };
    structure.sort_sites();
    Ok((structure, ctx.warnings.into_inner()))
}

/// An incommensurately modulated structure (a superspace group, wave vectors) has no periodic
/// cell of its own: reading only its average structure would be a wrong answer, so it is refused.
fn refuse_modulated(ctx: &Ctx) -> Result<(), CifError> {
    let dimension = ctx
        .block
        .value("_cell_modulation_dimension")
        .and_then(|v| parse_number(&v.text).map(|d| (v.line, d)));
    let wave = ctx
        .block
        .looped("_cell_wave_vector_x")
        .map(|(l, _)| (l.line, 1.0));
    match dimension.or(wave) {
        Some((line, d)) if d > 0.0 => Err(ctx.err(
            line,
            "an incommensurately modulated structure (superspace group): xtal reads periodic \
             crystals only, and its average structure would not be this one"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The sites of the cell: the asymmetric unit's rows merged where an operation relates them
/// (mixed occupancy), then expanded by every operation.
fn expand(
    ctx: &Ctx,
    rows: &[AsymSite],
    ops: &[super::SymOp],
    time_reversal: &[f64],
    lattice: &Lattice,
    options: &CifOptions,
) -> Result<Vec<Site>, CifError> {
    // Asymmetric unit: rows whose positions are related by an operation share a site.
    let mut asym: Vec<AsymSite> = Vec::new();
    for row in rows {
        let matched = asym.iter_mut().find(|a| {
            ops.iter()
                .any(|op| close_pbc(&op.apply(row.frac), &a.frac, options.site_tolerance))
        });
        match matched {
            Some(site) => {
                for (species, occupancy) in &row.species {
                    add_species(&mut site.species, *species, *occupancy);
                }
                site.moment = site.moment.or(row.moment);
            }
            None => asym.push(row.clone()),
        }
    }

    // Groups of equal composition, each expanded over all operations.
    let mut sites: Vec<Site> = Vec::new();
    let mut done = vec![false; asym.len()];
    for i in 0..asym.len() {
        if done[i] {
            continue;
        }
        let mut generated: Vec<([f64; 3], usize, usize)> = Vec::new();
        for j in i..asym.len() {
            if done[j] || !same_composition(&asym[j].species, &asym[i].species) {
                continue;
            }
            done[j] = true;
            for (k, op) in ops.iter().enumerate() {
                let c = op.apply(asym[j].frac).map(|x| x - x.floor());
                if !generated
                    .iter()
                    .any(|(g, _, _)| close_pbc(&c, g, options.site_tolerance))
                {
                    generated.push((c, j, k));
                    if sites.len() + generated.len() > MAX_SITES {
                        let message = format!(
                            "more than {MAX_SITES} sites after applying the symmetry operations"
                        );
                        return Err(ctx.err(asym[j].line, message));
                    }
                }
            }
        }
        for (frac, j, k) in generated {
            let AsymSite {
                species,
                label,
                line,
                moment,
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
                magmom: moment.map(|m| {
                    let rotated = rotate_moment(lattice, &ops[k].rotation, m);
                    cartesian_moment(lattice, rotated.map(|x| x * time_reversal[k]))
                }),
            });
        }
    }
    if sites.is_empty() {
        return Err(ctx.err(ctx.block.line, "no occupied atom sites".into()));
    }
    Ok(sites)
}

/// The shortest distance between two sites (Å), over neighbouring cells; infinity for one site.
fn closest_pair(lattice: &Lattice, sites: &[Site]) -> f64 {
    let mut best = f64::INFINITY;
    for (i, a) in sites.iter().enumerate() {
        for b in &sites[i + 1..] {
            for shift in 0..27 {
                let cell = [shift / 9, shift / 3 % 3, shift % 3].map(|c| c as f64 - 1.0);
                let d: [f64; 3] = std::array::from_fn(|k| {
                    let x = b.frac[k] - a.frac[k];
                    x - x.round() + cell[k]
                });
                let cart = lattice.to_cartesian(d);
                best = best.min(dot(cart, cart).sqrt());
            }
        }
    }
    best
}

/// A position of the asymmetric unit and what occupies it, with the CIF line it came from.
#[derive(Clone)]
struct AsymSite {
    frac: [f64; 3],
    species: Vec<(Species, f64)>,
    label: String,
    line: usize,
    /// Magnetic moment along the unit cell axes (μB), as `_atom_site_moment` gives it.
    moment: Option<[f64; 3]>,
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

/// An axial vector given along the unit cell axes, moved by a rotation that acts on fractional
/// coordinates: in lattice coefficients it is R·m, times det R (a moment is axial).
fn rotate_moment(lattice: &Lattice, rotation: &[[f64; 3]; 3], m: [f64; 3]) -> [f64; 3] {
    let lengths = lattice.lengths();
    let coeff: [f64; 3] = std::array::from_fn(|i| m[i] / lengths[i]);
    let det = crate::structure::lattice::det(rotation);
    std::array::from_fn(|i| det * dot(rotation[i], coeff) * lengths[i])
}

/// Components along the unit cell axes (μB) → Cartesian, as pymatgen's
/// `Magmom.from_moment_relative_to_crystal_axes`.
fn cartesian_moment(lattice: &Lattice, m: [f64; 3]) -> [f64; 3] {
    let lengths = lattice.lengths();
    std::array::from_fn(|j| {
        (0..3)
            .map(|i| m[i] * lattice.matrix[i][j] / lengths[i])
            .sum()
    })
}

/// The cell as the file gives it; angles it leaves out are filled in (with a warning) once the
/// operations are known.
struct CellParameters {
    lengths: [f64; 3],
    angles: [Option<f64>; 3],
}

const LENGTH_TAGS: [&str; 3] = ["_cell_length_a", "_cell_length_b", "_cell_length_c"];
const ANGLE_TAGS: [&str; 3] = ["_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"];

impl CellParameters {
    fn read(ctx: &Ctx) -> Result<Self, CifError> {
        let mut lengths = [0.0; 3];
        for (k, tag) in LENGTH_TAGS.iter().enumerate() {
            let v = ctx
                .optional(tag)?
                .ok_or_else(|| ctx.err(ctx.block.line, format!("{tag} is missing")))?;
            if v <= 0.0 {
                return Err(ctx.err(ctx.line_of(tag), format!("{tag} must be positive, got {v}")));
            }
            lengths[k] = v;
        }
        let mut angles = [None; 3];
        for (k, tag) in ANGLE_TAGS.iter().enumerate() {
            if let Some(v) = ctx.optional(tag)? {
                if !(v > 0.0 && v < 180.0) {
                    return Err(ctx.err(
                        ctx.line_of(tag),
                        format!("{tag} must lie between 0 and 180 degrees, got {v}"),
                    ));
                }
                angles[k] = Some(v);
            }
        }
        Ok(Self { lengths, angles })
    }

    /// a = b = c and α = β = γ ≠ 90°: a rhombohedral cell on rhombohedral axes.
    fn rhombohedral(&self) -> bool {
        let [a, b, c] = self.lengths;
        let same = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(y.abs());
        match self.angles {
            [Some(al), Some(be), Some(ga)] => {
                same(a, b) && same(b, c) && same(al, be) && same(be, ga) && (al - 90.0).abs() > 1e-3
            }
            _ => false,
        }
    }

    fn lattice(&self, ctx: &Ctx, ops: &[super::SymOp]) -> Result<Lattice, CifError> {
        // A threefold axis along c in hexagonal axes maps a to b: then γ is 120°, else 90°.
        let hexagonal = ops.iter().any(|op| {
            let r = op.rotation;
            r[2] == [0.0, 0.0, 1.0] && r[0] == [0.0, -1.0, 0.0] && r[1] == [1.0, -1.0, 0.0]
        });
        let mut angles = [0.0; 3];
        for (k, tag) in ANGLE_TAGS.iter().enumerate() {
            angles[k] = match self.angles[k] {
                Some(v) => v,
                None => {
                    let v = if k == 2 && hexagonal { 120.0 } else { 90.0 };
                    let why = if v == 120.0 {
                        "the space group has hexagonal axes"
                    } else {
                        "as pymatgen assumes"
                    };
                    ctx.warn(
                        ctx.block.line,
                        format!("{tag} is missing: {v}° assumed ({why})"),
                    );
                    v
                }
            };
        }
        let [a, b, c] = self.lengths;
        let [alpha, beta, gamma] = angles;
        let lattice = Lattice::from_parameters(a, b, c, alpha, beta, gamma);
        let line = ctx.line_of("_cell_angle_gamma");
        let volume = lattice.volume();
        if volume.is_nan() || volume <= 1e-3 * a * b * c {
            return Err(ctx.err(
                line,
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
                line,
                format!("the cell is only {thinnest:.2e} Å thick between lattice planes"),
            ));
        }
        Ok(lattice)
    }
}

/// `_atom_site_moment` rows (new `.` and old `_` tag forms): label → moment along the axes.
fn moments(ctx: &Ctx) -> Result<Vec<(String, [f64; 3])>, CifError> {
    let block = ctx.block;
    let find = |names: &[&str]| -> Option<(String, Vec<&Value>)> {
        names
            .iter()
            .find_map(|t| block.values(t).map(|v| (t.to_string(), v)))
    };
    let Some((_, labels)) = find(&["_atom_site_moment.label", "_atom_site_moment_label"]) else {
        return Ok(Vec::new());
    };
    let mut axes = Vec::new();
    for axis in ["x", "y", "z"] {
        let names = [
            format!("_atom_site_moment.crystalaxis_{axis}"),
            format!("_atom_site_moment_crystalaxis_{axis}"),
            format!("_atom_site_moment.crystalaxis_m{axis}"),
            format!("_atom_site_moment_crystalaxis_m{axis}"),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match find(&names) {
            Some((tag, v)) if v.len() == labels.len() => axes.push((tag, v)),
            _ => {
                let line = labels.first().map_or(block.line, |v| v.line);
                return Err(ctx.err(
                    line,
                    format!("_atom_site_moment: no crystal-axis {axis} component for every label"),
                ));
            }
        }
    }
    let mut out = Vec::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        let mut m = [0.0; 3];
        for (k, (tag, values)) in axes.iter().enumerate() {
            m[k] = ctx.number(values[i], tag)?;
        }
        out.push((label.text.clone(), m));
    }
    Ok(out)
}

/// The occupied rows of the atom-site loop, in file order.
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
    let moments = moments(ctx)?;
    let reciprocal = lattice.reciprocal_crystallographic();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let line = coords[0][i].line;
        let label = labels
            .as_ref()
            .map(|l| &l[i])
            .filter(|v| !v.is_missing())
            .map(|v| v.text.clone());
        let name = label.as_deref().unwrap_or("?");
        let species = site_species(
            ctx,
            types.as_ref().map(|t| t[i]),
            labels.as_ref().map(|l| l[i]),
            line,
        )?;
        let occupancy = match occupancies.as_ref().map(|o| o[i]) {
            Some(v) if !v.is_missing() => ctx.number(v, "_atom_site_occupancy")?,
            _ => 1.0,
        };
        if occupancy > 1.0 + 1e-6 {
            return Err(ctx.err(
                line,
                format!("occupancy {occupancy} of site {name} is above 1"),
            ));
        }
        if occupancy <= 0.0 {
            continue; // Vacant sites carry no atom.
        }
        let mut xyz = [0.0; 3];
        for (k, axis) in axes.iter().enumerate() {
            let v = coords[k][i];
            xyz[k] = if v.is_missing() && v.text == "." {
                // pymatgen reads '.' (not applicable) as 0.
                ctx.warn(v.line, format!("{axis} of site {name} is '.': read as 0"));
                0.0
            } else if v.is_missing() {
                return Err(ctx.err(
                    v.line,
                    format!("{axis} of site {name} is unknown ('{}')", v.text),
                ));
            } else {
                ctx.number(v, axis)?
            };
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
        let fallback_label = species
            .first()
            .map_or_else(String::new, |(s, _)| s.symbol().to_string());
        let moment = label
            .as_ref()
            .and_then(|l| moments.iter().find(|(m, _)| m == l).map(|(_, m)| *m));
        out.push(AsymSite {
            frac: xyz,
            species: species
                .into_iter()
                .map(|(s, o)| (s, o * occupancy))
                .collect(),
            label: label.unwrap_or(fallback_label),
            line,
            moment,
        });
    }
    Ok(out)
}

/// The species of one row: its type symbol, or its label where the type symbol is absent or
/// `?`/`.` (with a warning in that case).
fn site_species(
    ctx: &Ctx,
    type_symbol: Option<&Value>,
    label: Option<&Value>,
    line: usize,
) -> Result<Vec<(Species, f64)>, CifError> {
    let label = label.filter(|v| !v.is_missing());
    let value = match type_symbol {
        Some(t) if !t.is_missing() => t,
        Some(t) => {
            let Some(l) = label else {
                return Err(ctx.err(t.line, format!("type symbol '{}' and no label", t.text)));
            };
            ctx.warn(
                t.line,
                format!(
                    "type symbol '{}': the element is read from label '{}'",
                    t.text, l.text
                ),
            );
            l
        }
        None => label.ok_or_else(|| {
            ctx.err(
                line,
                "sites have neither _atom_site_type_symbol nor _atom_site_label".into(),
            )
        })?,
    };
    let parsed = parse_species(&value.text).ok_or_else(|| {
        ctx.err(
            value.line,
            format!("'{}' does not name a chemical element", value.text),
        )
    })?;
    if let Some(note) = parsed.note {
        ctx.warn(value.line, note);
    }
    Ok(parsed.species)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Operations written with rounded decimals (`0.66667`) mean thirds; reading them as written
    /// would leave sites 1e-5 apart from their images.
    #[test]
    fn decimal_translations_are_read_as_thirds_and_said() {
        let cif = "data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 9\n_cell_angle_alpha 90\n\
            _cell_angle_beta 90\n_cell_angle_gamma 120\nloop_\n_symmetry_equiv_pos_as_xyz\nx,y,z\n\
            x+0.66667,y+0.33333,z+0.33333\nx+0.33333,y+0.66667,z+0.66667\nloop_\n_atom_site_label\n\
            _atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nC1 0 0 0\n";
        let read = &read_cif(cif, &CifOptions::default()).unwrap()[0];
        assert_eq!(read.structure.sites.len(), 3);
        let thirds = read.structure.sites.iter().any(|site| {
            (site.frac[0] - 2.0 / 3.0).abs() < 1e-12 && (site.frac[2] - 1.0 / 3.0).abs() < 1e-12
        });
        assert!(thirds, "{:?}", read.structure.sites);
        let lines: Vec<usize> = read.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [11, 12], "{:?}", read.warnings);
        assert!(read.warnings[0].message.contains("1/24"));
    }
}
