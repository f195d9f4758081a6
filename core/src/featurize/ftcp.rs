//! FTCP (Fourier-transformed crystal properties, Ren et al., Matter 2022) exactly as the
//! original `FTCP_represent` lays it out — including its "structure factor", which is the
//! real linear sum Σ_s prop(s)·π·(h·x_s), not the textbook Σ f·exp(2πi h·x). See
//! `../shared/reference/ftcp.md` and the README's FTCP section.
//!
//! Layout for E = max(max_elements, 3) real-space columns, S = max_sites, 59 k-point columns:
//! rows 0–102 element one-hots, 103 lengths, 104 angles, 105… coordinates (S rows), site
//! occupancy one-hots (S rows), the k-distance row, 92 elemental-property rows (real space:
//! the element's vector; reciprocal space: the structure factor), then `pad_rows` zero rows.
//!
//! Where the original breaks — a cell so small that fewer than 59 k-points lie within radius
//! 1.4 Å⁻¹ — xtal leaves the missing k-point columns zero.

use serde::{Deserialize, Serialize};

use super::element_table::{ELEMENT_FEATURES, ElementTable, MissingElement};
use crate::structure::elements::NUM_ELEMENTS;
use crate::structure::lattice::norm;
use crate::structure::{DisorderedSite, Structure};

pub const NUM_KPOINTS: usize = 59;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FtcpConfig {
    /// Most distinct elements a structure may have.
    pub max_elements: usize,
    /// Most sites a structure may have.
    pub max_sites: usize,
    /// Zero rows appended at the bottom (the original self-supervised system added 2 → 400 rows).
    pub pad_rows: usize,
    /// What the 92 reciprocal-space property rows hold.
    #[serde(default)]
    pub structure_factor: StructureFactor,
}

/// The reciprocal-space property rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StructureFactor {
    /// As the original FTCP code: Σ_s prop(s)·π·(h·x_s), a real linear sum.
    #[default]
    Original,
    /// The textbook modulus |Σ_s prop(s)·exp(2πi h·x_s)|, with the property as scattering factor.
    Physical,
}

impl Default for FtcpConfig {
    fn default() -> Self {
        Self {
            max_elements: 4,
            max_sites: 100,
            pad_rows: 2,
            structure_factor: StructureFactor::Original,
        }
    }
}

impl FtcpConfig {
    /// Real-space columns.
    pub fn element_columns(&self) -> usize {
        self.max_elements.max(3)
    }
    pub fn rows(&self) -> usize {
        NUM_ELEMENTS + 2 + 2 * self.max_sites + 1 + ELEMENT_FEATURES + self.pad_rows
    }
    pub fn cols(&self) -> usize {
        self.element_columns() + NUM_KPOINTS
    }
    /// Where `part` lies in a tensor of this configuration.
    pub fn region(&self, part: FtcpPart) -> FtcpRegion {
        let (e, s) = (self.element_columns(), self.max_sites);
        let real = 0..e;
        let reciprocal = e..e + NUM_KPOINTS;
        let (rows, cols) = match part {
            FtcpPart::Elements => (0..NUM_ELEMENTS, real),
            FtcpPart::Lattice => (NUM_ELEMENTS..NUM_ELEMENTS + 2, 0..3),
            FtcpPart::Sites => (self.coord_row()..self.coord_row() + s, 0..3),
            FtcpPart::Occupancy => (self.occupancy_row()..self.occupancy_row() + s, real),
            FtcpPart::KDistances => (self.kdistance_row()..self.kdistance_row() + 1, reciprocal),
            FtcpPart::Properties => (
                self.property_row()..self.property_row() + ELEMENT_FEATURES,
                real,
            ),
            FtcpPart::StructureFactors => (
                self.property_row()..self.property_row() + ELEMENT_FEATURES,
                reciprocal,
            ),
        };
        FtcpRegion { rows, cols }
    }
    fn coord_row(&self) -> usize {
        NUM_ELEMENTS + 2
    }
    fn occupancy_row(&self) -> usize {
        self.coord_row() + self.max_sites
    }
    fn kdistance_row(&self) -> usize {
        self.occupancy_row() + self.max_sites
    }
    fn property_row(&self) -> usize {
        self.kdistance_row() + 1
    }
}

