//! CPU kernels for training 2D convolutions on burn-flex's tensors (burn-flex 0.21.0 has none
//! as fast; see the crate's front page): the forward pass, the input gradient, the weight
//! gradient and the bias gradient, in `f32` and `f64`, all in NCHW without layout changes.
//!
//! The images of a batch are taken in chunks whose im2col matrices sit side by side, so that
//! every GEMM has at least 512 columns even on the 8×8 maps of the deep layers
//! (`col_g`: `[C/g·KH·KW, n·OH·OW]` for a chunk of `n` images, rows ordered as the weight's
//! `(c, kh, kw)`, so the weight is used as stored):
//!
//! - **Forward**: `out_g [O/g, n·OH·OW] = W_g [O/g, C/g·KH·KW] · col_g`, copied back to NCHW.
//! - **Input gradient**: `dcol_g = W_gᵀ · dY_g`, then col2im adds each image's block of `dcol_g`
//!   into its input gradient; on maps of at most 4 pixels, the forward pass of the transposed
//!   convolution instead (`input_grad_as_forward`).
//! - **Weight gradient**: `dW_g = Σ_chunks dY_g · col_gᵀ`, a real GEMM whose inner dimension is
//!   `n·OH·OW`, over one fixed slice of the batch per thread; the per-thread partial sums are then
//!   added in a fixed order (so a given thread count always gives the same bits).
//! - **Depthwise** (one input channel per group, any channel multiplier, stride and dilation):
//!   the whole-plane kernels of `depthwise_kernels`.
//! - **Pointwise** (1×1, stride 1, no padding, maps of 64 pixels or more): the per-image
//!   products of `pointwise_kernels`, straight on NCHW.
//! - **Direct** (`f32` on an AVX-512 CPU; ungrouped, multiples of 16 output channels, rows of
//!   7, 8, 14, 16 … output pixels): the forward pass at a row stride of 1 or 2 and the input
//!   gradient at stride 1 run `direct_kernels` (output channels in the vector lanes, read
//!   straight from a padded copy of each image), not im2col and gemm; the weight gradient of
//!   3-, 5- and 7-wide kernels on rows of a multiple of 8 output pixels runs
//!   `direct_weight_kernels` (output channels in the lanes, `dY` laid out pixel-major once).
//!
//! Chunks run in parallel (rayon), each with a single-threaded GEMM; a batch with fewer chunks
//! than threads runs them one after the other with a parallel GEMM instead.

use burn_backend::ops::ConvOptions;
use burn_backend::DType;
use burn_flex::FlexTensor;
use burn_std::{bf16, f16};

use crate::conv_geometry::{
    as_f32, flipped_weight, from_f32, thread_count, Conv2dGeometry, ConvFloat,
};
use crate::direct_kernels::{with_packed_weight, Packing};
use crate::flex_storage::{contiguous_as, image_blocks, tensor_from};
use crate::float_cast::{cast_from_f32, cast_to_f32};
use crate::gemm_product::{gemm, gemm_nt, sum_partials, MatRef};
use crate::parallel_chunks::vec_by_chunks;
use crate::pointwise_kernels::Images;
use crate::{
    depthwise_kernels, direct_kernels, direct_weight_kernels, pointwise_kernels, small_map_kernels,
};

/// Where one kernel tap's valid outputs of an im2col row sit when the convolution keeps the
/// row width at stride 1 (`3×3`, padding 1 and the like): output `j = oh · W + ow` reads input
/// `j + shift` of its channel plane for every valid `(oh, ow)`, so the valid outputs from the
/// first `start` to the last `end` (exclusive) are one contiguous copy of the plane — except the
/// columns outside the tap's valid range on each row, which wrap to the neighbouring row.
struct SameWidthTap {
    start: usize,
    end: usize,
    /// Input offset of output `start` in the channel plane (`start + shift`).
    source: usize,
}

impl SameWidthTap {
    /// The tap `(kh, kw)` of `geo` laid out as one block, or `None` when the convolution
    /// changes the row width or strides, or the tap has no valid output.
    fn of(geo: &Conv2dGeometry, kh: usize, kw: usize) -> Option<Self> {
        if geo.stride != [1, 1] || geo.in_w != geo.out_w {
            return None;
        }
        let ((oh_start, oh_end), (ow_start, ow_end)) = (geo.rows_for_tap(kh), geo.cols_for_tap(kw));
        if oh_start >= oh_end || ow_start >= ow_end {
            return None;
        }
        Some(Self {
            start: oh_start * geo.out_w + ow_start,
            end: (oh_end - 1) * geo.out_w + ow_end,
            source: geo.in_row(oh_start, kh) * geo.in_w + geo.in_col(ow_start, kw),
        })
    }

    /// Zeroes, on every valid row of `row` (one im2col row), the columns outside the tap's
    /// valid range: the positions that would wrap to the neighbouring input row.
    /// Column by column (a 3×3 tap has at most one such column), not row by row: on 8×8 maps
    /// two `fill` calls per row held 9 % of the FT loss's samples (docs/losses.md).
    fn zero_wrapped<T: ConvFloat>(geo: &Conv2dGeometry, (kh, kw): (usize, usize), row: &mut [T]) {
        let ((oh_start, oh_end), (ow_start, ow_end)) = (geo.rows_for_tap(kh), geo.cols_for_tap(kw));
        let valid_rows = &mut row[oh_start * geo.out_w..oh_end * geo.out_w];
        for column in (0..ow_start).chain(ow_end..geo.out_w) {
            let column_values = valid_rows[column..].iter_mut().step_by(geo.out_w);
            column_values.for_each(|value| *value = T::zero());
        }
    }
}

