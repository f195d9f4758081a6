//! Per-element property vectors (92-D): CGCNN's `atom_init.json` when the user gives it, or
//! xtal's own default built from the element table.
//!
//! The default follows CGCNN's recipe (one-hot bins of element properties) with data from
//! `core/data/elements.tsv`: group (18), period (7), Pauling electronegativity (10 bins),
//! atomic radius (10), valence electrons (12), first ionisation energy (10, log scale),
//! electron affinity (10), block (4), molar volume (10, log scale), and one flag for "no
//! electronegativity" (noble gases) = 92. Bins are equal-width over the values of H … Fm;
//! an unknown value leaves its bins at zero.

use serde_json::Value;

use crate::structure::elements::{ElementData, elements, symbol};

pub const ELEMENT_FEATURES: usize = 92;

/// One numeric property of an element, if known.
type Property = fn(&ElementData) -> Option<f64>;

#[derive(Debug, Clone, PartialEq)]
pub struct ElementTable {
    /// Where the table came from ("default" or a path the caller names).
    pub source: String,
    /// Index z - 1; `None` where the table has no entry.
    rows: Vec<Option<Vec<f32>>>,
}

/// An element the table has no vector for (CGCNN's atom_init.json stops at Fm).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the element table ({table}) has no entry for {element}")]
pub struct MissingElement {
    pub element: &'static str,
    pub table: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ElementTableError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(String),
}

impl ElementTable {
    pub fn dim(&self) -> usize {
        ELEMENT_FEATURES
    }

    /// Features of an element, if the table has it.
    pub fn get(&self, z: u8) -> Option<&[f32]> {
        self.rows.get((z as usize).checked_sub(1)?)?.as_deref()
    }

    /// Features of an element, or an error naming the element and this table.
    pub fn features(&self, z: u8) -> Result<&[f32], MissingElement> {
        self.get(z).ok_or_else(|| MissingElement {
            element: symbol(z),
            table: self.source.clone(),
        })
    }

