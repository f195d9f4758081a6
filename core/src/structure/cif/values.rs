//! CIF values as numbers and species: `5.4310(2)`, `1/4`, `Fe2+`, `Ow1`, `'0.8Nb + 0.2Zr'`.

use crate::structure::crystal::Species;
use crate::structure::elements::atomic_number;

/// A CIF number: `5.4310(2)` → 5.431, `-.5` → -0.5, `1/4` → 0.25, `0.25(3` (an unclosed
/// uncertainty) → 0.25; `?`, `.` and text are not numbers.
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t.find('(').map_or(t, |i| &t[..i]);
    if let Some((a, b)) = t.split_once('/') {
        let (a, b) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
        return (b != 0.0).then(|| a / b).filter(|v| v.is_finite());
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How a type symbol or label was read into species.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSpecies {
    /// Species and their share of the site (1 for a single species).
    pub species: Vec<(Species, f64)>,
    /// Set when the text was not a plain element symbol, saying what was assumed.
    pub note: Option<String>,
}

/// Labels that name water or groups rather than an element (pymatgen's special symbols).
const SPECIAL: [(&str, u8, &str); 7] = [
    ("Wat", 8, "water oxygen"),
    ("wat", 8, "water oxygen"),
    (
        "OH2",
        8,
        "water oxygen; its implicit hydrogens are not added",
    ),
    (
        "OH",
        8,
        "hydroxide oxygen; its implicit hydrogen is not added",
    ),
    (
        "NO3",
        7,
        "nitrate nitrogen; its implicit oxygens are not added",
    ),
    (
        "NH4",
        7,
        "ammonium nitrogen; its implicit hydrogens are not added",
    ),
    (
        "NH3",
        7,
        "ammonia nitrogen; its implicit hydrogens are not added",
    ),
];

/// A type symbol or label: "Fe", "Fe2+", "O2-", "Cl-", "Fe1" (a label), "FE", "D" (deuterium),
/// "Ow1" and "Wat1" (water oxygens), or a mixture "0.8Nb + 0.2Zr".
pub fn parse_species(text: &str) -> Option<ParsedSpecies> {
    let text = text.trim();
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return parse_mixture(text);
    }
    for (prefix, z, what) in SPECIAL {
        let Some(rest) = text.strip_prefix(prefix) else {
            continue;
        };
        if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        return Some(ParsedSpecies {
            species: vec![(Species { z, oxidation: None }, 1.0)],
            note: Some(format!(
                "'{text}' read as {} ({what})",
                crate::structure::elements::symbol(z)
            )),
        });
    }
    let species = parse_element(text)?;
    Some(ParsedSpecies {
        species: vec![(species, 1.0)],
        note: None,
    })
}

fn parse_element(text: &str) -> Option<Species> {
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

/// "0.8Nb + 0.2Zr" (Pauling File): the share of each element on the site, as written (a sum
/// under 1 leaves the rest vacant, as pymatgen reads it).
fn parse_mixture(text: &str) -> Option<ParsedSpecies> {
    let mut species: Vec<(Species, f64)> = Vec::new();
    for part in text.split('+').map(str::trim) {
        let split = part.find(|c: char| c.is_ascii_alphabetic())?;
        let amount = parse_number(&part[..split])?;
        let s = parse_element(&part[split..])?;
        if amount.is_nan() || amount <= 0.0 {
            return None;
        }
        species.push((s, amount));
    }
    if species.len() < 2 {
        return None;
    }
    Some(ParsedSpecies {
        species,
        note: Some(format!("'{text}' read as a mixed site")),
    })
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
        let s = |t: &str| {
            parse_species(t).map(|p| {
                assert_eq!(p.species.len(), 1);
                (p.species[0].0.z, p.species[0].0.oxidation)
            })
        };
        assert_eq!(s("Fe2+"), Some((26, Some(2.0))));
        assert_eq!(s("O2-"), Some((8, Some(-2.0))));
        assert_eq!(s("Cl-"), Some((17, Some(-1.0))));
        assert_eq!(s("Fe1"), Some((26, None)));
        assert_eq!(s("Ca1A"), Some((20, None)));
        assert_eq!(s("FE"), Some((26, None)));
        assert_eq!(s("Ow3"), Some((8, None)));
        assert_eq!(s("Wat1"), Some((8, None)));
        assert_eq!(s("W1"), Some((74, None)));
        // Ammonia, not nihonium (as pymatgen reads it).
        assert_eq!(s("NH3"), Some((7, None)));
        assert!(parse_species("NH3").unwrap().note.is_some());
        assert_eq!(s("Xx"), None);
        assert_eq!(s("12"), None);
    }

    #[test]
    fn mixtures() {
        let p = parse_species("0.8Nb + 0.2Zr").unwrap();
        let got: Vec<(u8, f64)> = p.species.iter().map(|(s, o)| (s.z, *o)).collect();
        assert_eq!(got, [(41, 0.8), (40, 0.2)]);
        assert!(p.note.is_some());
        assert!(parse_species("0.5Nb + 0.5Qq").is_none());
        assert!(parse_species("0.5").is_none());
    }

    #[test]
    fn numbers_with_uncertainty_and_fractions() {
        assert_eq!(parse_number("5.4310(2)"), Some(5.431));
        assert_eq!(parse_number("0.25(3"), Some(0.25));
        assert_eq!(parse_number("-.5"), Some(-0.5));
        assert_eq!(parse_number("1/4"), Some(0.25));
        assert_eq!(parse_number("1/0"), None);
        assert_eq!(parse_number("?"), None);
        assert_eq!(parse_number("1e400"), None);
    }
}