/// Fills one image's block of an im2col matrix from one group of that image (`x_group`:
/// `[C/g, H, W]`): row `r = (c, kh, kw)` of the block is `col[r · row_stride ..][.. OH·OW]`.
/// Padding reads as zero.
fn im2col<T: ConvFloat>(geo: &Conv2dGeometry, x_group: &[T], col: &mut [T], row_stride: usize) {
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    let mut row_index = 0;
    for channel in x_group.chunks_exact(in_plane).take(geo.in_per_group()) {
        for kh in 0..geo.k_h {
            let (oh_start, oh_end) = geo.rows_for_tap(kh);
            for kw in 0..geo.k_w {
                let (ow_start, ow_end) = geo.cols_for_tap(kw);
                let row = &mut col[row_index * row_stride..][..out_plane];
                row_index += 1;
                if let Some(tap) = SameWidthTap::of(geo, kh, kw) {
                    row[..tap.start].fill(T::zero());
                    row[tap.end..].fill(T::zero());
                    let len = tap.end - tap.start;
                    row[tap.start..tap.end].copy_from_slice(&channel[tap.source..][..len]);
                    SameWidthTap::zero_wrapped(geo, (kh, kw), row);
                    continue;
                }
                if ow_start >= ow_end {
                    row.fill(T::zero());
                    continue;
                }
                row[..oh_start * geo.out_w].fill(T::zero());
                row[oh_end * geo.out_w..].fill(T::zero());
                let first = geo.in_col(ow_start, kw);
                for oh in oh_start..oh_end {
                    let src = &channel[geo.in_row(oh, kh) * geo.in_w..][..geo.in_w];
                    let dst = &mut row[oh * geo.out_w..][..geo.out_w];
                    dst[..ow_start].fill(T::zero());
                    dst[ow_end..].fill(T::zero());
                    let dst = &mut dst[ow_start..ow_end];
                    if geo.stride[1] == 1 {
                        dst.copy_from_slice(&src[first..first + dst.len()]);
                    } else {
                        let src = src[first..].iter().step_by(geo.stride[1]);
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds one image's block of an im2col-shaped matrix (rows `col[r · row_stride ..][.. OH·OW]`)
/// back into one group of that image's input gradient (`dx_group`: `[C/g, H, W]`): the
/// adjoint of [`im2col`]. Overwrites the entries of `col` that fall on padding with zeros.
fn col2im_add<T: ConvFloat>(
    geo: &Conv2dGeometry,
    col: &mut [T],
    row_stride: usize,
    dx_group: &mut [T],
) {
    let in_plane = geo.in_plane();
    let mut row_index = 0;
    for channel in dx_group.chunks_exact_mut(in_plane).take(geo.in_per_group()) {
        for kh in 0..geo.k_h {
            let (oh_start, oh_end) = geo.rows_for_tap(kh);
            for kw in 0..geo.k_w {
                let (ow_start, ow_end) = geo.cols_for_tap(kw);
                let row = &mut col[row_index * row_stride..][..geo.out_plane()];
                row_index += 1;
                if let Some(tap) = SameWidthTap::of(geo, kh, kw) {
                    // Padding positions add zero, so the tap's block adds in one pass.
                    SameWidthTap::zero_wrapped(geo, (kh, kw), row);
                    let dst = &mut channel[tap.source..][..tap.end - tap.start];
                    scatter_add(dst, 1, &row[tap.start..tap.end], T::one());
                    continue;
                }
                if ow_start >= ow_end {
                    continue;
                }
                let first = geo.in_col(ow_start, kw);
                for oh in oh_start..oh_end {
                    let src = &row[oh * geo.out_w + ow_start..oh * geo.out_w + ow_end];
                    let dst = &mut channel[geo.in_row(oh, kh) * geo.in_w..][..geo.in_w];
                    scatter_add(&mut dst[first..], geo.stride[1], src, T::one());
                }
            }
        }
    }
}

/// Copies rows `[rows]` of each image's `[rows_total, plane]` matrix in `images`
/// (`[n, rows_total, plane]`) side by side into `dst` (`[rows, n · plane]`).
fn gather_rows<T: ConvFloat>(
    images: &[T],
    image_len: usize,
    rows: core::ops::Range<usize>,
    plane: usize,
    dst: &mut [T],
) {
    let n = images.len() / image_len;
    for (i, image) in images.chunks_exact(image_len).enumerate() {
        for (r, src) in image[rows.start * plane..rows.end * plane]
            .chunks_exact(plane)
            .enumerate()
        {
            dst[(r * n + i) * plane..][..plane].copy_from_slice(src);
        }
    }
}

/// Output channels `channels` of a chunk of images `dy_chunk` (`[n, O, OH, OW]`) as one matrix
/// `[channels, n · OH·OW]`: the chunk itself for one image (those rows are contiguous in
/// NCHW), else gathered into `scratch`.
fn group_rows<'a, T: ConvFloat>(
    dy_chunk: &'a [T],
    geo: &Conv2dGeometry,
    channels: core::ops::Range<usize>,
    scratch: &'a mut [T],
) -> &'a [T] {
    let plane = geo.out_plane();
    if dy_chunk.len() == geo.out_image() {
        return &dy_chunk[channels.start * plane..channels.end * plane];
    }
    gather_rows(dy_chunk, geo.out_image(), channels, plane, scratch);
    scratch
}

/// The adjoint of [`gather_rows`]: copies `src` (`[rows, n · plane]`) into rows `[rows]` of
/// each image's matrix in `images`.
fn scatter_rows<T: ConvFloat>(
    src: &[T],
    images: &mut [T],
    image_len: usize,
    rows: core::ops::Range<usize>,
    plane: usize,
) {
    let n = images.len() / image_len;
    for (i, image) in images.chunks_exact_mut(image_len).enumerate() {
        for (r, dst) in image[rows.start * plane..rows.end * plane]
            .chunks_exact_mut(plane)
            .enumerate()
        {
            dst.copy_from_slice(&src[(r * n + i) * plane..][..plane]);
        }
    }
}

/// `dst[i · stride] += scale · src[i]` for every `i` of `src`.
#[inline]
fn scatter_add<T: ConvFloat>(dst: &mut [T], stride: usize, src: &[T], scale: T) {
    if stride == 1 {
        for (d, &s) in dst[..src.len()].iter_mut().zip(src) {
            *d = *d + scale * s;
        }
    } else {
        for (d, &s) in dst.iter_mut().step_by(stride).zip(src) {
            *d = *d + scale * s;
        }
    }
}

/// Scratch space for one group of one chunk of images.
struct Scratch<'a, T> {
    /// An im2col matrix, `[C/g·KH·KW, n · OH·OW]`.
    col: &'a mut [T],
    /// An output-shaped matrix, `[O/g, n · OH·OW]`.
    rows: &'a mut [T],
}

std::thread_local! {
    /// Each thread's scratch memory, kept between convolutions (rayon's worker threads live as
    /// long as the process), so that the im2col buffers are not allocated, faulted in and
    /// zeroed on every call. Grows to the largest convolution the thread has run.
    static SCRATCH: core::cell::RefCell<Vec<u64>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Runs `work` with this thread's [`Scratch`] sized for `geo` (a fresh allocation where the
/// thread's memory is already in use further up the stack). The scratch
/// holds stale values: every kernel writes a region before it reads it.
fn with_scratch<T: ConvFloat, R>(
    geo: &Conv2dGeometry,
    work: impl FnOnce(Scratch<'_, T>) -> R,
) -> R {
    let columns = geo.images_per_chunk() * geo.out_plane();
    let col_len = geo.col_rows() * columns;
    let len = col_len + geo.out_per_group() * columns;
    let split = |buffer: &mut [T]| {
        let (col, rows) = buffer[..len].split_at_mut(col_len);
        work(Scratch { col, rows })
    };
    let words = (len * core::mem::size_of::<T>()).div_ceil(8);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < words {
                buffer.resize(words, 0);
            }
            split(bytemuck::cast_slice_mut(&mut buffer[..words]))
        }
        Err(_) => split(&mut vec![T::zero(); len]),
    })
}

/// The im2col matrix (`[C/g·KH·KW, n · OH·OW]`) of group `g` of the chunk of images
/// `x_chunk` (`[n, C, H, W]`), filled into `col`.
fn chunk_columns<'a, T: ConvFloat>(
    geo: &Conv2dGeometry,
    x_chunk: &[T],
    g: usize,
    col: &'a mut [T],
) -> &'a mut [T] {
    let n = x_chunk.len() / geo.in_image();
    let (columns, plane) = (n * geo.out_plane(), geo.out_plane());
    for (i, x_image) in x_chunk.chunks_exact(geo.in_image()).enumerate() {
        let x_group = &x_image[g * geo.in_per_group() * geo.in_plane()..];
        im2col(geo, x_group, &mut col[i * plane..], columns);
    }
    &mut col[..geo.col_rows() * columns]
}

