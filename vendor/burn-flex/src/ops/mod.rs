//! Backend operations implementations.

use alloc::borrow::Cow;
use burn_backend::DType;
use burn_std::{bf16, f16};

use crate::FlexTensor;

/// The `DType` that matches `isize` on the current platform.
#[cfg(target_pointer_width = "64")]
pub(crate) const INDEX_DTYPE: DType = DType::I64;
/// The `DType` that matches `isize` on the current platform.
#[cfg(target_pointer_width = "32")]
pub(crate) const INDEX_DTYPE: DType = DType::I32;

/// Minimum total element count for rayon fan-out on per-row or per-chunk loops.
/// Below this, task-dispatch overhead dominates the per-unit work.
#[cfg(feature = "rayon")]
pub(crate) const PARALLEL_THRESHOLD: usize = 256 * 1024;

/// Element count from which an element-wise loop is split across rayon's threads (xtal patch).
/// A chunk of 32K elements is tens of microseconds of work, far above rayon's dispatch cost
/// (PyTorch splits element-wise loops at the same grain).
#[cfg(feature = "rayon")]
pub(crate) const ELEMENTWISE_GRAIN: usize = 32 * 1024;

/// Runs `body` compiled for the widest vector instructions this CPU has (xtal patch).
///
/// The crate is built for the target's baseline (SSE2 on x86-64), so loops LLVM vectorises run
/// four lanes wide even on AVX-512 machines. macerator's dispatch calls `body` inlined into a
/// copy compiled with AVX2 or AVX-512 (chosen at run time; the binary still runs on any x86-64),
/// so the element-wise loops below are as wide as the hardware. Results are unchanged: these
/// loops are element-wise, and LLVM neither reassociates nor fuses floating-point operations.
#[inline(always)]
pub(crate) fn wide<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(feature = "simd")]
    {
        // `S` is used by the macro: it instantiates `dispatch` once per instruction set.
        #[allow(clippy::extra_unused_type_parameters)]
        #[macerator::with_simd]
        fn dispatch<S: macerator::Simd, R, F: FnOnce() -> R>(body: F) -> R {
            body()
        }
        dispatch(body)
    }
    #[cfg(not(feature = "simd"))]
    body()
}

/// Runs `f` over `data` in chunks, on rayon's threads when there is enough work (xtal patch).
/// Element-wise loops were single-threaded while matmul used every core.
#[inline]
pub(crate) fn chunked_mut<E: Send>(data: &mut [E], f: impl Fn(&mut [E]) + Sync) {
    #[cfg(feature = "rayon")]
    if data.len() >= 2 * ELEMENTWISE_GRAIN {
        use rayon::prelude::*;
        data.par_chunks_mut(ELEMENTWISE_GRAIN).for_each(|chunk| {
            wide(
                #[inline(always)]
                || f(chunk),
            )
        });
        return;
    }
    wide(
        #[inline(always)]
        || f(data),
    )
}

/// Runs `f` over matching chunks of `data` and `other` (same length), on rayon's threads when
/// there is enough work (xtal patch).
#[inline]
pub(crate) fn chunked_zip_mut<E: Send, R: Sync>(
    data: &mut [E],
    other: &[R],
    f: impl Fn(&mut [E], &[R]) + Sync,
) {
    debug_assert_eq!(data.len(), other.len());
    #[cfg(feature = "rayon")]
    if data.len() >= 2 * ELEMENTWISE_GRAIN {
        use rayon::prelude::*;
        data.par_chunks_mut(ELEMENTWISE_GRAIN)
            .zip(other.par_chunks(ELEMENTWISE_GRAIN))
            .for_each(|(d, o)| {
                wide(
                    #[inline(always)]
                    || f(d, o),
                )
            });
        return;
    }
    wide(
        #[inline(always)]
        || f(data, other),
    )
}

/// Maps `src` element-wise into a new vector, on rayon's threads when there is enough work
/// (xtal patch). The output is written once, never zero-filled first.
#[inline]
pub(crate) fn chunked_map<E: Copy + Sync, R: Send + Copy>(
    src: &[E],
    f: impl Fn(E) -> R + Sync,
) -> alloc::vec::Vec<R> {
    let n = src.len();
    let mut out = alloc::vec::Vec::with_capacity(n);
    chunked_zip_mut(
        &mut out.spare_capacity_mut()[..n],
        src,
        #[inline(always)]
        |o, s| {
            for (o, &s) in o.iter_mut().zip(s) {
                o.write(f(s));
            }
        },
    );
    // SAFETY: the loop above wrote each of the first `n` elements.
    unsafe { out.set_len(n) };
    out
}

/// Maps matching elements of `a` and `b` (same length) into a new vector, on rayon's threads
/// when there is enough work (xtal patch). The output is written once, never zero-filled first.
#[inline]
pub(crate) fn chunked_map2<A: Copy + Sync, B: Copy + Sync, R: Send + Copy>(
    a: &[A],
    b: &[B],
    f: impl Fn(A, B) -> R + Sync,
) -> alloc::vec::Vec<R> {
    assert_eq!(a.len(), b.len(), "chunked_map2: lengths differ");
    let n = a.len();
    let mut out = alloc::vec::Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    #[cfg(feature = "rayon")]
    if n >= 2 * ELEMENTWISE_GRAIN {
        use rayon::prelude::*;
        dst.par_chunks_mut(ELEMENTWISE_GRAIN)
            .zip(a.par_chunks(ELEMENTWISE_GRAIN))
            .zip(b.par_chunks(ELEMENTWISE_GRAIN))
            .for_each(|((o, a), b)| {
                wide(
                    #[inline(always)]
                    || map2_into(o, a, b, &f),
                )
            });
    } else {
        wide(
            #[inline(always)]
            || map2_into(dst, a, b, &f),
        );
    }
    #[cfg(not(feature = "rayon"))]
    wide(
        #[inline(always)]
        || map2_into(dst, a, b, &f),
    );
    // SAFETY: the loops above wrote each of the first `n` elements.
    unsafe { out.set_len(n) };
    out
}

