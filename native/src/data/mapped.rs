//! FTCP tensors read in place: a float32 `.npy` is memory-mapped, not loaded, so a dataset
//! of 129k tensors (13 GB) costs the pages a batch touches, which the kernel can drop again.
//! Files that cannot be mapped as they are (float64, big-endian, Fortran order) are decoded.
//!
//! Pages a process has read from a map count as its resident memory until the kernel needs
//! them, so an epoch over every row would show the whole file resident. [`SelectedRows`] hands
//! its maps' pages back every [`RELEASE_EVERY`] bytes read: they stay in the page cache (a row
//! read again is a minor fault, not a disk read), and the process's resident size stays about
//! that size whatever the dataset's.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::Mmap;
#[cfg(unix)]
use memmap2::UncheckedAdvice;
use npyz::{DType, NpyHeader, Order, TypeChar};
use xtal_core::data::TensorRows;
use xtal_core::data::decode_npy;

use crate::exit::BadInput;

/// One `.npy` of `n × rows × cols` tensors.
#[derive(Debug)]
enum Store {
    Mapped { map: Mmap, offset: usize },
    Decoded(Vec<f32>),
}

#[derive(Debug)]
pub struct NpyTensors {
    store: Store,
    pub shape: Vec<usize>,
}

impl NpyTensors {
    /// Opens `path`, checking its header and that it holds every value its shape promises
    /// (a truncated file is an error naming it, not a crash when a batch reaches the end).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let bad = |m: String| BadInput(format!("{}: {m}", path.display()));
        let file = File::open(path).map_err(|e| bad(format!("cannot read ({e})")))?;
        // SAFETY: the map is read-only; a dataset rewritten under a running job is outside
        // what xtal promises (prepare writes new datasets aside and renames them into place).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| bad(format!("cannot map ({e})")))?;
        let mut rest: &[u8] = &map;
        let header =
            NpyHeader::from_reader(&mut rest).map_err(|e| bad(format!("not a .npy file: {e}")))?;
        let offset = map.len() - rest.len();
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
        let plain_f32 = matches!(header.dtype(), DType::Plain(t)
            if t.type_char() == TypeChar::Float && t.size_field() == 4 && t.endianness() == npyz::Endianness::Little)
            && cfg!(target_endian = "little")
            && header.order() == Order::C;
        if !plain_f32 || !offset.is_multiple_of(4) {
            // Rare layouts: decoded into memory as before.
            let array = decode_npy(&map).map_err(bad)?;
            return Ok(Self {
                shape: array.shape,
                store: Store::Decoded(array.data),
            });
        }
        let expected = count
            .checked_mul(4)
            .and_then(|b| b.checked_add(offset))
            .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
        if map.len() != expected {
            return Err(bad(format!(
                "{} bytes, but its shape {shape:?} needs {expected} (truncated or damaged)",
                map.len()
            ))
            .into());
        }
        Ok(Self {
            store: Store::Mapped { map, offset },
            shape,
        })
    }

    /// [`Self::open`], the file holding `N × rows × cols` tensors.
    pub fn open_tensors(path: &Path, rows: usize, cols: usize) -> anyhow::Result<Self> {
        let npy = Self::open(path)?;
        if npy.shape.len() != 3 || npy.shape[1] != rows || npy.shape[2] != cols {
            return Err(BadInput(format!(
                "{}: shape {:?}, expected (N, {rows}, {cols}) for the dataset's FTCP layout",
                path.display(),
                npy.shape,
            ))
            .into());
        }
        Ok(npy)
    }

    /// Drops this process's mapping of the pages read so far; they are read again, from the
    /// page cache, when next touched.
    fn release(&self) {
        #[cfg(unix)]
        if let Store::Mapped { map, .. } = &self.store {
            // SAFETY: a read-only map of a file: pages dropped from it are filled again from
            // the file (unchanged, see `open`), so slices into it keep their values. Failure
            // only leaves the pages resident.
            let _ = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }

    /// Every value, row-major.
    pub fn values(&self) -> &[f32] {
        match &self.store {
            Store::Mapped { map, offset } => {
                // Aligned: the map starts on a page and the offset is a multiple of 4.
                bytemuck::cast_slice(&map[*offset..])
            }
            Store::Decoded(v) => v,
        }
    }
}

/// Bytes of rows read between two releases of the maps' pages.
pub const RELEASE_EVERY: usize = 256 << 20;

/// Chosen tensors of one or more `.npy` files (a dataset's shards), in the order given.
#[derive(Debug)]
pub struct SelectedRows {
    files: Vec<NpyTensors>,
    /// Per row: (file, tensor within it).
    index: Vec<(u32, usize)>,
    per: usize,
    /// Bytes of rows read so far.
    read: AtomicUsize,
}

impl SelectedRows {
    pub fn new(per: usize) -> Self {
        Self {
            files: Vec::new(),
            index: Vec::new(),
            per,
            read: AtomicUsize::new(0),
        }
    }

    /// Adds a file; its tensors are chosen with `select`.
    pub fn add_file(&mut self, file: NpyTensors) -> u32 {
        self.files.push(file);
        (self.files.len() - 1) as u32
    }

    /// Tensor `k` of file `file` becomes the next row (`k` checked by the caller).
    pub fn select(&mut self, file: u32, k: usize) {
        self.index.push((file, k));
    }

    /// Adds a file, every tensor of it chosen in order.
    pub fn add_all(&mut self, file: NpyTensors) {
        let n = file.shape.first().copied().unwrap_or(0);
        let f = self.add_file(file);
        self.index.extend((0..n).map(|k| (f, k)));
    }

    pub fn into_shared(self) -> Arc<dyn TensorRows> {
        Arc::new(self)
    }
}

impl TensorRows for SelectedRows {
    fn row(&self, i: usize) -> &[f32] {
        let bytes = self.per * 4;
        let before = self.read.fetch_add(bytes, Ordering::Relaxed);
        if (before + bytes) / RELEASE_EVERY != before / RELEASE_EVERY {
            self.files.iter().for_each(NpyTensors::release);
        }
        let (f, k) = self.index[i];
        &self.files[f as usize].values()[k * self.per..(k + 1) * self.per]
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}