/// 2D convolution, `out [B, O, OH, OW] = conv2d(x [B, C, H, W], w [O, C/g, KH, KW]) + bias [O]`.
pub(crate) fn conv2d_forward<T: ConvFloat>(
    geo: &Conv2dGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    if depthwise_kernels::applies(geo) {
        return depthwise_kernels::forward(geo, x, weight, bias);
    }
    if pointwise_kernels::applies(geo) {
        let x = Images::contiguous(x, geo.in_image());
        return pointwise_kernels::forward(geo, x, weight, bias);
    }
    if let Some(out) = direct_forward(geo, x, weight, bias) {
        return out;
    }
    let (m, k) = (geo.out_per_group(), geo.col_rows());
    let chunk = geo.images_per_chunk();
    vec_by_chunks(
        geo.batch * geo.out_image(),
        chunk * geo.out_image(),
        geo.chunks_in_parallel(),
        |index, out_chunk| {
            with_scratch::<T, _>(geo, |scratch| {
                let x_chunk = &x[index * chunk * geo.in_image()..]
                    [..out_chunk.len() / geo.out_image() * geo.in_image()];
                let n = x_chunk.len() / geo.in_image() * geo.out_plane();
                let parallelism = geo.gemm_parallelism(m, n, k);
                // One image: its group's output rows are one block of NCHW, written directly.
                let one_image = out_chunk.len() == geo.out_image();
                for g in 0..geo.groups {
                    let columns = chunk_columns(geo, x_chunk, g, scratch.col);
                    let w_group = &weight[g * m * k..][..m * k];
                    let product = match one_image {
                        true => &mut out_chunk[g * m * n..][..m * n],
                        false => &mut scratch.rows[..m * n],
                    };
                    gemm(
                        product,
                        (m, n, k),
                        MatRef::row_major(w_group, m, k),
                        MatRef::row_major(columns, k, n),
                        false,
                        parallelism,
                    );
                    if !one_image {
                        scatter_rows(
                            scratch.rows,
                            out_chunk,
                            geo.out_image(),
                            g * m..(g + 1) * m,
                            geo.out_plane(),
                        );
                    }
                }
                if let Some(bias) = bias {
                    for out_image in out_chunk.chunks_exact_mut(geo.out_image()) {
                        for (plane, &b) in out_image.chunks_exact_mut(geo.out_plane()).zip(bias) {
                            plane.iter_mut().for_each(|v| *v = *v + b);
                        }
                    }
                }
            })
        },
    )
}

/// A direct kernel's forward pass on a weight packed for it ([`with_packed_weight`]).
type PackedForward = fn(&Conv2dGeometry, &[f32], &[f32], Option<&[f32]>) -> Vec<f32>;

/// The direct kernel that computes the forward pass of `geo` on an AVX-512 CPU (an `f32` one):
/// tiles of one row ([`direct_kernels`]) or, on maps whose rows are too short for them, tiles
/// of eight images ([`small_map_kernels`]).
fn direct_kernel(geo: &Conv2dGeometry) -> Option<PackedForward> {
    if direct_kernels::applies(geo) {
        return Some(direct_kernels::forward_packed);
    }
    small_map_kernels::applies(geo).then_some(small_map_kernels::forward_packed as PackedForward)
}

