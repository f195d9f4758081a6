//! The input CSV, read twice and never held whole: `scan` checks every row and settles the
//! columns before anything is featurised (so a bad value stops the run before any output,
//! and every shard agrees on the columns and the split); `RowStream` then yields the rows of
//! one range as `Row`s, CIF bytes included.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::Args;
use crate::exit::BadInput;

pub struct Row {
    /// Index among the CSV's data rows (0-based).
    pub index: usize,
    pub id: String,
    /// The CSV's `source` column: properties mean different things per source.
    pub source: Option<String>,
    /// The row's non-empty texts, in the order of the text columns.
    pub texts: Vec<String>,
    pub properties: BTreeMap<String, Option<f64>>,
    pub tensor: Option<[f64; 9]>,
    /// The CIF's bytes as the file or the CSV cell holds them; the reader decodes them (and
    /// says so when a file is not UTF-8).
    pub cif: Result<Vec<u8>, String>,
}

/// Where each field is in the CSV.
pub struct Columns {
    id: usize,
    /// The text columns found, with their names, in the order given.
    texts: Vec<(usize, String)>,
    tensor: Option<usize>,
    cif: Option<usize>,
    source: Option<usize>,
    /// Property columns kept, with their names.
    pub properties: Vec<(usize, String)>,
}

/// What the first pass learnt.
pub struct Scan {
    pub columns: Columns,
    /// Data rows (after `--limit`).
    pub rows: usize,
    /// SHA-256 of the CSV bytes read: a shard prepared from other data is never mixed in.
    pub csv_sha256: String,
}

/// Feeds every byte read to a hash.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).map_err(|e| BadInput(format!("{}: cannot read ({e})", path.display())).into())
}

