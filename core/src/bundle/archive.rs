//! The zip layer: writing entries, and reading an untrusted archive into memory with every
//! check done before a byte is trusted. Nothing is ever extracted to disk.

use std::collections::HashSet;
use std::io::{Cursor, Read, Write};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::BundleError;

/// What a reader accepts; everything beyond is refused before it is decompressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_entries: usize,
    /// Uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Uncompressed size of all entries together.
    pub max_total_bytes: u64,
    /// Uncompressed / compressed size of a compressed entry (zip bombs reach thousands).
    pub max_compression_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 32,
            max_entry_bytes: 2 << 30,
            max_total_bytes: 4 << 30,
            max_compression_ratio: 200,
        }
    }
}

/// One file inside a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub data: Vec<u8>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A zip with `entries` in order; JSON and text are deflated, tensors stored (they do not
/// compress, and stored entries load without inflating). Timestamps are fixed so that the
/// same model packs to the same bytes.
pub fn write_zip(entries: &[Entry]) -> Result<Vec<u8>, BundleError> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let fail = |e: &dyn std::fmt::Display| BundleError::Write(e.to_string());
    for entry in entries {
        let method = if entry.name.ends_with(".safetensors") {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(entry.data.len() as u64 >= u32::MAX as u64)
            .unix_permissions(0o644);
        zip.start_file(entry.name.as_str(), options)
            .map_err(|e| fail(&e))?;
        zip.write_all(&entry.data).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// Reads every entry of an untrusted zip into memory, refusing unsafe names, duplicates,
/// directories, links, encryption, sizes over `limits` and suspicious compression ratios.
pub fn read_zip(bytes: &[u8], limits: &Limits) -> Result<Vec<Entry>, BundleError> {
    let declared = declared_entry_count(bytes)?;
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| BundleError::NotABundle(format!("not a readable zip archive ({e})")))?;
    if declared > limits.max_entries {
        return Err(BundleError::NotABundle(format!(
            "{declared} entries, more than the limit of {}",
            limits.max_entries
        )));
    }
    // The zip crate keeps the last of two entries with one name; the directory's own count
    // tells that one went missing.
    if declared != archive.len() {
        return Err(BundleError::NotABundle(format!(
            "duplicate entry names ({declared} entries in the directory, {} distinct names)",
            archive.len()
        )));
    }
    let mut names = HashSet::new();
    let mut total = 0u64;
    let mut entries = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| BundleError::NotABundle(format!("entry {i}: {e}")))?;
        let name = String::from_utf8(file.name_raw().to_vec())
            .map_err(|_| BundleError::NotABundle(format!("entry {i}: name is not UTF-8")))?;
        let refuse = |reason: String| BundleError::Entry {
            name: name.clone(),
            reason,
        };
        check_name(&name).map_err(&refuse)?;
        if !names.insert(name.clone()) {
            return Err(refuse("appears twice".into()));
        }
        if file.is_dir() || file.is_symlink() {
            return Err(refuse("directories and links are not allowed".into()));
        }
        if file.encrypted() {
            return Err(refuse("encrypted entries are not allowed".into()));
        }
        let size = file.size();
        if size > limits.max_entry_bytes {
            return Err(refuse(format!(
                "{size} bytes, more than the limit of {} per entry",
                limits.max_entry_bytes
            )));
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(refuse(format!(
                "the entries add up to more than the limit of {} bytes",
                limits.max_total_bytes
            )));
        }
        let packed = file.compressed_size();
        if file.compression() != CompressionMethod::Stored
            && size > 4096
            && size / packed.max(1) > limits.max_compression_ratio
        {
            return Err(refuse(format!(
                "compression ratio {} : 1 is suspicious (limit {})",
                size / packed.max(1),
                limits.max_compression_ratio
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        // Never more than declared, whatever the stream holds.
        (&mut file)
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(|e| refuse(format!("cannot read ({e})")))?;
        if data.len() as u64 != size {
            return Err(refuse(format!(
                "holds {} bytes, its header says {size}",
                data.len()
            )));
        }
        entries.push(Entry { name, data });
    }
    Ok(entries)
}

/// Bundle entries are plain names or `dir/name` paths: no `..`, no absolute or drive paths,
/// no backslashes or control characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("empty or overlong name".into());
    }
    if name.starts_with('/') || name.contains('\\') || name.contains(':') {
        return Err("absolute or drive paths are not allowed".into());
    }
    if name.chars().any(char::is_control) {
        return Err("control characters in the name".into());
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("'..', '.' and empty path components are not allowed".into());
    }
    Ok(())
}

/// The entry count the end-of-central-directory record declares (zip64 archives are refused:
/// a bundle never needs 65,535 entries or a 4 GiB directory).
fn declared_entry_count(bytes: &[u8]) -> Result<usize, BundleError> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const EOCD_LEN: usize = 22;
    if bytes.len() < EOCD_LEN {
        return Err(BundleError::NotABundle(format!(
            "{} bytes, too short for a zip archive",
            bytes.len()
        )));
    }
    let earliest = bytes.len().saturating_sub(EOCD_LEN + u16::MAX as usize);
    let at = (earliest..=bytes.len() - EOCD_LEN)
        .rev()
        .find(|&i| bytes[i..i + 4] == EOCD)
        .ok_or_else(|| {
            BundleError::NotABundle("not a zip archive (no end of central directory)".into())
        })?;
    let total = u16::from_le_bytes([bytes[at + 10], bytes[at + 11]]);
    if total == u16::MAX {
        return Err(BundleError::NotABundle(
            "zip64 archives are not bundles".into(),
        ));
    }
    Ok(total as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.into(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn round_trip_and_names() {
        let zip = write_zip(&[entry("a.json", b"{}"), entry("w.safetensors", &[7; 100])]).unwrap();
        let back = read_zip(&zip, &Limits::default()).unwrap();
        assert_eq!(back[1], entry("w.safetensors", &[7; 100]));
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../b",
            "C:x",
            "a\\b",
            "",
            "a//b",
            "./a",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("index/ids.json").is_ok());
    }

    #[test]
    fn limits_and_bombs() {
        let zip = write_zip(&[entry("big.json", &vec![b' '; 1 << 20])]).unwrap();
        let err = read_zip(&zip, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("compression ratio"), "{err}");
        let small = Limits {
            max_entry_bytes: 10,
            ..Limits::default()
        };
        let zip = write_zip(&[entry("w.safetensors", &[0; 11])]).unwrap();
        assert!(
            read_zip(&zip, &small)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        assert!(read_zip(b"hello", &Limits::default()).is_err());
        assert!(read_zip(&zip[..zip.len() - 1], &Limits::default()).is_err());
    }
}