/// The forward pass by [`direct_kernel`] where one applies (`f32`).
fn direct_forward<T: ConvFloat>(
    geo: &Conv2dGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Option<Vec<T>> {
    let (x, weight) = (as_f32(x)?, as_f32(weight)?);
    let bias = match bias {
        Some(bias) => Some(as_f32(bias)?),
        None => None,
    };
    let kernel = direct_kernel(geo)?;
    let out = with_packed_weight(geo, weight, Packing::Forward, |geo, packed| {
        kernel(geo, x, packed, bias)
    });
    from_f32(out)
}

/// The input gradient of a stride-1 convolution as the forward pass of its transposed
/// convolution by [`direct_kernel`], where one applies (`f32`).
fn direct_input_grad<T: ConvFloat>(geo: &Conv2dGeometry, weight: &[T], dy: &[T]) -> Option<Vec<T>> {
    let (weight, dy) = (as_f32(weight)?, as_f32(dy)?);
    if !geo.input_grad_is_a_convolution() {
        return None;
    }
    let kernel = direct_kernel(&geo.transposed())?;
    let dx = with_packed_weight(geo, weight, Packing::InputGrad, |back, packed| {
        kernel(back, dy, packed, None)
    });
    from_f32(dx)
}

/// [`direct_weight_kernels::weight_grad`] where it applies (`f32`).
fn direct_weight_grad<T: ConvFloat>(geo: &Conv2dGeometry, x: &[T], dy: &[T]) -> Option<Vec<T>> {
    let (x, dy) = (as_f32(x)?, as_f32(dy)?);
    if !direct_weight_kernels::applies(geo) {
        return None;
    }
    from_f32(direct_weight_kernels::weight_grad(geo, x, dy))
}

/// Whether the input gradient runs as [`conv2d_forward`] of the transposed convolution (the
/// weight flipped and its channel axes swapped, one pass over it) rather than im2col's
/// `Wᵀ · dY` and col2im: on maps of at most 4 pixels (VGG's last block at 2×2), where col2im
/// adds a few values per image and kernel tap and the transposed product's long `C·KH·KW` rows
/// run slower than the forward's long inner dimension. Measured at 512 channels, batch 64
/// (`benches/conv_kernels.rs`, the 2-core build VM, 2026-12-06): 13.8 → 9.7 ms at 2×2; at 4×4
/// 28.0 against 28.7, so larger maps keep im2col.
fn input_grad_as_forward(geo: &Conv2dGeometry) -> bool {
    geo.input_grad_is_a_convolution() && geo.out_plane() <= 4
}

/// The gradient of [`conv2d_forward`] with respect to its input: `dx [B, C, H, W]` from
/// `dy [B, O, OH, OW]`.
pub(crate) fn conv2d_input_grad<T: ConvFloat>(
    geo: &Conv2dGeometry,
    weight: &[T],
    dy: &[T],
) -> Vec<T> {
    if geo.batch * geo.in_image() == 0 || geo.out_plane() == 0 {
        return vec![T::zero(); geo.batch * geo.in_image()];
    }
    if depthwise_kernels::applies(geo) {
        return depthwise_kernels::input_grad(geo, weight, dy);
    }
    if pointwise_kernels::applies(geo) {
        return pointwise_kernels::input_grad(geo, weight, dy);
    }
    if let Some(dx) = direct_input_grad(geo, weight, dy) {
        return dx;
    }
    if input_grad_as_forward(geo) {
        return conv2d_forward(&geo.transposed(), dy, &flipped_weight(geo, weight), None);
    }
    let (m, k) = (geo.col_rows(), geo.out_per_group());
    let chunk = geo.images_per_chunk();
    vec_by_chunks(
        geo.batch * geo.in_image(),
        chunk * geo.in_image(),
        geo.chunks_in_parallel(),
        |index, dx_chunk| {
            with_scratch::<T, _>(geo, |scratch| {
                let images = dx_chunk.len() / geo.in_image();
                let dy_chunk = &dy[index * chunk * geo.out_image()..][..images * geo.out_image()];
                let n = images * geo.out_plane();
                let parallelism = geo.gemm_parallelism(m, n, k);
                for g in 0..geo.groups {
                    let dy_group = group_rows(dy_chunk, geo, g * k..(g + 1) * k, scratch.rows);
                    let w_group = &weight[g * k * m..][..k * m];
                    gemm(
                        scratch.col,
                        (m, n, k),
                        MatRef::row_major(w_group, k, m).t(),
                        MatRef::row_major(dy_group, k, n),
                        false,
                        parallelism,
                    );
                    for (i, dx_image) in dx_chunk.chunks_exact_mut(geo.in_image()).enumerate() {
                        let dx_group = &mut dx_image[g * geo.in_per_group() * geo.in_plane()..];
                        col2im_add(geo, &mut scratch.col[i * geo.out_plane()..], n, dx_group);
                    }
                }
            })
        },
    )
}

/// The gradient of [`conv2d_forward`] with respect to its weight: `dw [O, C/g, KH, KW]` from
/// the input `x [B, C, H, W]` and `dy [B, O, OH, OW]`.
pub(crate) fn conv2d_weight_grad<T: ConvFloat>(geo: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let weight_len = geo.c_out * geo.col_rows();
    if geo.out_plane() == 0 || geo.batch == 0 {
        return vec![T::zero(); weight_len];
    }
    if depthwise_kernels::applies(geo) {
        return depthwise_kernels::weight_grad(geo, x, dy);
    }
    if pointwise_kernels::applies(geo) {
        let x = Images::contiguous(x, geo.in_image());
        return pointwise_kernels::weight_grad(geo, x, dy);
    }
    if let Some(dw) = direct_weight_grad(geo, x, dy) {
        return dw;
    }
    let (m, n) = (geo.out_per_group(), geo.col_rows());
    let chunk = geo.images_per_chunk();
    let chunks = geo.batch.div_ceil(chunk);
    let slices = thread_count().min(chunks);
    // Slice `s` sums the chunks `s·C/S .. (s+1)·C/S` of the batch into partial sum `s`.
    let partials = vec_by_chunks(slices * weight_len, weight_len, slices > 1, |slice, dw| {
        with_scratch::<T, _>(geo, |scratch| {
            let chunk_range = slice * chunks / slices..(slice + 1) * chunks / slices;
            for (step, c) in chunk_range.enumerate() {
                let images = c * chunk..((c + 1) * chunk).min(geo.batch);
                let x_chunk = &x[images.start * geo.in_image()..images.end * geo.in_image()];
                let dy_chunk = &dy[images.start * geo.out_image()..images.end * geo.out_image()];
                let k = images.len() * geo.out_plane();
                let parallelism = if slices > 1 {
                    gemm::Parallelism::None
                } else {
                    geo.gemm_parallelism(m, n, k)
                };
                for g in 0..geo.groups {
                    let dy_group = group_rows(dy_chunk, geo, g * m..(g + 1) * m, scratch.rows);
                    // dW_g = dY_g · col_gᵀ from the forward pass's im2col matrix: both read
                    // along the pixels, as they lie (`gemm_nt`; with gemm, its transpose
                    // col_g · dY_gᵀ ran ~10 % slower, and a pixel-major col_g cost more to
                    // build than gemm's packing it saved; benches/conv_kernels.rs, 2026-12-05).
                    let columns = chunk_columns(geo, x_chunk, g, scratch.col);
                    gemm_nt(
                        &mut dw[g * m * n..],
                        (m, n, k),
                        dy_group,
                        columns,
                        step > 0,
                        parallelism,
                    );
                }
            }
        })
    });
    sum_partials(partials, weight_len)
}

/// The gradient of a convolution's bias: `db [O] = Σ_{b, oh, ow} dy [b, O, oh, ow]`.
pub(crate) fn conv2d_bias_grad<T: ConvFloat>(batch: usize, c_out: usize, dy: &[T]) -> Vec<T> {
    let plane = dy.len() / (batch * c_out).max(1);
    let mut db = vec![T::zero(); c_out];
    for dy_image in dy.chunks_exact(c_out * plane) {
        for (d, channel) in db.iter_mut().zip(dy_image.chunks_exact(plane)) {
            *d = *d + channel.iter().copied().sum::<T>();
        }
    }
    db
}

// ============================================================================
// FlexTensor entry points (dtype dispatch; f16 and bf16 run in f32)
// ============================================================================

/// `tensor` laid out contiguously, checked to hold `T`, ready for `storage::<T>()`.
fn elements<T: ConvFloat + burn_backend::Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "conv2d")
}

/// `x`'s images read where they lie, for the pointwise kernels, when those compute `geo` and
/// each image of `x` is contiguous (a channel slice, as ShuffleNetV2's units take: no
/// contiguous copy first).
fn pointwise_images<'a, T: ConvFloat + burn_backend::Element>(
    geo: &Conv2dGeometry,
    x: &'a FlexTensor,
) -> Option<Images<'a, T>> {
    if depthwise_kernels::applies(geo) || !pointwise_kernels::applies(geo) {
        return None;
    }
    let (data, stride) = image_blocks::<T>(x)?;
    Some(Images::strided(data, geo.batch, stride, geo.in_image()))
}

/// Runs `op` in the tensors' float type: `f32` and `f64` natively, `f16` and `bf16` through
/// `f32` (converted in, the result converted back).
fn in_float_type(
    inputs: Vec<FlexTensor>,
    op_f32: impl FnOnce(&[FlexTensor]) -> FlexTensor,
    op_f64: impl FnOnce(&[FlexTensor]) -> FlexTensor,
) -> FlexTensor {
    let dtype = inputs[0].dtype();
    match dtype {
        DType::F32 => op_f32(&inputs),
        DType::F64 => op_f64(&inputs),
        DType::F16 => {
            let widened: Vec<_> = inputs
                .into_iter()
                .map(|t| cast_to_f32(t, f16::to_f32))
                .collect();
            cast_from_f32(op_f32(&widened), f16::from_f32)
        }
        DType::BF16 => {
            let widened: Vec<_> = inputs
                .into_iter()
                .map(|t| cast_to_f32(t, bf16::to_f32))
                .collect();
            cast_from_f32(op_f32(&widened), bf16::from_f32)
        }
        dtype => panic!("conv2d: unsupported dtype {dtype:?}"),
    }
}

