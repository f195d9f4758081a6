//! Periodic neighbour lists with a cell list: image atoms are generated only as far as the
//! cutoff reaches past the cell, binned into cubes of side ≥ cutoff, and each atom looks at
//! the 27 cubes around it — cost linear in the number of atoms.

use crate::structure::Structure;
use crate::structure::lattice::{Vec3, norm};

/// One directed edge: `center` sees `neighbor` translated by `image` lattice vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub center: usize,
    pub neighbor: usize,
    pub image: [i32; 3],
    pub distance: f64,
    /// Cartesian vector from center to the neighbour's image (Å).
    pub vector: Vec3,
}

/// A search so large (a cell very thin for the cutoff) that it is refused rather than left
/// to run for hours.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "about {images:.0e} periodic images lie within {cutoff} Å: the cell is too thin for this cutoff"
)]
pub struct TooManyImages {
    pub images: f64,
    pub cutoff: f64,
}

/// Above this many image atoms a search is refused.
const MAX_IMAGES: f64 = 2e7;

/// All neighbours within `cutoff` Å of every site (itself at zero offset excluded), grouped by
/// centre, each group sorted by distance. Positions are wrapped into the cell first.
pub fn neighbors_within(
    structure: &Structure,
    cutoff: f64,
) -> Result<Vec<Vec<Neighbor>>, TooManyImages> {
    let n = structure.sites.len();
    let mut out = vec![Vec::new(); n];
    if n == 0 || cutoff.is_nan() || cutoff <= 0.0 {
        return Ok(out);
    }
    let lattice = &structure.lattice;
    let wrapped: Vec<Vec3> = structure
        .sites
        .iter()
        .map(|s| s.frac.map(|x| x - x.floor()))
        .collect();
    let home: Vec<Vec3> = wrapped.iter().map(|f| lattice.to_cartesian(*f)).collect();

    // Images of each site reach within `cutoff` of the cell only for offsets up to this many
    // cells along each axis (the distance between lattice planes sets it).
    let spacing = lattice.plane_spacings();
    let reach = spacing.map(|d| (cutoff / d).ceil() as i32);
    let margin: Vec3 = spacing.map(|d| cutoff / d); // the cutoff in fractional units per axis
    let expected_images = n as f64 * margin.iter().map(|m| 1.0 + 2.0 * m).product::<f64>();
    if expected_images.is_nan() || expected_images > MAX_IMAGES {
        return Err(TooManyImages {
            images: expected_images,
            cutoff,
        });
    }

    // Image atoms whose fractional position lies within the margin around [0, 1)³.
    let mut images: Vec<(usize, [i32; 3], Vec3)> = Vec::new();
    for (i, f) in wrapped.iter().enumerate() {
        for a in -reach[0]..=reach[0] {
            let fa = f[0] + a as f64;
            if fa < -margin[0] || fa >= 1.0 + margin[0] {
                continue;
            }
            for b in -reach[1]..=reach[1] {
                let fb = f[1] + b as f64;
                if fb < -margin[1] || fb >= 1.0 + margin[1] {
                    continue;
                }
                for c in -reach[2]..=reach[2] {
                    let fc = f[2] + c as f64;
                    if fc < -margin[2] || fc >= 1.0 + margin[2] {
                        continue;
                    }
                    images.push((i, [a, b, c], lattice.to_cartesian([fa, fb, fc])));
                }
            }
        }
    }

    // Bin image atoms into cubes of side `cutoff` over their bounding box.
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for (_, _, p) in &images {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let dims: [usize; 3] =
        std::array::from_fn(|k| (((hi[k] - lo[k]) / cutoff).floor() as usize + 1).max(1));
    let bin_of = |p: &Vec3| -> [usize; 3] {
        std::array::from_fn(|k| (((p[k] - lo[k]) / cutoff).floor() as usize).min(dims[k] - 1))
    };
    let flat = |b: [usize; 3]| (b[0] * dims[1] + b[1]) * dims[2] + b[2];
    let mut start = vec![0usize; dims[0] * dims[1] * dims[2] + 1];
    for (_, _, p) in &images {
        start[flat(bin_of(p)) + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; images.len()];
    for (idx, (_, _, p)) in images.iter().enumerate() {
        let b = flat(bin_of(p));
        order[fill[b]] = idx;
        fill[b] += 1;
    }

    for (center, p) in home.iter().enumerate() {
        let b = bin_of(p);
        for dx in -1i64..=1 {
            for dy in -1i64..=1 {
                for dz in -1i64..=1 {
                    let nb = [b[0] as i64 + dx, b[1] as i64 + dy, b[2] as i64 + dz];
                    if (0..3).any(|k| nb[k] < 0 || nb[k] >= dims[k] as i64) {
                        continue;
                    }
                    let cell = flat(nb.map(|x| x as usize));
                    for &idx in &order[start[cell]..start[cell + 1]] {
                        let (j, image, q) = &images[idx];
                        let vector: Vec3 = std::array::from_fn(|k| q[k] - p[k]);
                        let distance = norm(vector);
                        if distance <= cutoff && !(*j == center && *image == [0, 0, 0]) {
                            out[center].push(Neighbor {
                                center,
                                neighbor: *j,
                                image: *image,
                                distance,
                                vector,
                            });
                        }
                    }
                }
            }
        }
        out[center].sort_by(|a, b| a.distance.total_cmp(&b.distance));
    }
    Ok(out)
}
