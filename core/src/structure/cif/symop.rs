//! Symmetry operations written as coordinate triplets: `x, y, z`, `-x+1/2, y-x, 0.25+z`, `X,Y,Z`.

/// A space-group operation on fractional coordinates: x' = R·x + t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SymOp {
    pub rotation: [[f64; 3]; 3],
    pub translation: [f64; 3],
}

impl SymOp {
    pub const IDENTITY: SymOp = SymOp {
        rotation: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        translation: [0.0; 3],
    };

    pub fn apply(&self, x: [f64; 3]) -> [f64; 3] {
        let r = &self.rotation;
        std::array::from_fn(|i| {
            r[i][0] * x[0] + r[i][1] * x[1] + r[i][2] * x[2] + self.translation[i]
        })
    }

    /// `self` after `first`: x → R·(R₁·x + t₁) + t.
    pub fn after(&self, first: &SymOp) -> SymOp {
        let r = &self.rotation;
        let rotation = std::array::from_fn(|i| {
            std::array::from_fn(|j| (0..3).map(|k| r[i][k] * first.rotation[k][j]).sum())
        });
        let moved = SymOp {
            rotation: self.rotation,
            translation: [0.0; 3],
        }
        .apply(first.translation);
        SymOp {
            rotation,
            translation: std::array::from_fn(|i| moved[i] + self.translation[i]),
        }
    }

    /// A magnetic operation, "x,y,z,+1" or "-x,-y,z,-1": the operation and its time reversal
    /// (+1 or -1).
    pub fn parse_magnetic(text: &str) -> Result<(SymOp, f64), String> {
        let (triplet, theta) = text
            .rsplit_once(',')
            .ok_or_else(|| format!("'{text}' is not x,y,z,±1"))?;
        let theta = match theta.trim() {
            "+1" | "1" => 1.0,
            "-1" => -1.0,
            other => return Err(format!("'{text}': time reversal '{other}' is not +1 or -1")),
        };
        Ok((SymOp::parse(triplet)?, theta))
    }

    /// Parses one triplet; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<SymOp, String> {
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() != 3 {
            return Err(format!("'{text}' is not three comma-separated expressions"));
        }
        let mut op = SymOp {
            rotation: [[0.0; 3]; 3],
            translation: [0.0; 3],
        };
        for (row, part) in parts.iter().enumerate() {
            let (r, t) = parse_component(part).map_err(|e| format!("'{text}': {e}"))?;
            op.rotation[row] = r;
            op.translation[row] = t;
        }
        let det = crate::structure::lattice::det(&op.rotation);
        if (det.abs() - 1.0).abs() > 1e-6 {
            return Err(format!(
                "'{text}' is not a symmetry operation (determinant {det})"
            ));
        }
        Ok(op)
    }
}

/// One component such as `-x+y+1/2`: coefficients of x, y, z and a constant.
fn parse_component(s: &str) -> Result<([f64; 3], f64), String> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() {
        return Err("empty expression".into());
    }
    let mut coeff = [0.0; 3];
    let mut constant = 0.0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let mut sign = 1.0;
        if bytes[i] == b'+' || bytes[i] == b'-' {
            if bytes[i] == b'-' {
                sign = -1.0;
            }
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'+' && bytes[i] != b'-' {
            i += 1;
        }
        let term = &s[start..i];
        if term.is_empty() {
            return Err(format!("dangling sign in '{s}'"));
        }
        // Forms: x | 2x | 2*x | 0.5 | 1/2 | x/2 is not used by any writer.
        let (num, var) = match term
            .char_indices()
            .find(|(_, c)| matches!(c, 'x' | 'y' | 'z'))
        {
            Some((pos, v)) => {
                if pos + 1 != term.len() {
                    return Err(format!("cannot read term '{term}'"));
                }
                let n = term[..pos].trim_end_matches('*');
                (
                    if n.is_empty() {
                        1.0
                    } else {
                        parse_number(n).ok_or(format!("cannot read term '{term}'"))?
                    },
                    Some(v),
                )
            }
            None => (
                parse_number(term).ok_or(format!("cannot read term '{term}'"))?,
                None,
            ),
        };
        match var {
            Some(v) => coeff[(v as u8 - b'x') as usize] += sign * num,
            None => constant += sign * num,
        }
    }
    Ok((coeff, constant))
}

fn parse_number(s: &str) -> Option<f64> {
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
        return (b != 0.0).then(|| a / b);
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets() {
        let op = SymOp::parse("-x+1/2, y-x, 0.25+Z").unwrap();
        assert_eq!(
            op.rotation,
            [[-1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        );
        assert_eq!(op.translation, [0.5, 0.0, 0.25]);
        assert_eq!(SymOp::parse("x,y,z").unwrap(), SymOp::IDENTITY);
        assert!(SymOp::parse("x,y").is_err());
        assert!(SymOp::parse("x,x,z").is_err());
        assert!(SymOp::parse("x,q,z").is_err());
        assert!(SymOp::parse("x,y,z+1/0").is_err());
    }

    #[test]
    fn magnetic_operations_and_composition() {
        let (op, theta) = SymOp::parse_magnetic("-x,y+1/2,-z,-1").unwrap();
        assert_eq!(theta, -1.0);
        assert_eq!(op.translation, [0.0, 0.5, 0.0]);
        assert!(SymOp::parse_magnetic("x,y,z").is_err());
        assert!(SymOp::parse_magnetic("x,y,z,+2").is_err());
        let centring = SymOp::parse("x+1/2,y+1/2,z").unwrap();
        let both = centring.after(&op);
        assert_eq!(both.apply([0.1, 0.2, 0.3]), [0.4, 1.2, -0.3]);
    }
}