/// Instantiates `$body` (a generic function call over `T`) for `f32` and `f64`.
macro_rules! per_float {
    ($inputs:expr, |$t:ident| $body:expr) => {
        in_float_type(
            $inputs,
            |$t| {
                type T = f32;
                $body
            },
            |$t| {
                type T = f64;
                $body
            },
        )
    };
}

fn shape_of(tensor: &FlexTensor) -> Vec<usize> {
    tensor.layout().shape().to_vec()
}

/// `conv2d(x, weight) + bias` on burn-flex tensors (`f32`, `f64`; `f16`/`bf16` through `f32`).
///
/// # Shapes
/// - x `[batch, channels_in, h, w]`, weight `[channels_out, channels_in / groups, kh, kw]`,
///   bias `[channels_out]`; output `[batch, channels_out, h_out, w_out]`
///
/// # Panics
/// If the shapes disagree with each other or with `options.groups`, or on another float type.
pub fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let geo = Conv2dGeometry::new(&shape_of(&x), &shape_of(&weight), options);
    let out_shape = vec![geo.batch, geo.c_out, geo.out_h, geo.out_w];
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    per_float!(inputs, |t| {
        let w = elements::<T>(&t[1]);
        let bias = t.get(2).map(elements::<T>);
        let bias = bias.as_ref().map(|b| b.storage());
        let out = match pointwise_images::<T>(&geo, &t[0]) {
            Some(x) => pointwise_kernels::forward(&geo, x, w.storage(), bias),
            None => conv2d_forward::<T>(&geo, elements::<T>(&t[0]).storage(), w.storage(), bias),
        };
        tensor_from(out, out_shape.clone())
    })
}

/// The input gradient of [`conv2d`]: `∂L/∂x` `[batch, channels_in, h, w]` from the output
/// gradient `[batch, channels_out, h_out, w_out]` (`Wᵀ · dY`, then col2im).
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let x_shape = shape_of(&x);
    let geo = Conv2dGeometry::new(&x_shape, &shape_of(&weight), options);
    per_float!(vec![weight, output_grad], |t| {
        let (w, dy) = (elements::<T>(&t[0]), elements::<T>(&t[1]));
        tensor_from(
            conv2d_input_grad::<T>(&geo, w.storage(), dy.storage()),
            x_shape.clone(),
        )
    })
}

/// The weight gradient of [`conv2d`]: `∂L/∂W`, the weight's shape, from the input and the output
/// gradient (`Σ dY · colᵀ` over the batch, partial sums added in a fixed order).
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let w_shape = shape_of(&weight);
    let geo = Conv2dGeometry::new(&shape_of(&x), &w_shape, options);
    per_float!(vec![x, output_grad], |t| {
        let dy = elements::<T>(&t[1]);
        let dw = match pointwise_images::<T>(&geo, &t[0]) {
            Some(x) => pointwise_kernels::weight_grad(&geo, x, dy.storage()),
            None => conv2d_weight_grad::<T>(&geo, elements::<T>(&t[0]).storage(), dy.storage()),
        };
        tensor_from(dw, w_shape.clone())
    })
}

