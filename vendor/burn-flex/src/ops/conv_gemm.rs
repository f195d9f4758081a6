//! Convolution (groups = 1) and its weight gradient as one GEMM per batch item over an NCHW
//! column matrix (xtal patch).
//!
//! For batch item `b`, the column matrix `C_b` (`[c_in·taps, positions]`, see
//! `ColumnGeometry`) holds, for every input channel and kernel tap, the input value that tap
//! reads at each output position. Then
//!
//! - forward: `out[b]` (`[c_out, positions]`) = `W` (`[c_out, c_in·taps]`) × `C_b`, written
//!   straight into the NCHW output;
//! - weight gradient: `dW` = Σ_b `grad[b]` (`[c_out, positions]`) × `C_bᵀ`.
//!
//! Both read and write NCHW directly: no channels-last copy of the input, no transposed write
//! back, and the weight gradient is not computed as a convolution whose "kernel" is the whole
//! output gradient (burn's default, which builds a `[9, batch·positions]` column tile per input
//! channel for a 3×3 kernel). The forward pass takes this path while one item's column matrix
//! stays small (`COLUMNS_LIMIT`; larger convolutions keep the tiled channels-last path); the
//! weight gradient takes it always, in blocks of output rows when an item's matrix is large,
//! and per group for grouped convolutions.

use alloc::vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use super::conv_common::{ColumnGeometry, add_bias};
use crate::{FlexTensor, Layout};

/// Largest column matrix (elements) for one batch item: 4M (16 MB in f32), allocated once
/// per worker thread.
const COLUMNS_LIMIT: usize = 4 << 20;

/// Batch items whose weight-gradient contributions one partial sum collects. Partial sums are
/// added in a fixed order, so results do not depend on the number of threads.
const ITEMS_PER_PARTIAL: usize = 4;

/// Element types the column path runs (those `gemm` multiplies natively).
pub(crate) trait ColumnElement:
    bytemuck::Pod + burn_backend::Element + Send + Sync + core::ops::Add<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const DTYPE: DType;
}

impl ColumnElement for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F32;
}

impl ColumnElement for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F64;
}

/// The column geometry of a 3-D convolution with these input and output spatial dims.
fn geometry(
    image: [usize; 3],
    positions: [usize; 3],
    kernel: [usize; 3],
    options: &ConvOptions<3>,
) -> ColumnGeometry {
    ColumnGeometry {
        positions,
        image,
        kernel,
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    }
}

/// Output spatial dims of a 3-D convolution over `image` with this kernel.
fn output_positions(image: &[usize], kernel: &[usize], options: &ConvOptions<3>) -> [usize; 3] {
    core::array::from_fn(|a| {
        burn_backend::ops::conv::calculate_conv_output_size(
            kernel[a],
            options.stride[a],
            options.padding[a],
            options.dilation[a],
            image[a],
        )
    })
}

/// Whether the forward column path takes this convolution (`x` `[b, c_in, d, h, w]`, weight
/// `[c_out, c_in, kd, kh, kw]`): groups = 1 and one item's column matrix
/// (`c_in · taps × positions`) within `COLUMNS_LIMIT`.
pub(crate) fn takes_forward(
    x_shape: &[usize],
    w_shape: &[usize],
    options: &ConvOptions<3>,
) -> bool {
    let positions: usize = output_positions(&x_shape[2..], &w_shape[2..], options)
        .iter()
        .product();
    let taps: usize = w_shape[2..].iter().product();
    options.groups == 1
        && x_shape[1]
            .checked_mul(taps)
            .and_then(|k| k.checked_mul(positions))
            .is_some_and(|len| len > 0 && len <= COLUMNS_LIMIT)
}

/// Fills the column matrix of one batch item (`x_item`: `[c_in, image…]`) for the output
/// rows `rows`: `columns` is `[c_in · taps, rows.len() · positions[2]]`.
fn gather_item<T: ColumnElement>(
    geometry: &ColumnGeometry,
    x_item: &[T],
    columns: &mut [T],
    rows: core::ops::Range<usize>,
) {
    let image: usize = geometry.image.iter().product();
    let channel_len = geometry.tap_count() * rows.len() * geometry.positions[2];
    for (channel, channel_columns) in columns.chunks_exact_mut(channel_len).enumerate() {
        geometry.gather_channel(
            channel_columns,
            &x_item[channel * image..(channel + 1) * image],
            T::ZERO,
            rows.clone(),
        );
    }
}

/// A matrix operand of `gemm_into`: its first element and its row and column strides.
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    row_stride: isize,
    col_stride: isize,
}

