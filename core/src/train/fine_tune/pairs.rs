//! The user's pairs for a fine-tune, read from CSV and resolved against the bundle's index.

use std::collections::HashMap;

use crate::bundle::RetrievalIndex;

use super::FineTuneError;

/// The user's pairs, resolved against the bundle's index.
#[derive(Debug, Clone, PartialEq)]
pub enum FineTunePairs {
    /// Texts paired with index rows: the rows' structure embeddings are the targets.
    IndexText {
        rows: Vec<usize>,
        texts: Vec<String>,
    },
    /// Two texts that should embed alike (e.g. a query and the description it should find).
    TextText {
        first: Vec<String>,
        second: Vec<String>,
    },
}

impl FineTunePairs {
    pub fn len(&self) -> usize {
        match self {
            Self::IndexText { rows, .. } => rows.len(),
            Self::TextText { first, .. } => first.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::IndexText { .. } => "id,text",
            Self::TextText { .. } => "text_a,text_b",
        }
    }
}

/// Reads pairs from CSV with the header `id,text` (ids of the bundle's index) or
/// `text_a,text_b`. Every problem names its line.
pub fn parse_pairs_csv(
    csv_text: &str,
    index: Option<&RetrievalIndex>,
) -> Result<FineTunePairs, FineTuneError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| FineTuneError::Pairs(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let by_id = match header.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["id", "text"] => {
            let index = index.filter(|i| i.structure.is_some()).ok_or_else(|| {
                FineTuneError::Pairs(
                    "id,text pairs need a bundle whose index has structure embeddings".into(),
                )
            })?;
            let rows: HashMap<&str, usize> = index
                .records
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            Some(rows)
        }
        ["text_a", "text_b"] => None,
        _ => {
            return Err(FineTuneError::Pairs(format!(
                "the header must be `id,text` (ids of the bundle's index) or `text_a,text_b`, not `{}`",
                header.join(",")
            )));
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| FineTuneError::Pairs(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        let (first, second) = (field(0), field(1));
        if second.is_empty() {
            return Err(FineTuneError::Line {
                line,
                reason: "the text is empty".into(),
            });
        }
        if let Some(rows) = &by_id {
            let row = rows
                .get(first.as_str())
                .ok_or_else(|| FineTuneError::Line {
                    line,
                    reason: format!("id `{first}` is not in the bundle's index"),
                })?;
            a.push(row.to_string());
        } else if first.is_empty() {
            return Err(FineTuneError::Line {
                line,
                reason: "text_a is empty".into(),
            });
        } else {
            a.push(first);
        }
        b.push(second);
    }
    if a.len() < 2 {
        return Err(FineTuneError::Pairs(format!(
            "{} pair(s); a contrastive fine-tune needs at least 2",
            a.len()
        )));
    }
    Ok(match by_id {
        Some(_) => FineTunePairs::IndexText {
            rows: a.iter().map(|r| r.parse().unwrap_or(0)).collect(),
            texts: b,
        },
        None => FineTunePairs::TextText {
            first: a,
            second: b,
        },
    })
}