/// The bias gradient of [`conv2d`]: `∂L/∂b` `[channels_out]`, the output gradient summed over
/// the batch and the output pixels.
pub fn conv2d_bias_backward(bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    let dy_shape = shape_of(&output_grad);
    let bias_shape = shape_of(&bias);
    per_float!(vec![output_grad], |t| {
        let dy = elements::<T>(&t[0]);
        tensor_from(
            conv2d_bias_grad::<T>(dy_shape[0], dy_shape[1], dy.storage()),
            bias_shape.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random vector in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// Visits every (b, o, oh, ow, c, kh, kw) term of the convolution with the flat indices
    /// of the output, input and weight elements it joins.
    fn for_each_term(geo: &Conv2dGeometry, mut visit: impl FnMut(usize, usize, usize)) {
        let (cpg, opg) = (geo.in_per_group(), geo.out_per_group());
        for b in 0..geo.batch {
            for o in 0..geo.c_out {
                let g = o / opg;
                for oh in 0..geo.out_h {
                    for ow in 0..geo.out_w {
                        let out_index = ((b * geo.c_out + o) * geo.out_h + oh) * geo.out_w + ow;
                        for ci in 0..cpg {
                            for kh in 0..geo.k_h {
                                for kw in 0..geo.k_w {
                                    let ih = (oh * geo.stride[0] + kh * geo.dilation[0]) as isize
                                        - geo.padding[0] as isize;
                                    let iw = (ow * geo.stride[1] + kw * geo.dilation[1]) as isize
                                        - geo.padding[1] as isize;
                                    if ih < 0
                                        || iw < 0
                                        || ih >= geo.in_h as isize
                                        || iw >= geo.in_w as isize
                                    {
                                        continue;
                                    }
                                    let c = g * cpg + ci;
                                    let x_index = ((b * geo.c_in + c) * geo.in_h + ih as usize)
                                        * geo.in_w
                                        + iw as usize;
                                    let w_index = ((o * cpg + ci) * geo.k_h + kh) * geo.k_w + kw;
                                    visit(out_index, x_index, w_index);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn assert_close(name: &str, ours: &[f64], naive: &[f64]) {
        assert_eq!(ours.len(), naive.len(), "{name}: lengths");
        for (i, (a, b)) in ours.iter().zip(naive).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{name}[{i}]: {a} vs {b}"
            );
        }
    }

    /// Forward, input, weight and bias gradients against the naive sums, in f64.
    fn check(x_shape: [usize; 4], w_shape: [usize; 4], options: ConvOptions<2>) {
        let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options);
        let x = values(x_shape.iter().product(), 1);
        let w = values(w_shape.iter().product(), 2);
        let bias = values(geo.c_out, 3);
        let dy = values(geo.batch * geo.out_image(), 4);
        let (mut out, mut dx, mut dw) =
            (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        for_each_term(&geo, |o, xi, wi| {
            out[o] += x[xi] * w[wi];
            dx[xi] += dy[o] * w[wi];
            dw[wi] += dy[o] * x[xi];
        });
        for (index, v) in out.iter_mut().enumerate() {
            *v += bias[(index / geo.out_plane()) % geo.c_out];
        }
        let mut db = vec![0.0; geo.c_out];
        for (index, g) in dy.iter().enumerate() {
            db[(index / geo.out_plane()) % geo.c_out] += g;
        }
        let case = format!("{x_shape:?} {w_shape:?} {options:?}");
        assert_close(
            &format!("forward {case}"),
            &conv2d_forward(&geo, &x, &w, Some(&bias)),
            &out,
        );
        assert_close(
            &format!("input grad {case}"),
            &conv2d_input_grad(&geo, &w, &dy),
            &dx,
        );
        assert_close(
            &format!("weight grad {case}"),
            &conv2d_weight_grad(&geo, &x, &dy),
            &dw,
        );
        assert_close(
            &format!("bias grad {case}"),
            &conv2d_bias_grad(geo.batch, geo.c_out, &dy),
            &db,
        );
    }

    fn options(stride: usize, padding: usize, groups: usize) -> ConvOptions<2> {
        ConvOptions::new([stride; 2], [padding; 2], [1, 1], groups)
    }

    #[test]
    fn dense_convolutions_match_the_naive_sums() {
        check([2, 3, 7, 7], [4, 3, 3, 3], options(1, 1, 1));
        check([1, 3, 7, 5], [4, 3, 3, 3], options(2, 1, 1));
        check([3, 4, 6, 6], [5, 4, 3, 3], options(1, 0, 1));
        check([2, 4, 8, 8], [6, 4, 1, 1], options(1, 0, 1));
        check([2, 4, 8, 7], [6, 4, 1, 1], options(2, 0, 1));
        check([2, 3, 11, 9], [2, 3, 7, 7], options(2, 3, 1));
        check([5, 2, 4, 4], [3, 2, 3, 3], options(1, 1, 1));
    }

    #[test]
    fn grouped_and_depthwise_convolutions_match_the_naive_sums() {
        check([2, 6, 6, 6], [9, 2, 1, 1], options(1, 0, 3));
        check([2, 6, 5, 7], [6, 2, 3, 3], options(2, 1, 3));
        check([3, 4, 6, 6], [4, 1, 3, 3], options(1, 1, 4));
        check([2, 4, 7, 6], [4, 1, 3, 3], options(2, 1, 4));
        check([1, 3, 9, 9], [6, 1, 5, 5], options(2, 2, 3));
        check([2, 5, 4, 4], [5, 1, 3, 3], options(1, 0, 5));
    }

    /// The `f32` forward pass and gradients against the `f64` sums of the same values, within
    /// the rounding bound of their summation order (2·10⁻⁵ of the sum of the terms' magnitudes).
    fn check_f32(x_shape: [usize; 4], w_shape: [usize; 4], options: ConvOptions<2>) {
        let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options);
        let x = values(x_shape.iter().product(), 5);
        let w = values(w_shape.iter().product(), 7);
        let dy = values(geo.batch * geo.out_image(), 6);
        let exact = |len: usize| (vec![0.0; len], vec![0.0; len]);
        let (mut out, mut out_size) = exact(dy.len());
        let (mut dx, mut dx_size) = exact(x.len());
        let (mut dw, mut dw_size) = exact(w.len());
        for_each_term(&geo, |o, xi, wi| {
            out[o] += x[xi] * w[wi];
            out_size[o] += (x[xi] * w[wi]).abs();
            dx[xi] += dy[o] * w[wi];
            dx_size[xi] += (dy[o] * w[wi]).abs();
            dw[wi] += dy[o] * x[xi];
            dw_size[wi] += (dy[o] * x[xi]).abs();
        });
        let narrow = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let (x, w, dy) = (narrow(&x), narrow(&w), narrow(&dy));
        let results = [
            (
                "forward",
                conv2d_forward::<f32>(&geo, &x, &w, None),
                out,
                out_size,
            ),
            (
                "input grad",
                conv2d_input_grad::<f32>(&geo, &w, &dy),
                dx,
                dx_size,
            ),
            (
                "weight grad",
                conv2d_weight_grad::<f32>(&geo, &x, &dy),
                dw,
                dw_size,
            ),
        ];
        for (name, ours, want, size) in results {
            assert_eq!(
                ours.len(),
                want.len(),
                "{name} {x_shape:?} {w_shape:?}: length"
            );
            for (index, &ours) in ours.iter().enumerate() {
                assert!(
                    (ours as f64 - want[index]).abs() <= 2e-5 * size[index] + 1e-6,
                    "{name} {x_shape:?} {w_shape:?} [{index}]: {ours} vs {}",
                    want[index]
                );
            }
        }
    }

    /// The `f32` kernels of dense convolutions: the weight gradients (dot-product tiles below
    /// 64 output channels per group on an AVX-512 CPU, gemm above), the forward passes and input
    /// gradients (direct kernels on an AVX-512 CPU where `direct_kernels` applies, im2col and
    /// gemm otherwise).
    #[test]
    fn f32_convolutions_match_the_f64_sums() {
        let cases = [
            ([1, 16, 32, 32], [32, 16, 3, 3], options(1, 1, 1)),
            ([4, 3, 32, 32], [32, 3, 3, 3], options(1, 1, 1)),
            ([3, 8, 7, 7], [20, 8, 3, 3], options(1, 1, 1)),
            ([2, 6, 8, 8], [9, 2, 3, 3], options(1, 1, 3)),
            ([2, 8, 9, 9], [70, 8, 3, 3], options(2, 1, 1)),
        ];
        for (x_shape, w_shape, options) in cases {
            check_f32(x_shape, w_shape, options);
        }
    }

    /// [`check_f32`] on each case, which (on an AVX-512 CPU) `kernel_applies` to.
    fn check_taken<const N: usize>(
        cases: [([usize; 4], [usize; 4], ConvOptions<2>); N],
        kernel_applies: fn(&Conv2dGeometry) -> bool,
    ) {
        for (x_shape, w_shape, options) in cases {
            let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options);
            if crate::nt_product::available() {
                assert!(kernel_applies(&geo), "{geo:?}");
            }
            check_f32(x_shape, w_shape, options);
        }
    }

    /// The direct kernels' shapes: one and two vectors of output channels, rows of 8 pixels and
    /// partial tiles (7 and 15 columns), stride 2 (forward only; its input gradient takes
    /// im2col), dilation, asymmetric padding and kernels, 3-, 5- and 7-wide kernel rows and
    /// taps one at a time, padding 0 and padding wider than the kernel (output rows whose kernel
    /// rows all fall on padding), 1×1 convolutions of 64 channels, several blocks per thread, a
    /// bias; and the shapes left to im2col.
    #[test]
    fn f32_direct_convolutions_match_the_f64_sums() {
        let cases = [
            ([4, 16, 8, 8], [32, 16, 3, 3], options(1, 1, 1)),
            ([4, 32, 7, 7], [16, 32, 3, 3], options(1, 1, 1)),
            ([2, 16, 5, 15], [48, 16, 3, 3], options(1, 1, 1)),
            ([4, 16, 15, 15], [32, 16, 3, 3], options(2, 1, 1)),
            ([4, 16, 15, 16], [16, 16, 3, 3], options(2, 0, 1)),
            (
                [4, 16, 9, 16],
                [32, 16, 3, 2],
                ConvOptions::new([1, 1], [2, 1], [2, 3], 1),
            ),
            ([4, 8, 7, 7], [16, 8, 5, 5], options(1, 2, 1)),
            ([4, 3, 15, 13], [16, 3, 7, 7], options(2, 3, 1)),
            ([4, 16, 9, 9], [32, 16, 3, 3], options(1, 0, 1)),
            ([4, 64, 14, 14], [32, 64, 1, 1], options(2, 0, 1)),
            ([5, 16, 7, 7], [16, 16, 3, 3], options(1, 1, 1)),
            // Padding wider than the kernel: the first and last output rows read no image row.
            ([4, 16, 4, 4], [32, 16, 3, 3], options(1, 3, 1)),
        ];
        check_taken(cases, direct_kernels::applies);
        // Rows of 4 pixels would leave half of each tile empty, and one image of 32 channels is
        // one block for one thread: im2col and gemm.
        for x_shape in [[4, 16, 4, 4], [1, 16, 8, 8]] {
            let geo = Conv2dGeometry::new(&x_shape, &[32, 16, 3, 3], &options(1, 1, 1));
            assert!(!direct_kernels::applies(&geo), "{geo:?}");
            check_f32(x_shape, [32, 16, 3, 3], options(1, 1, 1));
        }
        let geo = Conv2dGeometry::new(&[4, 16, 8, 8], &[16, 16, 3, 3], &options(1, 1, 1));
        let x: Vec<f32> = values(geo.batch * geo.in_image(), 8)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let w: Vec<f32> = values(16 * 16 * 9, 9).iter().map(|&v| v as f32).collect();
        let bias: Vec<f32> = (0..16).map(|o| o as f32 - 7.5).collect();
        let with_bias = conv2d_forward(&geo, &x, &w, Some(&bias));
        let without = conv2d_forward(&geo, &x, &w, None);
        for (index, (a, b)) in with_bias.iter().zip(&without).enumerate() {
            assert_eq!(*a, b + bias[index / geo.out_plane() % 16], "bias [{index}]");
        }
    }

    /// The small-map kernels' shapes: one and two vectors of output channels, 4×4 and 2×2
    /// maps, a batch that leaves its last group of 8 images part empty, stride 2, dilation with
    /// an asymmetric kernel and padding, padding wider than the kernel (pixels that read no
    /// tap), several blocks per unit; their input gradients; and the shapes left to im2col.
    #[test]
    fn f32_small_map_convolutions_match_the_f64_sums() {
        let forward_cases = [
            ([16, 32, 4, 4], [64, 32, 3, 3], options(1, 1, 1)),
            ([16, 16, 2, 2], [48, 16, 3, 3], options(1, 1, 1)),
            ([12, 32, 4, 4], [64, 32, 3, 3], options(1, 1, 1)),
            ([16, 16, 8, 8], [64, 16, 3, 3], options(2, 1, 1)),
            (
                [16, 16, 5, 3],
                [64, 16, 3, 2],
                ConvOptions::new([1, 1], [2, 1], [2, 1], 1),
            ),
            ([16, 16, 2, 2], [64, 16, 3, 3], options(1, 3, 1)),
            ([8, 16, 4, 4], [256, 16, 3, 3], options(1, 1, 1)),
        ];
        check_taken(forward_cases, small_map_kernels::applies);
        let input_grad_cases = [
            ([32, 32, 4, 4], [64, 32, 3, 3], options(1, 1, 1)),
            ([16, 64, 2, 2], [16, 64, 3, 3], options(1, 1, 1)),
            (
                [16, 48, 3, 2],
                [32, 48, 3, 2],
                ConvOptions::new([1, 1], [2, 1], [2, 1], 1),
            ),
        ];
        check_taken(input_grad_cases, |geo| {
            geo.input_grad_is_a_convolution() && small_map_kernels::applies(&geo.transposed())
        });
        // Too few images for a group of 8, too few multiply-adds per output, maps large enough
        // for GEMM's columns: im2col.
        for (x_shape, w_shape) in [
            ([9, 32, 4, 4], [64, 32, 3, 3]),
            ([16, 4, 4, 4], [64, 4, 3, 3]),
            ([16, 16, 9, 9], [64, 16, 3, 3]),
        ] {
            let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options(1, 1, 1));
            assert!(!small_map_kernels::applies(&geo), "{geo:?}");
            check_f32(x_shape, w_shape, options(1, 1, 1));
        }
    }

    /// Each output element of the direct and small-map kernels is one tile's sum in a fixed
    /// order: the bits of a forward pass and an input gradient do not depend on the number of
    /// threads that share the tiles.
    #[test]
    fn direct_tiles_do_not_change_a_bit_with_the_threads() {
        use crate::test_values::{on_threads, spread_f32};
        type Applies = fn(&Conv2dGeometry) -> bool;
        let kernels: [([usize; 4], Applies); 2] = [
            ([4, 32, 9, 16], direct_kernels::applies),
            ([32, 32, 4, 4], small_map_kernels::applies),
        ];
        for (x_shape, applies) in kernels {
            let geo = Conv2dGeometry::new(&x_shape, &[64, 32, 3, 3], &options(1, 1, 1));
            if crate::nt_product::available() {
                assert!(applies(&geo) && applies(&geo.transposed()), "{geo:?}");
            }
            let x = spread_f32(geo.batch * geo.in_image(), 1);
            let w = spread_f32(geo.c_out * geo.col_rows(), 2);
            let dy = spread_f32(geo.batch * geo.out_image(), 3);
            let run = |threads: usize| {
                on_threads(threads, || {
                    (
                        conv2d_forward(&geo, &x, &w, None),
                        conv2d_input_grad(&geo, &w, &dy),
                    )
                })
            };
            assert_eq!(run(1), run(3), "{geo:?}");
        }
    }

    /// The direct weight gradient's shapes: 16 to 64 output channels, input channels in
    /// groups of 4 and 2 and left over, 3-, 5- and 7-wide kernels, row strides 1 and 2, a
    /// stride and a dilation across the rows, several partial gradients and bands of rows,
    /// tiles of two rows of 4, padding wider than the kernel; and rows of 7 pixels, left to
    /// im2col.
    #[test]
    fn f32_direct_weight_gradients_match_the_f64_sums() {
        let cases = [
            ([8, 16, 8, 8], [64, 16, 3, 3], options(1, 1, 1)),
            ([16, 6, 16, 16], [32, 6, 3, 3], options(1, 1, 1)),
            ([8, 16, 16, 16], [64, 16, 3, 3], options(2, 1, 1)),
            ([8, 8, 8, 8], [64, 8, 5, 5], options(1, 2, 1)),
            ([8, 3, 16, 16], [64, 3, 7, 7], options(2, 3, 1)),
            (
                [8, 16, 8, 8],
                [64, 16, 3, 3],
                ConvOptions::new([1, 1], [2, 1], [2, 1], 1),
            ),
            (
                [8, 16, 16, 8],
                [64, 16, 3, 3],
                ConvOptions::new([2, 1], [1, 1], [1, 1], 1),
            ),
            ([16, 8, 32, 16], [16, 8, 3, 3], options(1, 1, 1)),
            ([8, 16, 4, 4], [64, 16, 3, 3], options(1, 1, 1)),
            ([8, 8, 6, 4], [64, 8, 5, 5], options(1, 2, 1)),
            // Padding wider than the kernel: rows of tiles that read no image row.
            ([8, 16, 4, 4], [64, 16, 3, 3], options(1, 3, 1)),
            ([8, 16, 6, 4], [64, 16, 3, 3], options(1, 3, 1)),
        ];
        check_taken(cases, direct_weight_kernels::applies);
        let geo = Conv2dGeometry::new(&[8, 16, 7, 7], &[64, 16, 3, 3], &options(1, 1, 1));
        assert!(!direct_weight_kernels::applies(&geo), "{geo:?}");
        check_f32([8, 16, 7, 7], [64, 16, 3, 3], options(1, 1, 1));
    }

    /// Input gradients on maps of at most 4 pixels, taken as the forward pass of the transposed
    /// convolution (`input_grad_as_forward`), in `f64` and `f32`: 2×2 and 1×3 maps, a 3×3 and
    /// an asymmetric kernel, padding 0 to the kernel's reach, dilation; a grouped convolution
    /// and a stride keep im2col.
    #[test]
    fn tiny_map_input_gradients_match_the_naive_sums() {
        let cases = [
            ([4, 16, 2, 2], [32, 16, 3, 3], options(1, 1, 1)),
            (
                [3, 5, 1, 3],
                [7, 5, 1, 3],
                ConvOptions::new([1, 1], [0, 1], [1, 1], 1),
            ),
            ([2, 6, 4, 4], [8, 6, 3, 3], options(1, 0, 1)),
            (
                [2, 6, 2, 2],
                [8, 6, 3, 2],
                ConvOptions::new([1, 1], [2, 0], [2, 1], 1),
            ),
        ];
        for (x_shape, w_shape, options) in cases {
            let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options);
            assert!(input_grad_as_forward(&geo), "{geo:?}");
            check(x_shape, w_shape, options.clone());
            check_f32(x_shape, w_shape, options);
        }
        for (x_shape, w_shape, options) in [
            ([2, 6, 2, 2], [6, 2, 3, 3], options(1, 1, 3)),
            ([2, 6, 4, 4], [8, 6, 3, 3], options(2, 1, 1)),
            ([2, 6, 4, 4], [8, 6, 3, 3], options(1, 1, 1)),
        ] {
            let geo = Conv2dGeometry::new(&x_shape, &w_shape, &options);
            assert!(!input_grad_as_forward(&geo), "{geo:?}");
            check(x_shape, w_shape, options);
        }
    }

    /// Batches and maps large enough for several image chunks per GEMM, per-thread partial
    /// sums and the parallel depthwise loops (the zoo's shapes at a student step's 16 rows).
    #[test]
    fn zoo_sized_batches_match_the_naive_sums() {
        check([16, 16, 16, 16], [16, 16, 3, 3], options(1, 1, 1));
        check([16, 16, 16, 16], [32, 16, 3, 3], options(2, 1, 1));
        check([16, 24, 8, 8], [24, 1, 3, 3], options(1, 1, 24));
        check([16, 24, 8, 8], [24, 1, 3, 3], options(2, 1, 24));
        check([16, 24, 8, 8], [48, 24, 1, 1], options(1, 0, 1));
        check([16, 24, 8, 8], [12, 8, 1, 1], options(1, 0, 3));
        check([16, 320, 2, 2], [1280, 320, 1, 1], options(1, 0, 1));
        check([16, 96, 4, 4], [96, 1, 3, 3], options(2, 1, 96));
    }

    #[test]
    fn dilation_and_asymmetric_options_match_the_naive_sums() {
        check(
            [2, 3, 9, 8],
            [4, 3, 3, 2],
            ConvOptions::new([2, 1], [2, 1], [2, 3], 1),
        );
        check(
            [2, 4, 9, 9],
            [4, 1, 3, 3],
            ConvOptions::new([1, 2], [1, 2], [2, 1], 4),
        );
    }

    /// The wide-row depthwise kernels (stride 1): a channel multiplier with a non-square kernel
    /// and padding, padding wider than the kernel, one-pixel maps, a single output row.
    #[test]
    fn stride_one_depthwise_edge_cases_match_the_naive_sums() {
        check(
            [2, 3, 5, 7],
            [6, 1, 3, 2],
            ConvOptions::new([1, 1], [1, 0], [1, 1], 3),
        );
        check(
            [2, 2, 3, 3],
            [2, 1, 5, 5],
            ConvOptions::new([1, 1], [3, 3], [1, 1], 2),
        );
        check([1, 4, 1, 1], [4, 1, 1, 1], options(1, 0, 4));
        check([2, 3, 4, 5], [3, 1, 4, 4], options(1, 0, 3));
    }

    /// The per-image pointwise products: grouped, one image (parallel products), more images
    /// than threads, non-square maps.
    #[test]
    fn pointwise_convolutions_match_the_naive_sums() {
        check([1, 6, 9, 9], [6, 2, 1, 1], options(1, 0, 3));
        check([5, 4, 8, 10], [7, 4, 1, 1], options(1, 0, 1));
        check([3, 8, 16, 8], [8, 2, 1, 1], options(1, 0, 4));
    }

    /// A channel slice of a larger tensor (ShuffleNetV2's branch), read where it lies by the
    /// pointwise kernels: the same values as its contiguous copy, forward and weight gradient.
    #[test]
    fn pointwise_convolutions_of_a_channel_slice_read_it_in_place() {
        let tensor = |values: Vec<f64>, shape: [usize; 4]| {
            FlexTensor::from_data(burn_backend::TensorData::new(values, shape.to_vec()))
        };
        let whole = tensor(values(3 * 10 * 8 * 8, 1), [3, 10, 8, 8]);
        let weight = tensor(values(5 * 4, 2), [5, 4, 1, 1]);
        let dy = tensor(values(3 * 5 * 8 * 8, 3), [3, 5, 8, 8]);
        let slice = whole.narrow(1, 6, 4);
        let copy = slice.to_contiguous();
        let geo = Conv2dGeometry::new(&[3, 4, 8, 8], &[5, 4, 1, 1], &options(1, 0, 1));
        assert!(pointwise_images::<f64>(&geo, &slice).is_some());
        let opts = options(1, 0, 1);
        let forward = |x: &FlexTensor| conv2d(x.clone(), weight.clone(), None, &opts);
        let weight_grad =
            |x: &FlexTensor| conv2d_weight_backward(x.clone(), weight.clone(), dy.clone(), &opts);
        for (ours, reference) in [
            (forward(&slice), forward(&copy)),
            (weight_grad(&slice), weight_grad(&copy)),
        ] {
            assert_eq!(ours.storage::<f64>(), reference.storage::<f64>());
        }
        // The copy's values are those of the slice (a misread offset would show).
        let reference: Vec<f64> = (0..3)
            .flat_map(|b| values(3 * 10 * 8 * 8, 1)[(b * 10 + 6) * 64..][..4 * 64].to_vec())
            .collect();
        assert_eq!(copy.storage::<f64>(), reference.as_slice());
    }

    #[test]
    fn taps_that_never_see_the_input_leave_zero_rows() {
        check(
            [1, 2, 2, 3],
            [3, 2, 5, 5],
            ConvOptions::new([1, 1], [2, 2], [1, 1], 1),
        );
        check(
            [2, 2, 3, 3],
            [2, 1, 5, 5],
            ConvOptions::new([2, 2], [2, 2], [1, 1], 2),
        );
    }
}
