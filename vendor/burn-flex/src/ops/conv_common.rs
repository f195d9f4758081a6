//! Shared macros and helpers for forward and transposed convolution.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape, bf16};

use crate::{FlexTensor, Layout};

// ============================================================================
// Macros for dtype wrappers
// ============================================================================

/// Generates a convNd function that delegates to a conv3d function via expand/squeeze.
macro_rules! conv_nd_via_3d {
    ($fn_name:ident, $conv3d_fn:ident, $expand_fn:ident, $squeeze_fn:ident, $dim:literal, $Options:ident) => {
        pub fn $fn_name(
            x: FlexTensor,
            weight: FlexTensor,
            bias: Option<FlexTensor>,
            options: &$Options<$dim>,
        ) -> FlexTensor {
            let (x_3d, weight_3d, options_3d) = $expand_fn(&x, &weight, options);
            let result_3d = $conv3d_fn(x_3d, weight_3d, bias, &options_3d);
            $squeeze_fn(result_3d)
        }
    };
}

/// Generates a bf16 function that converts to f32, calls the f32 variant, converts back.
macro_rules! bf16_via_f32 {
    ($bf16_fn:ident, $f32_fn:ident, $dim:literal, $Options:ident) => {
        pub fn $bf16_fn(
            x: FlexTensor,
            weight: FlexTensor,
            bias: Option<FlexTensor>,
            options: &$Options<$dim>,
        ) -> FlexTensor {
            let x_f32 = $crate::ops::conv_common::convert_bf16_to_f32(&x);
            let weight_f32 = $crate::ops::conv_common::convert_bf16_to_f32(&weight);
            let bias_f32 = bias.map(|b| $crate::ops::conv_common::convert_bf16_to_f32(&b));
            let result_f32 = $f32_fn(x_f32, weight_f32, bias_f32, options);
            $crate::ops::conv_common::convert_f32_to_bf16(&result_f32)
        }
    };
}

// ============================================================================
// Squeeze helpers (used by both conv and conv_transpose 1d/2d paths)
// ============================================================================

pub(crate) fn squeeze_3d_to_1d(tensor: FlexTensor) -> FlexTensor {
    let shape = tensor.layout().shape();
    tensor.reshape(Shape::from(alloc::vec![shape[0], shape[1], shape[4]]))
}

pub(crate) fn squeeze_3d_to_2d(tensor: FlexTensor) -> FlexTensor {
    let shape = tensor.layout().shape();
    tensor.reshape(Shape::from(alloc::vec![
        shape[0], shape[1], shape[3], shape[4]
    ]))
}

// ============================================================================
// bf16 conversion helpers
// ============================================================================

pub(crate) fn convert_bf16_to_f32(tensor: &FlexTensor) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let data: &[bf16] = tensor.storage();
    let f32_data: Vec<f32> = data.iter().map(|x| x.to_f32()).collect();
    FlexTensor::new(
        Bytes::from_elems(f32_data),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::F32,
    )
}

pub(crate) fn convert_f32_to_bf16(tensor: &FlexTensor) -> FlexTensor {
    let data: &[f32] = tensor.storage();
    let bf16_data: Vec<bf16> = data.iter().map(|x| bf16::from_f32(*x)).collect();
    FlexTensor::new(
        Bytes::from_elems(bf16_data),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::BF16,
    )
}

// ============================================================================
// Bias addition
// ============================================================================

#[allow(clippy::needless_range_loop)]
pub(crate) fn add_bias<T: Copy>(
    output: &mut [T],
    bias: &[T],
    batch: usize,
    channels: usize,
    spatial: usize,
    add_fn: impl Fn(T, T) -> T,
) {
    for b in 0..batch {
        for c in 0..channels {
            let offset = b * channels * spatial + c * spatial;
            let bias_val = bias[c];
            for i in 0..spatial {
                output[offset + i] = add_fn(output[offset + i], bias_val);
            }
        }
    }
}

// ============================================================================
// Column matrix (im2col / col2im) geometry
// ============================================================================

/// The geometry of a convolution's column matrix (im2col): for each input channel, one row
/// per kernel tap and one column per output position, holding the input value that tap reads
/// there (zero in the padding). The forward convolution and its weight gradient gather it
/// from the input; the transposed convolution (the input gradient) scatters it back (col2im).
pub(crate) struct ColumnGeometry {
    /// Spatial dims of the convolution's output (the transposed convolution's input).
    pub positions: [usize; 3],
    /// Spatial dims of the convolution's input (the transposed convolution's output).
    pub image: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
}

