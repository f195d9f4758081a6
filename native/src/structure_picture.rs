//! A crystal structure as a picture: its unit cell seen at an angle, every site drawn as a
//! ball in the element's Jmol colour, far atoms first (PNG and SVG through [`plots::save`]).

use plotters::coord::Shift;
use plotters::prelude::*;
use xtal_core::structure::Structure;
use xtal_core::structure::elements::{element, symbol};

use crate::plots::{DrawResult, Figure};

/// What the picture is looked at from, in the cell's Cartesian frame: above and to the side,
/// so that all three cell axes show with c upright.
const VIEW: [f64; 3] = [0.62, -0.74, 0.26];
/// Balls are this fraction of the atomic radius, small enough to see through the cell.
const BALL_SCALE: f64 = 0.5;
/// For elements without a tabulated radius (Å).
const DEFAULT_RADIUS: f64 = 1.5;

pub struct StructurePicture<'a> {
    pub title: String,
    pub structure: &'a Structure,
}

/// A site's majority element (the first of equal occupancies), or none for a vacancy-only site.
fn majority_z(site: &xtal_core::structure::Site) -> Option<u8> {
    site.species
        .iter()
        .fold(None::<(u8, f64)>, |best, (s, occ)| match best {
            Some((_, b)) if b >= *occ => best,
            _ => Some((s.z, *occ)),
        })
        .map(|(z, _)| z)
}

/// Jmol's colour for element `z` (deep pink, Jmol's "unknown", past the table).
pub fn element_colour(z: u8) -> RGBColor {
    let c = mendeleev::ALL_ELEMENTS
        .get(usize::from(z).wrapping_sub(1))
        .and_then(|e| e.jmol_color());
    c.map_or(RGBColor(255, 20, 147), |c| RGBColor(c.r, c.g, c.b))
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn unit(a: [f64; 3]) -> [f64; 3] {
    let n = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    a.map(|v| v / n)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

/// Screen axes (right, up) and the direction towards the viewer.
fn camera() -> ([f64; 3], [f64; 3], [f64; 3]) {
    let toward = unit(VIEW);
    let right = unit(cross([0.0, 0.0, 1.0], toward));
    let up = cross(toward, right);
    (right, up, toward)
}

impl Figure for StructurePicture<'_> {
    const SIZE: (u32, u32) = (800, 800);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let lattice = &self.structure.lattice;
        let (right, up, toward) = camera();
        let project = |p: [f64; 3]| (dot(p, right), dot(p, up), dot(p, toward));
        let corner = |i: usize| {
            let f = [(i & 1) as f64, ((i >> 1) & 1) as f64, ((i >> 2) & 1) as f64];
            lattice.to_cartesian(f)
        };
        let corners: Vec<[f64; 3]> = (0..8).map(corner).collect();
        // Sites wrapped into the cell, as (x, y, depth, radius, z).
        let mut balls: Vec<(f64, f64, f64, f64, u8)> = self
            .structure
            .sites
            .iter()
            .filter_map(|site| {
                let z = majority_z(site)?;
                let frac = site.frac.map(|f| f.rem_euclid(1.0));
                let (x, y, d) = project(lattice.to_cartesian(frac));
                let r = element(z).and_then(|e| e.radius).unwrap_or(DEFAULT_RADIUS);
                Some((x, y, d, r * BALL_SCALE, z))
            })
            .collect();
        balls.sort_by(|a, b| a.2.total_cmp(&b.2));

        // Fit the cell and the balls into the area below the title, same scale on both axes.
        let (w, h) = area.dim_in_pixel();
        let (top, margin) = (60.0, 30.0);
        let extent = corners
            .iter()
            .map(|&c| {
                let (x, y, _) = project(c);
                (x, y, 0.0)
            })
            .chain(balls.iter().map(|b| (b.0, b.1, b.3)));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y, r) in extent {
            (x0, x1) = (x0.min(x - r), x1.max(x + r));
            (y0, y1) = (y0.min(y - r), y1.max(y + r));
        }
        // The legend keeps a column of its own on the right.
        let legend_width = 80.0;
        let scale = ((f64::from(w) - 2.0 * margin - legend_width) / (x1 - x0).max(1e-6))
            .min((f64::from(h) - top - margin) / (y1 - y0).max(1e-6));
        let to_px = |x: f64, y: f64| {
            (
                (margin + (x - x0) * scale) as i32,
                (top + (y1 - y) * scale) as i32,
            )
        };

        area.draw(&Text::new(
            self.title.clone(),
            (margin as i32, 15),
            ("sans-serif", 22),
        ))?;
        // Edges join corners differing in one axis; the three from the origin are the axes.
        let edge_style = BLACK.mix(0.55).stroke_width(2);
        for i in 0..8usize {
            for axis in 0..3 {
                let j = i | (1 << axis);
                if j != i {
                    let (a, b) = (project(corners[i]), project(corners[j]));
                    area.draw(&PathElement::new(
                        vec![to_px(a.0, a.1), to_px(b.0, b.1)],
                        edge_style,
                    ))?;
                }
            }
        }
        for &(x, y, _, r, z) in &balls {
            let centre = to_px(x, y);
            let radius = ((r * scale) as i32).max(2);
            area.draw(&Circle::new(centre, radius, element_colour(z).filled()))?;
            area.draw(&Circle::new(centre, radius, BLACK.mix(0.6).stroke_width(1)))?;
            // A highlight up and to the left reads as a lit sphere.
            let shine = (centre.0 - radius / 3, centre.1 - radius / 3);
            area.draw(&Circle::new(shine, radius / 3, WHITE.mix(0.45).filled()))?;
        }
        // Axis labels at the far end of a, b and c.
        for (axis, name) in ["a", "b", "c"].into_iter().enumerate() {
            let (x, y, _) = project(corners[1 << axis]);
            area.draw(&Text::new(name, to_px(x, y), ("sans-serif", 20)))?;
        }
        // Legend: one ball per element present, in order of atomic number.
        let mut present: Vec<u8> = balls.iter().map(|b| b.4).collect();
        present.sort_unstable();
        present.dedup();
        let right_edge = w as i32 - 20;
        for (k, &z) in present.iter().enumerate() {
            let y = top as i32 + 26 * k as i32;
            area.draw(&Circle::new(
                (right_edge - 60, y),
                9,
                element_colour(z).filled(),
            ))?;
            area.draw(&Text::new(
                symbol(z),
                (right_edge - 45, y - 9),
                ("sans-serif", 18),
            ))?;
        }
        Ok(())
    }
}