    /// The elements the table has, with their vectors.
    pub fn entries(&self) -> impl Iterator<Item = (u8, &[f32])> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i as u8 + 1, r.as_deref()?)))
    }

    /// The table as CGCNN's `atom_init.json` ([`Self::from_atom_init_json`] reads it back
    /// exactly: each f32 is written as the f64 it equals).
    pub fn to_atom_init_json(&self) -> String {
        let map: serde_json::Map<String, Value> = self
            .entries()
            .map(|(z, v)| {
                let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                (z.to_string(), Value::from(v))
            })
            .collect();
        Value::Object(map).to_string()
    }

    /// A table from `(atomic number, vector)` entries, e.g. as a bundle stores it.
    pub fn from_entries(
        source: &str,
        entries: impl IntoIterator<Item = (u8, Vec<f32>)>,
    ) -> Result<Self, ElementTableError> {
        let mut rows = vec![None; crate::structure::elements::NUM_ELEMENTS];
        for (z, v) in entries {
            let slot = rows.get_mut((z as usize).wrapping_sub(1)).ok_or_else(|| {
                ElementTableError::Shape(format!("{z} is not an atomic number 1–103"))
            })?;
            if v.len() != ELEMENT_FEATURES || v.iter().any(|x| !x.is_finite()) {
                return Err(ElementTableError::Shape(format!(
                    "entry {z} must be {ELEMENT_FEATURES} finite numbers"
                )));
            }
            *slot = Some(v);
        }
        Ok(Self {
            source: source.to_string(),
            rows,
        })
    }

    /// Reads CGCNN's `atom_init.json`: `{"1": [92 numbers], …}`.
    pub fn from_atom_init_json(text: &str, source: &str) -> Result<Self, ElementTableError> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
        let mut rows = vec![None; crate::structure::elements::NUM_ELEMENTS];
        for (key, value) in map {
            let z: usize = key
                .parse()
                .ok()
                .filter(|z| (1..=rows.len()).contains(z))
                .ok_or_else(|| {
                    ElementTableError::Shape(format!("key '{key}' is not an atomic number 1–103"))
                })?;
            let arr = value
                .as_array()
                .ok_or_else(|| ElementTableError::Shape(format!("entry {key} is not a list")))?;
            if arr.len() != ELEMENT_FEATURES {
                return Err(ElementTableError::Shape(format!(
                    "entry {key} has {} values, expected {ELEMENT_FEATURES}",
                    arr.len()
                )));
            }
            let v: Option<Vec<f32>> = arr
                .iter()
                .map(|x| x.as_f64().filter(|v| v.is_finite()).map(|v| v as f32))
                .collect();
            rows[z - 1] = Some(v.ok_or_else(|| {
                ElementTableError::Shape(format!("entry {key} holds a non-number"))
            })?);
        }
        Ok(Self {
            source: source.to_string(),
            rows,
        })
    }

    /// xtal's documented default (see the module docs).
    pub fn default_table() -> Self {
        let els = elements();
        let known = &els[..100];
        // Binned properties, in the order they appear in the vector.
        const BINNED: [Property; 5] = [
            |e| e.electronegativity,
            |e| e.radius,
            |e| e.ionization.filter(|v| *v > 0.0).map(f64::ln),
            |e| e.affinity,
            |e| e.molar_volume.filter(|v| *v > 0.0).map(f64::ln),
        ];
        let props: Vec<(Property, (f64, f64))> = BINNED
            .iter()
            .map(|&f| {
                let vals: Vec<f64> = known.iter().filter_map(f).collect();
                let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (f, (lo, hi))
            })
            .collect();
        let rows = els
            .iter()
            .map(|e| {
                let mut v = Vec::with_capacity(ELEMENT_FEATURES);
                one_hot(&mut v, 18, Some(e.group as usize - 1));
                one_hot(&mut v, 7, Some(e.period as usize - 1));
                let binned = |v: &mut Vec<f32>, i: usize| {
                    let (f, (lo, hi)) = &props[i];
                    one_hot(v, 10, f(e).map(|x| bin(x, *lo, *hi, 10)));
                };
                binned(&mut v, 0);
                binned(&mut v, 1);
                one_hot(&mut v, 12, Some(valence_electrons(e) - 1));
                binned(&mut v, 2);
                binned(&mut v, 3);
                one_hot(&mut v, 4, "spdf".find(e.block));
                binned(&mut v, 4);
                v.push(if e.electronegativity.is_none() {
                    1.0
                } else {
                    0.0
                });
                debug_assert_eq!(v.len(), ELEMENT_FEATURES);
                Some(v)
            })
            .collect();
        Self {
            source: "default".into(),
            rows,
        }
    }
}

fn one_hot(v: &mut Vec<f32>, n: usize, hot: Option<usize>) {
    let start = v.len();
    v.resize(start + n, 0.0);
    if let Some(h) = hot.filter(|h| *h < n) {
        v[start + h] = 1.0;
    }
}

fn bin(x: f64, lo: f64, hi: f64, n: usize) -> usize {
    if hi <= lo {
        return 0;
    }
    (((x - lo) / (hi - lo) * n as f64).floor() as usize).min(n - 1)
}

/// Outer-shell electrons by group: groups 1–12 as the group, 13–18 minus 10; f-block 3.
fn valence_electrons(e: &ElementData) -> usize {
    match (e.block, e.group) {
        ('f', _) => 3,
        (_, g) if g <= 12 => g as usize,
        (_, g) => g as usize - 10,
    }
    .clamp(1, 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_is_one_hot_per_category() {
        let t = ElementTable::default_table();
        for z in 1..=103u8 {
            let v = t.get(z).unwrap();
            assert_eq!(v.len(), 92);
            assert!(v.iter().all(|x| *x == 0.0 || *x == 1.0));
            assert_eq!(v[..18].iter().sum::<f32>(), 1.0, "group of {z}");
        }
        // Different elements differ.
        assert_ne!(t.get(26), t.get(27));
    }

    #[test]
    fn atom_init_shape_errors() {
        assert!(ElementTable::from_atom_init_json("{\"1\": [1, 2]}", "x").is_err());
        assert!(ElementTable::from_atom_init_json("{\"0\": []}", "x").is_err());
        assert!(ElementTable::from_atom_init_json("[", "x").is_err());
    }
}