/// The parts of an FTCP tensor: each is one rectangle of rows × columns, and together they
/// hold every value the representation sets (the rest is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FtcpPart {
    /// Element one-hots: rows 0–102 × the real-space columns.
    Elements,
    /// Lattice lengths (Å) and angles (°): 2 rows × 3 columns.
    Lattice,
    /// Fractional site coordinates: S rows × 3 columns.
    Sites,
    /// Which element column each site holds: S rows × the real-space columns.
    Occupancy,
    /// |G| of the 59 k-points: 1 row × the k-point columns.
    KDistances,
    /// The element-table vector of each element column: 92 rows × the real-space columns.
    Properties,
    /// The "structure factor" of each property at each k-point: 92 rows × the k-point columns.
    StructureFactors,
}

impl FtcpPart {
    pub const ALL: [FtcpPart; 7] = [
        FtcpPart::Elements,
        FtcpPart::Lattice,
        FtcpPart::Sites,
        FtcpPart::Occupancy,
        FtcpPart::KDistances,
        FtcpPart::Properties,
        FtcpPart::StructureFactors,
    ];
}

/// A rectangle of an FTCP tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtcpRegion {
    pub rows: std::ops::Range<usize>,
    pub cols: std::ops::Range<usize>,
}

impl FtcpRegion {
    pub fn len(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, row: usize, col: usize) -> bool {
        self.rows.contains(&row) && self.cols.contains(&col)
    }

    /// The region's values, row-major, from one row-major tensor `cols` wide.
    pub fn extract<T: Copy>(&self, tensor: &[T], cols: usize) -> Vec<T> {
        self.rows
            .clone()
            .flat_map(|r| &tensor[r * cols + self.cols.start..r * cols + self.cols.end])
            .copied()
            .collect()
    }
}

/// One FTCP tensor, row-major `rows × cols`, in f64 (datasets store f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Ftcp {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
    /// k-points that were found (59 unless the cell is tiny).
    pub kpoints: usize,
}

