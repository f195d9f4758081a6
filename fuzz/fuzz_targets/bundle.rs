//! Any bytes through the bundle reader: it must return a bundle or an error, never panic,
//! hang or allocate beyond its limits. Mutations rarely keep the sha256s in manifest.json
//! right, so each input is also tried once more with the hashes repaired, which lets the
//! fuzzer reach the manifest, safetensors, index and normaliser checks behind them.
#![no_main]

use std::io::{Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use xtal_core::bundle::{Bundle, Limits, Side, sha256_hex};

const LIMITS: Limits = Limits {
    max_entries: 16,
    max_entry_bytes: 16 << 20,
    max_total_bytes: 32 << 20,
    max_compression_ratio: 200,
};

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Some(repaired) = with_repaired_hashes(data) {
        read(&repaired);
    }
});

fn read(data: &[u8]) {
    let Ok(bundle) = Bundle::from_bytes(data, &LIMITS) else {
        return;
    };
    if let Some(index) = &bundle.index {
        let query = vec![1.0; index.dim];
        let _ = index.search(&query, 5, Side::Structure);
        let _ = index.search(&query, 5, Side::Text);
    }
    let _ = bundle
        .structure_input
        .standardize(&vec![0.5; bundle.structure_input.dim()]);
}

/// The same archive with manifest.json's sizes and sha256s recomputed from the entries.
fn with_repaired_hashes(data: &[u8]) -> Option<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).ok()?;
    if archive.len() > 16 {
        return None;
    }
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).ok()?;
        if f.size() > 1 << 22 {
            return None;
        }
        let mut bytes = Vec::new();
        (&mut f).take(1 << 22).read_to_end(&mut bytes).ok()?;
        entries.push((f.name().to_string(), bytes));
    }
    let m = entries.iter().position(|(n, _)| n == "manifest.json")?;
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[m].1).ok()?;
    for listed in manifest.get_mut("entries")?.as_array_mut()? {
        let name = listed.get("name")?.as_str()?.to_string();
        if let Some((_, bytes)) = entries.iter().find(|(n, _)| *n == name) {
            listed["size"] = (bytes.len() as u64).into();
            listed["sha256"] = sha256_hex(bytes).into();
        }
    }
    entries[m].1 = serde_json::to_vec(&manifest).ok()?;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in &entries {
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file(name.as_str(), o).ok()?;
        w.write_all(bytes).ok()?;
    }
    Some(w.finish().ok()?.into_inner())
}
