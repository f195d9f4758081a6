//! Writing results so that nothing half-written is ever left under the name the user gave:
//! files go to a temporary sibling and are renamed into place; whole directories likewise.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::BadInput;

/// A directory being filled at `<final>.partial-<pid>`, moved to its final name by `commit`.
pub struct StagedDir {
    pub path: PathBuf,
    target: PathBuf,
}

impl StagedDir {
    /// Refuses an existing non-empty `target` unless `replace`; clears stale partial dirs.
    pub fn new(target: &Path, replace: bool) -> anyhow::Result<Self> {
        if target.exists()
            && !replace
            && target
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(BadInput(format!(
                "{} exists; pass --force to replace it",
                target.display()
            ))
            .into());
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let name = target
            .file_name()
            .context("output path has no file name")?
            .to_string_lossy()
            .to_string();
        // Leftovers of an interrupted run of the same output.
        if let Ok(entries) = parent.read_dir() {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".{name}.partial-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let path = parent.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes one file of the staged directory (made durable by `commit`).
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.file(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Flushes every file to disk, then moves the finished directory to its name (replacing
    /// an old one only now), so the name never points at a directory with missing data.
    pub fn commit(self) -> anyhow::Result<PathBuf> {
        for entry in std::fs::read_dir(&self.path)? {
            let path = entry?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot flush {}", path.display()))?;
        }
        let old = self.target.with_file_name(format!(
            ".{}.old-{}",
            self.target
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            std::process::id()
        ));
        if self.target.exists() {
            std::fs::rename(&self.target, &old)
                .with_context(|| format!("cannot move {} aside", self.target.display()))?;
        }
        std::fs::rename(&self.path, &self.target)
            .with_context(|| format!("cannot create {}", self.target.display()))?;
        if old.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        // Only an uncommitted (failed) staging dir still exists here.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A little-endian .npy file numpy reads with `np.load`.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> anyhow::Result<()> {
    use npyz::WriterBuilder;
    let file = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(())
}

/// Writes `bytes` to `path` through a flushed temporary sibling and a rename, so `path`
/// holds either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = temp_sibling(path, "");
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `.<name>.tmp-<pid><suffix>` beside `path` (a suffix keeps an extension tools rely on).
pub fn temp_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}{suffix}", std::process::id()))
}

/// An element type `NpyAppender` writes, with its numpy `descr`.
pub trait NpyElement: Copy {
    const DESCR: &'static str;
    fn put(self, out: &mut impl std::io::Write) -> std::io::Result<()>;
}

macro_rules! npy_element {
    ($($t:ty => $d:literal),*) => {$(
        impl NpyElement for $t {
            const DESCR: &'static str = $d;
            fn put(self, out: &mut impl std::io::Write) -> std::io::Result<()> {
                out.write_all(&self.to_le_bytes())
            }
        }
    )*};
}
npy_element!(f32 => "<f4", u8 => "|u1", u32 => "<u4", i32 => "<i4", i64 => "<i8");

/// Header bytes of every `NpyAppender` file: room for any first dimension, a multiple of 64
/// as the format asks.
const NPY_HEADER_BYTES: usize = 128;

/// A `.npy` written as its rows arrive, in constant memory: the header is written with room
/// to spare and rewritten with the final row count by `finish`.
pub struct NpyAppender<T: NpyElement> {
    path: PathBuf,
    out: BufWriter<File>,
    /// Shape after the first dimension, and the values per row.
    tail: Vec<u64>,
    per_row: usize,
    rows: u64,
    _element: std::marker::PhantomData<T>,
}

impl<T: NpyElement> NpyAppender<T> {
    pub fn create(path: &Path, tail: &[u64]) -> anyhow::Result<Self> {
        let mut out = BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        );
        use std::io::Write;
        out.write_all(&npy_header(T::DESCR, 0, tail)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            per_row: tail.iter().product::<u64>() as usize,
            tail: tail.to_vec(),
            rows: 0,
            _element: std::marker::PhantomData,
        })
    }

    /// Appends whole rows (`values.len()` a multiple of the row size).
    pub fn extend(&mut self, values: &[T]) -> anyhow::Result<()> {
        debug_assert!(self.per_row == 0 || values.len().is_multiple_of(self.per_row));
        use std::io::Write;
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
        for v in values {
            v.put(&mut bytes)?;
        }
        self.out
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += (values.len() / self.per_row.max(1)) as u64;
        Ok(())
    }

    /// Writes the real row count into the header.
    pub fn finish(self) -> anyhow::Result<u64> {
        use std::io::{Seek, SeekFrom, Write};
        let rows = self.rows;
        let header = npy_header(T::DESCR, rows, &self.tail)?;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(rows)
    }
}

/// A version-1.0 `.npy` header of exactly `NPY_HEADER_BYTES` bytes.
fn npy_header(descr: &str, rows: u64, tail: &[u64]) -> anyhow::Result<Vec<u8>> {
    let shape = std::iter::once(rows)
        .chain(tail.iter().copied())
        .map(|d| d.to_string())
        .collect::<Vec<_>>();
    let shape = if shape.len() == 1 {
        format!("({},)", shape[0])
    } else {
        format!("({})", shape.join(", "))
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let room = NPY_HEADER_BYTES - 10;
    anyhow::ensure!(
        dict.len() < room,
        "shape {shape} too long for a .npy header"
    );
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend((room as u16).to_le_bytes());
    header.extend(dict.bytes());
    header.resize(NPY_HEADER_BYTES - 1, b' ');
    header.push(b'\n');
    Ok(header)
}
