//! Matrix products on strided operands (gemm's micro-kernels), and per-thread partial sums of
//! their results added in a fixed order, so that a given thread count always gives the same
//! bits.

use crate::conv_geometry::ConvFloat;

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