/// Along one axis: the output positions `i < len` whose input coordinate
/// `i·stride + offset − pad` lies in `0..image`, and the first such coordinate.
fn landing_range(
    len: usize,
    image: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (core::ops::Range<usize>, usize) {
    // First i with i·stride + offset ≥ pad.
    let first = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // First i with i·stride + offset ≥ pad + image (out of range from there on).
    let end = if offset >= pad + image {
        0
    } else {
        (pad + image - offset).div_ceil(stride)
    }
    .min(len);
    if first >= end {
        return (0..0, 0);
    }
    (first..end, first * stride + offset - pad)
}

impl ColumnGeometry {
    /// Output positions per row of the column matrix.
    pub fn position_count(&self) -> usize {
        self.positions.iter().product()
    }

    /// Kernel taps per input channel.
    pub fn tap_count(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Each kernel tap's landing ranges along depth, height and width (see `landing_range`).
    #[inline]
    fn for_each_tap(&self, mut f: impl FnMut(usize, [(core::ops::Range<usize>, usize); 3])) {
        let axis = |a: usize, k: usize| {
            landing_range(
                self.positions[a],
                self.image[a],
                self.stride[a],
                k * self.dilation[a],
                self.padding[a],
            )
        };
        let mut tap = 0;
        for kd in 0..self.kernel[0] {
            let d = axis(0, kd);
            for kh in 0..self.kernel[1] {
                let h = axis(1, kh);
                for kw in 0..self.kernel[2] {
                    f(tap, [d.clone(), h.clone(), axis(2, kw)]);
                    tap += 1;
                }
            }
        }
    }

    /// Adds one channel's rows of the column matrix (`[taps, positions]`) into its image plane
    /// (col2im). Same additions in the same order as a per-element scatter; the innermost run
    /// is a contiguous slice when the stride along width is 1.
    #[inline]
    pub fn scatter_channel<T: Copy>(
        &self,
        image: &mut [T],
        columns: &[T],
        add_fn: impl Fn(T, T) -> T,
    ) {
        let [pos_h, pos_w] = [self.positions[1], self.positions[2]];
        let [img_h, img_w] = [self.image[1], self.image[2]];
        let count = self.position_count();
        self.for_each_tap(|tap, [(ds, d0), (hs, h0), (ws, w0)]| {
            let col = &columns[tap * count..(tap + 1) * count];
            if ws.is_empty() {
                return;
            }
            for (step_d, pd) in ds.clone().enumerate() {
                let id = d0 + step_d * self.stride[0];
                for (step_h, ph) in hs.clone().enumerate() {
                    let ih = h0 + step_h * self.stride[1];
                    let src = &col[(pd * pos_h + ph) * pos_w..][ws.clone()];
                    let row = &mut image[(id * img_h + ih) * img_w..(id * img_h + ih + 1) * img_w];
                    if self.stride[2] == 1 {
                        let dst = &mut row[w0..w0 + src.len()];
                        for (o, &v) in dst.iter_mut().zip(src) {
                            *o = add_fn(*o, v);
                        }
                    } else {
                        for (o, &v) in row[w0..].iter_mut().step_by(self.stride[2]).zip(src) {
                            *o = add_fn(*o, v);
                        }
                    }
                }
            }
        });
    }

    /// Writes one channel's rows of the column matrix from its image plane (im2col), for the
    /// output rows `rows` (flattened depth × height indices; each row is `positions[2]`
    /// positions wide): `columns` is `[taps, rows.len() · positions[2]]`. Positions whose tap
    /// falls in the padding get `zero`; every entry is written, so `columns` can be scratch.
    #[inline]
    pub fn gather_channel<T: Copy>(
        &self,
        columns: &mut [T],
        image: &[T],
        zero: T,
        rows: core::ops::Range<usize>,
    ) {
        let [pos_h, pos_w] = [self.positions[1], self.positions[2]];
        let [img_h, img_w] = [self.image[1], self.image[2]];
        let count = rows.len() * pos_w;
        self.for_each_tap(|tap, [(ds, d0), (hs, h0), (ws, w0)]| {
            let col = &mut columns[tap * count..(tap + 1) * count];
            for (r, row) in rows.clone().zip(col.chunks_exact_mut(pos_w)) {
                let (pd, ph) = (r / pos_h, r % pos_h);
                if !ds.contains(&pd) || !hs.contains(&ph) || ws.is_empty() {
                    row.fill(zero);
                    continue;
                }
                let id = d0 + (pd - ds.start) * self.stride[0];
                let ih = h0 + (ph - hs.start) * self.stride[1];
                let src = &image[(id * img_h + ih) * img_w..(id * img_h + ih + 1) * img_w];
                row[..ws.start].fill(zero);
                row[ws.end..].fill(zero);
                let dst = &mut row[ws.clone()];
                if self.stride[2] == 1 {
                    dst.copy_from_slice(&src[w0..w0 + dst.len()]);
                } else {
                    for (o, &v) in dst.iter_mut().zip(src[w0..].iter().step_by(self.stride[2])) {
                        *o = v;
                    }
                }
            }
        });
    }
}