/// A row-major `[rows, cols]` matrix starting at `data[offset]` with row stride `row_stride`.
fn rows_of<T>(data: &[T], offset: usize, row_stride: usize) -> Operand<T> {
    Operand {
        ptr: data[offset..].as_ptr(),
        row_stride: row_stride as isize,
        col_stride: 1,
    }
}

/// `dst (+)= lhs × rhs` for `[m, k] × [k, n]` into `dst`, row-major `[m, n]` with row stride
/// `dst_row_stride` (from `dst[0]`); adds to `dst` when `accumulate`.
///
/// # Safety
/// Every operand's strides must stay inside the slice it was made from.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: ColumnElement>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Operand<T>,
    rhs: Operand<T>,
    [m, k, n]: [usize; 3],
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    debug_assert!(m == 0 || dst.len() >= (m - 1) * dst_row_stride + n);
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Forward convolution, `x` `[b, c_in, d, h, w]`, `weight` `[c_out, c_in, kd, kh, kw]`.
/// Callers check `takes_forward` first.
pub(crate) fn conv3d_columns<T: ColumnElement>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<3>,
) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let xs = x.layout().shape().to_vec();
    let ws = weight.layout().shape().to_vec();
    let (batch, channels_in, channels_out) = (xs[0], xs[1], ws[0]);
    let image = [xs[2], xs[3], xs[4]];
    let kernel = [ws[2], ws[3], ws[4]];
    let positions = output_positions(&image, &kernel, options);
    let geometry = geometry(image, positions, kernel, options);
    let count = geometry.position_count();
    let k = channels_in * geometry.tap_count();
    let image_len: usize = channels_in * image.iter().product::<usize>();
    let x_data: &[T] = x.storage();
    let w_data: &[T] = weight.storage();
    let mut output = vec![T::ZERO; batch * channels_out * count];

    // One item: gather its columns, then out_item = W × columns.
    let all_rows = 0..positions[0] * positions[1];
    let item = |b: usize, out_item: &mut [T], columns: &mut [T], parallelism| {
        let x_item = &x_data[b * image_len..(b + 1) * image_len];
        gather_item(&geometry, x_item, columns, all_rows.clone());
        // SAFETY: `w_data` is `[c_out, k]`, `columns` `[k, count]` and `out_item`
        // `[c_out, count]`, all row-major.
        unsafe {
            gemm_into(
                out_item,
                count,
                rows_of(w_data, 0, k),
                rows_of(columns, 0, count),
                [channels_out, k, count],
                false,
                parallelism,
            )
        };
    };
    let item_len = channels_out * count;
    run_items(&mut output, item_len, batch, k * count, item);

    if let Some(bias) = bias {
        let bias = bias.to_contiguous();
        assert_eq!(
            bias.layout().num_elements(),
            channels_out,
            "conv: bias length must equal channels_out ({channels_out})"
        );
        add_bias(
            &mut output,
            bias.storage::<T>(),
            batch,
            channels_out,
            count,
            |a, b| a + b,
        );
    }
    FlexTensor::new(
        Bytes::from_elems(output),
        Layout::contiguous(Shape::from(vec![
            batch,
            channels_out,
            positions[0],
            positions[1],
            positions[2],
        ])),
        T::DTYPE,
    )
}

/// Runs `item(b, out_item, columns, parallelism)` for every batch item, each writing its own
/// `item_len` slice of `output`, with one reusable column buffer of `columns_len` per worker.
/// Items run in parallel when there are at least as many as threads; otherwise one after
/// another, each GEMM using every thread.
fn run_items<T: ColumnElement>(
    output: &mut [T],
    item_len: usize,
    batch: usize,
    columns_len: usize,
    item: impl Fn(usize, &mut [T], &mut [T], gemm::Parallelism) + Sync,
) {
    if item_len == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        if batch >= rayon::current_num_threads() {
            output.par_chunks_mut(item_len).enumerate().for_each_init(
                || vec![T::ZERO; columns_len],
                |columns, (b, out_item)| item(b, out_item, columns, gemm::Parallelism::None),
            );
            return;
        }
    }
    #[cfg(feature = "rayon")]
    let parallelism = gemm::Parallelism::Rayon(0);
    #[cfg(not(feature = "rayon"))]
    let parallelism = gemm::Parallelism::None;
    let mut columns = vec![T::ZERO; columns_len];
    for (b, out_item) in output.chunks_mut(item_len).enumerate().take(batch) {
        item(b, out_item, &mut columns, parallelism);
    }
}

