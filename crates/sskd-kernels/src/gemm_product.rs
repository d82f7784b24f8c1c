//! Matrix products on strided operands (gemm's micro-kernels), and per-thread partial sums of
//! their results added in a fixed order, so that a given thread count always gives the same
//! bits.

use crate::conv_geometry::{as_f32, as_f32_mut, ConvFloat};
use crate::nt_product;

/// A matrix operand of [`gemm`]: a base pointer with row and column strides.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<T> {
    ptr: *const T,
    row_stride: isize,
    col_stride: isize,
}

impl<T> MatRef<T> {
    /// The row-major `[rows, cols]` matrix at the start of `data`.
    pub(crate) fn row_major(data: &[T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "conv2d: matrix slice too short");
        Self {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }
    /// The transpose of this matrix.
    pub(crate) fn t(self) -> Self {
        Self {
            ptr: self.ptr,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// `dst [m, n] (+)= lhs [m, k] · rhs [k, n]`, `dst` row-major; adds to `dst` when `accumulate`.
pub(crate) fn gemm<T: ConvFloat>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    lhs: MatRef<T>,
    rhs: MatRef<T>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() >= m * n, "conv2d: GEMM destination too short");
    let (dst_row_stride, dst_col_stride) = (n as isize, 1);
    // SAFETY: `dst` holds the `m · n` elements of its row-major layout (checked); `lhs` and `rhs`
    // were built from slices holding their `[m, k]` and `[k, n]` extents (checked in
    // `MatRef::row_major`; a transpose covers the same elements) and outlive this call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_col_stride,
            dst_row_stride,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Rows of `dst` that one gemm 0.19 `f32` micro-kernel call covers on AVX-512 (its `x4x6`
/// kernel: four 16-lane registers by six columns).
const GEMM_F32_TILE_ROWS: usize = 64;

/// How many times longer than `dst`'s larger side `k` must be for a product of 64 rows or
/// more to take the dot-product tiles: a Gram matrix of a few rows of long features (SP's
/// `[64, 8192]`), where gemm's packing of the `k`-long operands, on the calling thread,
/// outweighs the tiles' lane sums.
const LONG_PRODUCT: usize = 32;

/// `dst [m, n] (+)= a [m, k] · b [n, k]ᵀ` for row-major `a` and `b` (both read along `k`, e.g.
/// a weight gradient `dY · colᵀ`); adds to `dst` when `accumulate`.
///
/// With fewer than 64 rows, or a `k` at least 32 times `dst`'s larger side, in `f32` on a CPU
/// with AVX-512F, [`nt_product`](crate::nt_product)'s
/// dot-product tiles (no packing; tiles on all threads unless `parallelism` is `None`): gemm's
/// micro-kernel computes 64 rows at a time, so a thin product (16 or 32 output channels, a
/// grouped convolution's 20) leaves most of it empty after packing both operands. Measured
/// with `benches/conv_kernels.rs` (2026-12-05, evening): the 3×3 weight gradients of 32
/// channels at 32×32 and of the WRN stem ran ~1.5× faster this way, those of 64 or more
/// channels as fast or slower. Otherwise gemm.
pub(crate) fn gemm_nt<T: ConvFloat>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    a: &[T],
    b: &[T],
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    if let (Some(dst), Some(a), Some(b)) = (as_f32_mut(dst), as_f32(a), as_f32(b)) {
        let thin = m < GEMM_F32_TILE_ROWS;
        let long = k >= LONG_PRODUCT * m.max(n);
        if (thin || long) && nt_product::available() {
            let parallel = !matches!(parallelism, gemm::Parallelism::None);
            nt_product::product_nt(dst, (m, n, k), a, b, accumulate, parallel);
            return;
        }
    }
    let (a, b) = (MatRef::row_major(a, m, k), MatRef::row_major(b, n, k));
    gemm(dst, (m, n, k), a, b.t(), accumulate, parallelism);
}

/// The sum of the `len`-sized partial sums laid out one after the other in `partials`, added in
/// order (so a given thread count always gives the same bits).
pub(crate) fn sum_partials<T: ConvFloat>(mut partials: Vec<T>, len: usize) -> Vec<T> {
    let (total, rest) = partials.split_at_mut(len);
    for partial in rest.chunks_exact(len) {
        for (t, &p) in total.iter_mut().zip(partial) {
            *t = *t + p;
        }
    }
    partials.truncate(len);
    partials
}
