//! `xtal bundle pack --index-structures DATASET`: an index of every structure a prepared
//! dataset holds, not only the run's pairs — each with its first text where it has one — for
//! searching beyond the training data (e.g. all 12,017 shared structures). Structures are
//! embedded through the packed bundle itself, as `xtal embed --bundle` and the page do.

use std::path::Path;

use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::Value;
use xtal_core::bundle::{Bundle, IndexRecords, RetrievalIndex, StructureInput};
use xtal_core::data::StructureItem;
use xtal_core::models::clip::Clip;
use xtal_core::train::to_host;

use crate::data::pairs::DataSource;
use crate::exit::BadInput;

/// The dataset's entries with a structure the bundle's structure input reads, in file order.
pub(super) struct IndexEntries {
    pub source: String,
    ids: Vec<String>,
    formulas: Vec<Option<String>>,
    /// The first text, or "" for a structure without one.
    texts: Vec<String>,
    cifs: Option<Vec<Option<String>>>,
    items: Vec<StructureItem>,
}

impl IndexEntries {
    /// Reads `dataset` (an `xtal prepare` directory) and makes what the model reads of each
    /// structure; records without a structure, and structures the input cannot read (e.g. too
    /// many atoms for FTCP), are left out and counted on stderr.
    pub fn read(dataset: &Path, input: &StructureInput, with_cifs: bool) -> anyhow::Result<Self> {
        if !input.reads_cif() {
            return Err(BadInput(
                "--index-structures: the run reads precomputed structure vectors; only FTCP and graph models embed structures".into(),
            )
            .into());
        }
        let data = DataSource::new(dataset, None)?;
        let records = data.json_records()?;
        let string = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let mut rows: Vec<(String, Option<String>, String)> = Vec::new();
        for (_, r) in &records {
            let Some(id) = string(&r["id"]).filter(|s| !s.is_empty()) else {
                continue;
            };
            let text = match &r["texts"] {
                Value::Array(all) => all.iter().filter_map(Value::as_str).next(),
                _ => r["text"].as_str(),
            }
            .unwrap_or("")
            .trim()
            .to_string();
            rows.push((id, string(&r["formula"]), text));
        }
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        let structures = data.structures_of(&ids)?;
        if structures.is_empty() {
            return Err(BadInput(format!(
                "--index-structures: {} has no structures (structures.jsonl); give a dataset `xtal prepare` made",
                dataset.display()
            ))
            .into());
        }
        let bar = ProgressBar::new(rows.len() as u64).with_style(
            ProgressStyle::with_template(
                "index structures {bar:30} {pos}/{len}  [{elapsed}<{eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let made: Vec<Option<(StructureItem, Option<String>)>> = rows
            .par_iter()
            .map(|(id, _, _)| {
                bar.inc(1);
                let s = structures.get(id)?;
                let item = input.item_of(s).ok()?;
                Some((item, with_cifs.then(|| s.to_cif(id))))
            })
            .collect();
        bar.finish_and_clear();
        let mut entries = Self {
            source: dataset.display().to_string(),
            ids: Vec::new(),
            formulas: Vec::new(),
            texts: Vec::new(),
            cifs: with_cifs.then(Vec::new),
            items: Vec::new(),
        };
        let mut left_out = 0;
        for ((id, formula, text), made) in rows.into_iter().zip(made) {
            let Some((item, cif)) = made else {
                left_out += 1;
                continue;
            };
            entries.ids.push(id);
            entries.formulas.push(formula);
            entries.texts.push(text);
            entries.items.push(item);
            if let Some(cifs) = &mut entries.cifs {
                cifs.push(cif);
            }
        }
        if entries.items.is_empty() {
            return Err(BadInput(format!(
                "--index-structures: the model reads none of {}'s structures",
                dataset.display()
            ))
            .into());
        }
        let described = entries.texts.iter().filter(|t| !t.is_empty()).count();
        eprintln!(
            "index: {} structures of {} ({described} with text){}",
            entries.items.len(),
            dataset.display(),
            if left_out > 0 {
                format!(
                    ", {left_out} records left out (no structure, or one the model cannot read)"
                )
            } else {
                String::new()
            }
        );
        Ok(entries)
    }

    /// The index: structure embeddings of every entry and text embeddings of the described
    /// ones, by `model` through `bundle` (the same model packed without an index).
    pub fn embed<B: Backend>(
        &self,
        bundle: &Bundle,
        model: &Clip<B>,
        map: impl FnOnce(&[f32]) -> Option<Vec<f32>>,
        device: &B::Device,
    ) -> anyhow::Result<RetrievalIndex> {
        const CHUNK: usize = 256;
        let bar = ProgressBar::new(self.items.len() as u64).with_style(
            ProgressStyle::with_template(
                "index embeddings {bar:30} {pos}/{len}  [{elapsed}<{eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut structure = Vec::with_capacity(self.items.len() * bundle.manifest.model.embed_dim);
        for chunk in self.items.chunks(CHUNK) {
            structure.extend(to_host(bundle.embed_structures(model, chunk, device)?)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let index = RetrievalIndex {
            records: IndexRecords {
                ids: self.ids.clone(),
                formulas: self.formulas.clone(),
                descriptions: self.texts.clone(),
                structures: self.cifs.clone(),
            },
            dim: bundle.manifest.model.embed_dim,
            map: map(&structure),
            structure: Some(structure),
            text: None,
        };
        let text = to_host(bundle.embed_texts(model, &index.described_texts(), device)?)?;
        Ok(index.with_text_embeddings(&text)?)
    }
}
