//! Lattices in pymatgen's convention: rows of the matrix are the vectors a, b, c (Å), and
//! `from_parameters` puts c along z and a in the xz-plane.

use serde::{Deserialize, Serialize};

pub type Mat3 = [[f64; 3]; 3];
pub type Vec3 = [f64; 3];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lattice {
    /// Rows are the lattice vectors a, b, c in Å.
    pub matrix: Mat3,
}

impl Lattice {
    pub fn new(matrix: Mat3) -> Self {
        Self { matrix }
    }

    /// From lengths (Å) and angles (degrees), as pymatgen's `Lattice.from_parameters`.
    pub fn from_parameters(a: f64, b: f64, c: f64, alpha: f64, beta: f64, gamma: f64) -> Self {
        let (alpha, beta, gamma) = (alpha.to_radians(), beta.to_radians(), gamma.to_radians());
        let val = ((alpha.cos() * beta.cos() - gamma.cos()) / (alpha.sin() * beta.sin()))
            .clamp(-1.0, 1.0);
        let gamma_star = val.acos();
        Self::new([
            [a * beta.sin(), 0.0, a * beta.cos()],
            [
                -b * alpha.sin() * gamma_star.cos(),
                b * alpha.sin() * gamma_star.sin(),
                b * alpha.cos(),
            ],
            [0.0, 0.0, c],
        ])
    }

    /// Lengths a, b, c (Å).
    pub fn lengths(&self) -> Vec3 {
        self.matrix.map(norm)
    }

    /// Angles α, β, γ (degrees).
    pub fn angles(&self) -> Vec3 {
        let [a, b, c] = self.matrix;
        [angle(b, c), angle(a, c), angle(a, b)]
    }

    /// Volume (Å³), always positive.
    pub fn volume(&self) -> f64 {
        det(&self.matrix).abs()
    }

    /// Reciprocal lattice without the 2π factor (pymatgen's `reciprocal_lattice_crystallographic`).
    pub fn reciprocal_crystallographic(&self) -> Lattice {
        Lattice::new(transpose(&inverse(&self.matrix)))
    }

    /// Cartesian (Å) of fractional coordinates.
    pub fn to_cartesian(&self, frac: Vec3) -> Vec3 {
        let m = &self.matrix;
        std::array::from_fn(|j| frac[0] * m[0][j] + frac[1] * m[1][j] + frac[2] * m[2][j])
    }

    /// Interplanar spacings d(100), d(010), d(001) (Å): how far apart the lattice planes are.
    pub fn plane_spacings(&self) -> Vec3 {
        self.reciprocal_crystallographic()
            .matrix
            .map(|r| 1.0 / norm(r))
    }
}

pub fn norm(v: Vec3) -> f64 {
    dot(v, v).sqrt()
}

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn angle(u: Vec3, v: Vec3) -> f64 {
    (dot(u, v) / (norm(u) * norm(v)))
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

pub fn det(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn transpose(m: &Mat3) -> Mat3 {
    std::array::from_fn(|i| std::array::from_fn(|j| m[j][i]))
}

/// Inverse by cofactors; callers check the determinant is non-zero first.
fn inverse(m: &Mat3) -> Mat3 {
    let d = det(m);
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    [
        [c(1, 1, 2, 2) / d, -c(0, 1, 2, 2) / d, c(0, 1, 1, 2) / d],
        [-c(1, 0, 2, 2) / d, c(0, 0, 2, 2) / d, -c(0, 0, 1, 2) / d],
        [c(1, 0, 2, 1) / d, -c(0, 0, 2, 1) / d, c(0, 0, 1, 1) / d],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_round_trip() {
        let l = Lattice::from_parameters(3.0, 4.0, 5.0, 80.0, 95.0, 110.0);
        let [a, b, c] = l.lengths();
        let [al, be, ga] = l.angles();
        for (x, y) in [
            (a, 3.0),
            (b, 4.0),
            (c, 5.0),
            (al, 80.0),
            (be, 95.0),
            (ga, 110.0),
        ] {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
        // c along z, as pymatgen.
        assert_eq!(l.matrix[2], [0.0, 0.0, 5.0]);
        let r = l.reciprocal_crystallographic();
        for i in 0..3 {
            for j in 0..3 {
                let d = dot(l.matrix[i], r.matrix[j]);
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
}