impl Ftcp {
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FtcpError {
    #[error("{found} distinct elements, more than the FTCP tensor holds (max_elements {max})")]
    TooManyElements { found: usize, max: usize },
    #[error("{found} sites, more than the FTCP tensor holds (max_sites {max})")]
    TooManySites { found: usize, max: usize },
    #[error("{0}; FTCP needs one element per site")]
    Disordered(#[from] DisorderedSite),
    #[error(transparent)]
    NoElementData(#[from] MissingElement),
}

/// The FTCP tensor of an ordered structure.
pub fn ftcp(
    structure: &Structure,
    config: &FtcpConfig,
    table: &ElementTable,
) -> Result<Ftcp, FtcpError> {
    let zs = structure.atomic_numbers()?;
    let mut elements: Vec<u8> = Vec::new();
    for &z in &zs {
        if !elements.contains(&z) {
            elements.push(z);
        }
    }
    if elements.len() > config.max_elements {
        return Err(FtcpError::TooManyElements {
            found: elements.len(),
            max: config.max_elements,
        });
    }
    if zs.len() > config.max_sites {
        return Err(FtcpError::TooManySites {
            found: zs.len(),
            max: config.max_sites,
        });
    }
    let props: Vec<&[f32]> = elements
        .iter()
        .map(|&z| table.features(z))
        .collect::<Result<_, _>>()?;

    let (rows, cols, e_cols) = (config.rows(), config.cols(), config.element_columns());
    let mut data = vec![0.0f64; rows * cols];
    let mut set = |r: usize, c: usize, v: f64| data[r * cols + c] = v;

    for (j, &z) in elements.iter().enumerate() {
        set(z as usize - 1, j, 1.0);
    }
    let lengths = structure.lattice.lengths();
    let angles = structure.lattice.angles();
    for k in 0..3 {
        set(NUM_ELEMENTS, k, lengths[k]);
        set(NUM_ELEMENTS + 1, k, angles[k]);
    }
    for (i, site) in structure.sites.iter().enumerate() {
        for k in 0..3 {
            set(config.coord_row() + i, k, site.frac[k]);
        }
        let col = elements.iter().position(|&z| z == zs[i]).unwrap_or(0);
        set(config.occupancy_row() + i, col, 1.0);
    }
    for (j, p) in props.iter().enumerate() {
        for (r, v) in p.iter().enumerate() {
            set(config.property_row() + r, j, *v as f64);
        }
    }

    let kpoints = kpoints(structure);
    // Original: F[p, k] = Σ_s prop[p, element(s)] · π · (h_k · x_s), phases summed per element.
    // Physical: |Σ_s prop[p, element(s)] · exp(2πi h_k · x_s)|.
    let columns: Vec<usize> = zs
        .iter()
        .map(|z| elements.iter().position(|e| e == z).unwrap_or(0))
        .collect();
    for (k, (hkl, distance)) in kpoints.iter().enumerate() {
        set(config.kdistance_row(), e_cols + k, *distance);
        let mut re = vec![0.0f64; elements.len()];
        let mut im = vec![0.0f64; elements.len()];
        for (site, col) in structure.sites.iter().zip(&columns) {
            let hx = hkl[0] as f64 * site.frac[0]
                + hkl[1] as f64 * site.frac[1]
                + hkl[2] as f64 * site.frac[2];
            match config.structure_factor {
                StructureFactor::Original => re[*col] += std::f64::consts::PI * hx,
                StructureFactor::Physical => {
                    let angle = std::f64::consts::TAU * hx;
                    re[*col] += angle.cos();
                    im[*col] += angle.sin();
                }
            }
        }
        for r in 0..ELEMENT_FEATURES {
            let weighted = |parts: &[f64]| {
                parts
                    .iter()
                    .zip(&props)
                    .map(|(v, p)| p[r] as f64 * v)
                    .sum::<f64>()
            };
            let f = match config.structure_factor {
                StructureFactor::Original => weighted(&re),
                StructureFactor::Physical => weighted(&re).hypot(weighted(&im)),
            };
            set(config.property_row() + r, e_cols + k, f);
        }
    }
    Ok(Ftcp {
        rows,
        cols,
        data,
        kpoints: kpoints.len(),
    })
}

/// The first 59 reciprocal-lattice points by FTCP's order, with |G| (Å⁻¹, no 2π).
fn kpoints(structure: &Structure) -> Vec<([i32; 3], f64)> {
    let reciprocal = structure.lattice.reciprocal_crystallographic().matrix;
    let direct = structure.lattice.lengths();
    let within = |radius: f64| {
        // |h| = |G · a| ≤ radius · |a|, so these ranges hold every point of the sphere.
        let n = direct.map(|a| (radius * a).floor() as i32);
        let mut points = Vec::new();
        for h in -n[0]..=n[0] {
            for k in -n[1]..=n[1] {
                for l in -n[2]..=n[2] {
                    let g: [f64; 3] = std::array::from_fn(|j| {
                        h as f64 * reciprocal[0][j]
                            + k as f64 * reciprocal[1][j]
                            + l as f64 * reciprocal[2][j]
                    });
                    let d = norm(g);
                    if d <= radius {
                        points.push(([h, k, l], d));
                    }
                }
            }
        }
        points
    };
    let mut points = within(1.297);
    if points.len() < NUM_KPOINTS + 1 {
        points = within(1.4);
    }
    points.retain(|(hkl, _)| *hkl != [0, 0, 0]);
    points.sort_by_key(|([h, k, l], _)| (h.abs() + k.abs() + l.abs(), -h, -k, -l));
    points.truncate(NUM_KPOINTS);
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::{Lattice, Site, Species};

    fn one_atom_cell() -> Structure {
        let site = |frac| Site {
            frac,
            species: vec![(
                Species {
                    z: 26,
                    oxidation: None,
                },
                1.0,
            )],
            label: "Fe".into(),
            magmom: None,
        };
        // Body-centred cubic Fe as a two-atom cubic cell.
        Structure {
            lattice: Lattice::from_parameters(2.87, 2.87, 2.87, 90.0, 90.0, 90.0),
            sites: vec![site([0.0; 3]), site([0.5; 3])],
        }
    }

    #[test]
    fn physical_structure_factor_has_bcc_extinctions() {
        let config = FtcpConfig {
            structure_factor: StructureFactor::Physical,
            ..FtcpConfig::default()
        };
        let table = ElementTable::default_table();
        let t = ftcp(&one_atom_cell(), &config, &table).unwrap();
        let prop_row = config.property_row();
        // Group row of Fe (group 8) is 1: F = |1 + exp(iπ(h+k+l))| = 2 for even h+k+l, 0 for odd.
        let group_row = prop_row + 7;
        let hkl = kpoints(&one_atom_cell());
        assert_eq!(t.kpoints, NUM_KPOINTS);
        for (k, (h, _)) in hkl.iter().enumerate() {
            let want = if (h[0] + h[1] + h[2]).rem_euclid(2) == 0 {
                2.0
            } else {
                0.0
            };
            assert!((t.get(group_row, 4 + k) - want).abs() < 1e-9, "{h:?}");
        }
    }
}