/// Weight gradient of a convolution: `x` `[b, c_in, d, h, w]`, `output_grad`
/// `[b, c_out, pd, ph, pw]`, result `[c_out, c_in / groups, kd, kh, kw]` (`kernel`), for any
/// size (an item's column matrix is built in blocks of output rows within `COLUMNS_LIMIT`).
pub(crate) fn conv3d_weight_backward_columns<T: ColumnElement>(
    x: FlexTensor,
    output_grad: FlexTensor,
    kernel: [usize; 3],
    options: &ConvOptions<3>,
) -> FlexTensor {
    let x = x.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let xs = x.layout().shape().to_vec();
    let gs = output_grad.layout().shape().to_vec();
    let (batch, channels_in, channels_out, groups) = (xs[0], xs[1], gs[1], options.groups);
    let (in_per_group, out_per_group) = (channels_in / groups, channels_out / groups);
    let image = [xs[2], xs[3], xs[4]];
    let positions = [gs[2], gs[3], gs[4]];
    let geometry = geometry(image, positions, kernel, options);
    let count = geometry.position_count();
    let taps = geometry.tap_count();
    // The gradient of one group's weights, `[out_per_group, k_group]`, row-major.
    let k_group = in_per_group * taps;
    let grad_len = channels_out * k_group;
    let weight_shape = Shape::from(vec![
        channels_out,
        in_per_group,
        kernel[0],
        kernel[1],
        kernel[2],
    ]);
    if batch == 0 || count == 0 || grad_len == 0 {
        return FlexTensor::new(
            Bytes::from_elems(vec![T::ZERO; grad_len]),
            Layout::contiguous(weight_shape),
            T::DTYPE,
        );
    }
    let image_len: usize = channels_in * image.iter().product::<usize>();
    let item_grad_len = channels_out * count;
    let x_data: &[T] = x.storage();
    let g_data: &[T] = output_grad.storage();

    // Output rows (depth × height) per block, so that a block's column matrix stays within
    // COLUMNS_LIMIT (at least one row).
    let row_len = channels_in * taps * positions[2];
    let row_count = positions[0] * positions[1];
    let rows_per_block = (COLUMNS_LIMIT / row_len.max(1)).clamp(1, row_count);
    let columns_len = row_len * rows_per_block;

    // One partial sum per ITEMS_PER_PARTIAL consecutive items: Σ grad[b] × C_bᵀ, per group.
    let partial_count = batch.div_ceil(ITEMS_PER_PARTIAL);
    let mut partials = vec![T::ZERO; partial_count * grad_len];
    let partial = |p: usize, sum: &mut [T], columns: &mut [T], parallelism| {
        let mut first = true;
        for b in p * ITEMS_PER_PARTIAL..((p + 1) * ITEMS_PER_PARTIAL).min(batch) {
            let x_item = &x_data[b * image_len..(b + 1) * image_len];
            let g_item = &g_data[b * item_grad_len..(b + 1) * item_grad_len];
            for block_start in (0..row_count).step_by(rows_per_block) {
                let rows = block_start..(block_start + rows_per_block).min(row_count);
                let block = rows.len() * positions[2];
                gather_item(
                    &geometry,
                    x_item,
                    &mut columns[..row_len * rows.len()],
                    rows,
                );
                for g in 0..groups {
                    // SAFETY: the group's output-gradient rows are `[out_per_group, block]`
                    // with row stride `count` from the block's first position; its column
                    // rows `[k_group, block]` row-major, read transposed (`[block, k_group]`:
                    // row stride 1, column stride `block`); `sum`'s rows for the group are
                    // `[out_per_group, k_group]` row-major.
                    let columns_t = Operand {
                        ptr: columns[g * k_group * block..].as_ptr(),
                        row_stride: 1,
                        col_stride: block as isize,
                    };
                    unsafe {
                        gemm_into(
                            &mut sum[g * out_per_group * k_group..],
                            k_group,
                            rows_of(
                                g_item,
                                g * out_per_group * count + block_start * positions[2],
                                count,
                            ),
                            columns_t,
                            [out_per_group, block, k_group],
                            !first,
                            parallelism,
                        )
                    };
                }
                first = false;
            }
        }
    };
    run_items(&mut partials, grad_len, partial_count, columns_len, partial);
    let (grad, rest) = partials.split_at_mut(grad_len);
    for other in rest.chunks_exact(grad_len) {
        for (a, &v) in grad.iter_mut().zip(other) {
            *a = *a + v;
        }
    }
    partials.truncate(grad_len);
    FlexTensor::new(
        Bytes::from_elems(partials),
        Layout::contiguous(weight_shape),
        T::DTYPE,
    )
}