/// First pass: headers, ids (unique, non-empty), property columns, tensors; nothing kept
/// per row but the id.
pub fn scan(args: &Args) -> anyhow::Result<Scan> {
    let path = &args.csv;
    let mut reader = csv::Reader::from_reader(HashingReader {
        inner: open(path)?,
        hash: Sha256::new(),
    });
    let bad = |m: String| BadInput(format!("{}: {m}", path.display()));
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let id = col(&args.id_column).ok_or_else(|| {
        bad(format!(
            "no '{}' column (columns: {})",
            args.id_column,
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let mut texts = Vec::new();
    for name in &args.text_columns {
        match col(name) {
            Some(c) if texts.iter().any(|(t, _)| *t == c) => {
                return Err(bad(format!("--text-column '{name}' is given twice")).into());
            }
            Some(c) => texts.push((c, name.clone())),
            // The one default column may be absent (datasets for property models have no
            // text); a column asked for among several is a typo.
            None if args.text_columns.len() == 1 => tracing::warn!(
                "{}: no '{name}' column; records get no text",
                path.display()
            ),
            None => return Err(bad(format!("no text column '{name}'")).into()),
        }
    }
    let tensor = col(&args.tensor_column);
    let cif = col("cif");
    if cif.is_none() && args.cif_dir.is_none() {
        return Err(bad("no 'cif' column; give --cif-dir with ID.cif files".into()).into());
    }
    let explicit: Vec<(usize, String)> = args
        .properties
        .iter()
        .map(|p| {
            col(p)
                .map(|c| (c, p.clone()))
                .ok_or_else(|| bad(format!("no property column '{p}'")))
        })
        .collect::<Result<_, _>>()?;
    let columns = Columns {
        id,
        texts,
        tensor,
        cif,
        source: col("source"),
        properties: explicit,
    };
    // Per column: has a value, and the first line whose value is not a number.
    let mut filled = vec![false; headers.len()];
    let mut not_number: Vec<Option<(usize, String)>> = vec![None; headers.len()];
    let mut ids = HashSet::new();
    let mut rows = 0usize;
    for rec in reader.records() {
        if args.limit.is_some_and(|l| rows >= l) {
            break;
        }
        let line = rows + 2;
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let id_value = rec.get(id).unwrap_or("").trim();
        if id_value.is_empty() {
            return Err(BadInput(format!("{}:{line}: empty id", path.display())).into());
        }
        if !ids.insert(id_value.to_string()) {
            return Err(bad(format!("id '{id_value}' appears more than once")).into());
        }
        columns.tensor_of(&rec, line, args)?;
        for (c, v) in rec.iter().enumerate().take(headers.len()) {
            if !v.is_empty() {
                filled[c] = true;
                if not_number[c].is_none() && v.parse::<f64>().is_err() {
                    not_number[c] = Some((line, v.to_string()));
                }
            }
        }
        rows += 1;
    }
    let mut columns = columns;
    if args.properties.is_empty() {
        // Default: every other column whose values are all numbers.
        let mut skip = vec![Some(id), cif, tensor];
        skip.extend(columns.texts.iter().map(|(c, _)| Some(*c)));
        columns.properties = (0..headers.len())
            .filter(|c| !skip.contains(&Some(*c)))
            .filter(|&c| filled[c] && not_number[c].is_none())
            .map(|c| (c, headers[c].to_string()))
            .collect();
    }
    for (c, name) in &columns.properties {
        if let Some((line, v)) = &not_number[*c] {
            return Err(BadInput(format!(
                "{}:{line}: {name} = '{v}' is not a number",
                path.display()
            ))
            .into());
        }
    }
    let csv_sha256 = format!("{:x}", reader.into_inner().hash.finalize());
    Ok(Scan {
        columns,
        rows,
        csv_sha256,
    })
}

impl Columns {
    /// The names of the text columns found, in order.
    pub fn text_names(&self) -> Vec<&str> {
        self.texts.iter().map(|(_, n)| n.as_str()).collect()
    }

    fn tensor_of(
        &self,
        rec: &csv::StringRecord,
        line: usize,
        args: &Args,
    ) -> anyhow::Result<Option<[f64; 9]>> {
        match self.tensor.and_then(|c| rec.get(c)).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => Ok(Some(
                serde_json::from_str(v)
                    .map_err(|e| e.to_string())
                    .and_then(|v| xtal_core::data::parse_tensor(&v))
                    .map_err(|m| {
                        BadInput(format!(
                            "{}:{line}: {} = '{v}': {m}",
                            args.csv.display(),
                            args.tensor_column
                        ))
                    })?,
            )),
        }
    }

    fn row(&self, index: usize, rec: &csv::StringRecord, args: &Args) -> anyhow::Result<Row> {
        let line = index + 2;
        let id = rec.get(self.id).unwrap_or("").trim().to_string();
        let mut properties = BTreeMap::new();
        for (c, name) in &self.properties {
            let v = rec.get(*c).unwrap_or("");
            let parsed = if v.is_empty() {
                None
            } else {
                Some(v.parse::<f64>().map_err(|_| {
                    BadInput(format!(
                        "{}:{line}: {name} = '{v}' is not a number",
                        args.csv.display()
                    ))
                })?)
            };
            properties.insert(name.clone(), parsed.filter(|x| x.is_finite()));
        }
        let cif = match (&args.cif_dir, self.cif) {
            (Some(dir), _) => read_cif_file(dir, &id),
            (None, Some(c)) => {
                let t = rec.get(c).unwrap_or("");
                if t.trim().is_empty() {
                    Err("empty cif column".to_string())
                } else {
                    Ok(t.as_bytes().to_vec())
                }
            }
            (None, None) => Err("no 'cif' column and no --cif-dir".to_string()),
        };
        let cell = |c: Option<usize>| {
            c.and_then(|c| rec.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        Ok(Row {
            index,
            tensor: self.tensor_of(rec, line, args)?,
            source: cell(self.source),
            texts: self
                .texts
                .iter()
                .filter_map(|(c, _)| cell(Some(*c)))
                .collect(),
            id,
            properties,
            cif,
        })
    }
}

/// The rows `range` of the CSV, in order, read as they are asked for.
pub struct RowStream<'a> {
    records: csv::StringRecordsIntoIter<File>,
    next: usize,
    end: usize,
    columns: &'a Columns,
    args: &'a Args,
}

impl<'a> RowStream<'a> {
    pub fn new(
        args: &'a Args,
        columns: &'a Columns,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<Self> {
        let mut records = csv::Reader::from_reader(open(&args.csv)?).into_records();
        for skipped in records.by_ref().take(range.start) {
            skipped.with_context(|| format!("{}: changed while read", args.csv.display()))?;
        }
        Ok(Self {
            records,
            next: range.start,
            end: range.end,
            columns,
            args,
        })
    }

    /// Up to `n` more rows.
    pub fn take(&mut self, n: usize) -> anyhow::Result<Vec<Row>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.next < self.end {
            let rec = self
                .records
                .next()
                .with_context(|| format!("{}: changed while read", self.args.csv.display()))?
                .map_err(|e| BadInput(format!("{}: {e}", self.args.csv.display())))?;
            out.push(self.columns.row(self.next, &rec, self.args)?);
            self.next += 1;
        }
        Ok(out)
    }
}

fn read_cif_file(dir: &Path, id: &str) -> Result<Vec<u8>, String> {
    if !xtal_core::data::is_plain_name(id) {
        return Err(format!("id '{id}' cannot name a file"));
    }
    let p: PathBuf = dir.join(format!("{id}.cif"));
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}
