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
        let npy = MappedNpy::open(path)?;
        if !npy.is_plain::<f32>() {
            // Rare layouts: decoded into memory as before.
            let array =
                decode_npy(&npy.map).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
            return Ok(Self {
                shape: array.shape,
                store: Store::Decoded(array.data),
            });
        }
        npy.check_length::<f32>()?;
        Ok(Self {
            shape: npy.shape,
            store: Store::Mapped {
                map: npy.map,
                offset: npy.offset,
            },
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

/// A mapped `.npy` file and its parsed header.
struct MappedNpy {
    path: std::path::PathBuf,
    map: Mmap,
    /// Where the values start.
    offset: usize,
    header: NpyHeader,
    shape: Vec<usize>,
    /// Values the shape promises.
    count: usize,
}

impl MappedNpy {
    fn open(path: &Path) -> anyhow::Result<Self> {
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
        Ok(Self {
            path: path.to_path_buf(),
            map,
            offset,
            header,
            shape,
            count,
        })
    }

    /// Whether the values are `T`s as this machine holds them, in C order, aligned for `T`.
    fn is_plain<T: MapElement>(&self) -> bool {
        matches!(self.header.dtype(), DType::Plain(t)
            if t.type_char() == T::KIND
                && t.size_field() == std::mem::size_of::<T>() as u64
                && (t.endianness() == npyz::Endianness::Little || std::mem::size_of::<T>() == 1))
            && cfg!(target_endian = "little")
            && self.header.order() == Order::C
            && self.offset.is_multiple_of(std::mem::align_of::<T>())
    }

    /// The file holds exactly the values its shape promises: a truncated file is an error
    /// naming it, not a crash when a batch reaches the end.
    fn check_length<T>(&self) -> anyhow::Result<()> {
        let expected = self
            .count
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(self.offset));
        if expected != Some(self.map.len()) {
            return Err(BadInput(format!(
                "{}: {} bytes, but its shape {:?} needs {} (truncated or damaged)",
                self.path.display(),
                self.map.len(),
                self.shape,
                expected.map_or("more".to_string(), |e| e.to_string())
            ))
            .into());
        }
        Ok(())
    }
}

/// A value type a mapped array can hold, with its numpy kind.
pub trait MapElement: bytemuck::Pod {
    const KIND: TypeChar;
}

impl MapElement for u8 {
    const KIND: TypeChar = TypeChar::Uint;
}
impl MapElement for u32 {
    const KIND: TypeChar = TypeChar::Uint;
}
impl MapElement for i32 {
    const KIND: TypeChar = TypeChar::Int;
}
impl MapElement for i64 {
    const KIND: TypeChar = TypeChar::Int;
}
impl MapElement for f32 {
    const KIND: TypeChar = TypeChar::Float;
}

/// A `.npy` of `T`s in the layout xtal writes (little-endian, C order), read in place.
#[derive(Debug)]
pub struct MappedArray<T> {
    map: Mmap,
    offset: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T: MapElement> MappedArray<T> {
    /// Opens `path`, which must hold `T`s shaped `(N, tail…)`; returns N too.
    pub fn open(path: &Path, tail: &[usize]) -> anyhow::Result<(Self, usize)> {
        let npy = MappedNpy::open(path)?;
        let bad = |m: String| BadInput(format!("{}: {m}", path.display()));
        if !npy.is_plain::<T>() {
            return Err(bad(format!(
                "holds {}, expected little-endian {} in C order as `xtal prepare` writes it",
                npy.header.dtype().descr(),
                std::any::type_name::<T>()
            ))
            .into());
        }
        if npy.shape.len() != tail.len() + 1 || npy.shape[1..] != *tail {
            return Err(bad(format!(
                "shape {:?}, expected (N{})",
                npy.shape,
                tail.iter().map(|d| format!(", {d}")).collect::<String>()
            ))
            .into());
        }
        npy.check_length::<T>()?;
        Ok((
            Self {
                map: npy.map,
                offset: npy.offset,
                _element: std::marker::PhantomData,
            },
            npy.shape[0],
        ))
    }

    /// Every value, row-major.
    pub fn values(&self) -> &[T] {
        // Aligned: the map starts on a page and `open` checked the offset.
        bytemuck::cast_slice(&self.map[self.offset..])
    }

    /// Drops this process's mapping of the pages read so far (see [`NpyTensors::release`]).
    pub fn release(&self) {
        #[cfg(unix)]
        {
            // SAFETY: as for `NpyTensors::release`: a read-only map of an unchanged file.
            let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
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