/// The loop of [`chunked_map2`]. Every function between `wide`'s dispatch and the element
/// operation is forced inline (xtal patch): LLVM inlines bottom-up, so a shim left to its cost
/// model grows by the whole operation (GELU's derivative) and then stays out of line, scalar and
/// compiled for the baseline.
#[inline(always)]
fn map2_into<A: Copy, B: Copy, R>(
    o: &mut [core::mem::MaybeUninit<R>],
    a: &[A],
    b: &[B],
    f: &impl Fn(A, B) -> R,
) {
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        // `(*f)` calls the operation itself, not the `&F` forwarding shim.
        o.write((*f)(a, b));
    }
}

/// Wrapper for raw mutable pointers that can be sent across rayon threads.
///
/// # Safety
///
/// The caller must ensure:
/// - The pointer remains valid for the lifetime of all uses
/// - No two threads write to the same offset
/// - No references to the underlying data exist during writes
#[cfg(feature = "rayon")]
pub(crate) struct SendMutPtr<T>(*mut T);

#[cfg(feature = "rayon")]
unsafe impl<T> Send for SendMutPtr<T> {}
#[cfg(feature = "rayon")]
unsafe impl<T> Sync for SendMutPtr<T> {}

#[cfg(feature = "rayon")]
impl<T> SendMutPtr<T> {
    pub(crate) fn new(ptr: *mut T) -> Self {
        Self(ptr)
    }

    /// Write `val` at the given element offset.
    ///
    /// # Safety
    /// Offset must be in bounds and no other thread may write to the same offset.
    pub(crate) unsafe fn write(&self, offset: usize, val: T) {
        unsafe { self.0.add(offset).write(val) }
    }

    /// Returns the raw pointer offset by `offset` elements.
    ///
    /// # Safety
    /// Offset must be in bounds.
    pub(crate) unsafe fn ptr_add(&self, offset: usize) -> *mut T {
        unsafe { self.0.add(offset) }
    }
}

/// Read a float tensor's storage as f32 values, regardless of source dtype.
/// Returns a borrowed slice for F32 (zero-copy) and an owned Vec for other
/// float dtypes (F64, F16, BF16).
///
/// Returns elements in underlying buffer order. Callers needing logical
/// iteration order must call `to_contiguous()` first.
///
/// # Panics
/// Panics if the tensor's dtype is not one of F32, F64, F16, or BF16.
pub(crate) fn float_storage_as_f32(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.dtype() {
        DType::F32 => Cow::Borrowed(tensor.storage::<f32>()),
        DType::F64 => Cow::Owned(tensor.storage::<f64>().iter().map(|&x| x as f32).collect()),
        DType::F16 => Cow::Owned(
            tensor
                .storage::<f16>()
                .iter()
                .map(|x| f32::from(*x))
                .collect(),
        ),
        DType::BF16 => Cow::Owned(
            tensor
                .storage::<bf16>()
                .iter()
                .map(|x| f32::from(*x))
                .collect(),
        ),
        other => panic!("float_storage_as_f32: unsupported dtype {:?}", other),
    }
}

pub mod activation;
pub mod attention;
pub mod binary;
mod bool;
pub mod cat;
pub mod comparison;
#[macro_use]
mod conv_common;
mod conv_gemm;
pub mod conv;
pub mod conv_transpose;
pub mod cumulative;
pub mod deform_conv;
pub mod expand;
pub mod fast_math;
pub mod fft;
pub mod flip;
mod float;
pub mod gather_scatter;
pub mod grid_sample;
mod int;
pub mod interpolate;
pub mod mask;
pub mod matmul;
mod module;
pub mod pool;
mod qtensor;
pub mod reduce;
pub mod repeat_dim;
pub mod slice;
pub mod sort;
mod transaction;
pub mod unary;
pub mod unfold;

/// xtal patch: the chunked loops visit every element exactly once, above and below the grain.
#[cfg(test)]
mod chunked_tests {
    use alloc::vec::Vec;

    #[test]
    fn chunked_loops_visit_every_element_once() {
        for n in [0usize, 1, 1000, 200_003] {
            let mut ones = alloc::vec![0u32; n];
            super::chunked_mut(&mut ones, |chunk| chunk.iter_mut().for_each(|x| *x += 1));
            assert!(ones.iter().all(|&x| x == 1));

            let index: Vec<u32> = (0..n as u32).collect();
            super::chunked_zip_mut(&mut ones, &index, |d, o| {
                d.iter_mut().zip(o).for_each(|(d, &o)| *d += o)
            });
            assert!(ones.iter().enumerate().all(|(i, &x)| x == i as u32 + 1));

            let doubled = super::chunked_map(&index, |x| 2 * x);
            assert_eq!(doubled, index.iter().map(|x| 2 * x).collect::<Vec<_>>());

            let sums = super::chunked_map2(&index, &doubled, |a, b| a + b);
            assert_eq!(sums, index.iter().map(|x| 3 * x).collect::<Vec<_>>());
        }
    }
}
