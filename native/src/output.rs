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
