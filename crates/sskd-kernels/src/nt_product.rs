//! `dst (+)= A · Bᵀ` for row-major `A [m, k]` and `B [n, k]` in `f32`: both operands read
//! along `k`, as they lie, by AVX-512 dot products — a convolution's weight gradient
//! `dW = dY · colᵀ`, whose operands both hold the pixels contiguously.
//!
//! gemm's micro-kernels need `A` in column panels and `Bᵀ` in row panels, so gemm 0.19 packs
//! both operands of this product by transposing them, and the 3×3 weight gradients ran at
//! 18–44 % of the machine's GEMM peak against 47–81 % for the forward passes
//! (docs/performance.md). Here each `4 × 4` tile of `dst` keeps sixteen 16-lane accumulators
//! over a block of `k` (one load of each operand row per 16 `k`, sixteen fused multiply-adds),
//! then adds their lane sums into `dst`: no packing, no copy. Blocks of 1,024 `k` and of 128
//! rows of `B` keep the operands in the caches; the tiles of a block are split over the rows of
//! `dst` on rayon's threads when asked, and every element of `dst` is summed in the same order
//! whatever the thread count.
//!
//! [`available`] says whether this CPU has AVX-512F; callers take gemm otherwise.

use crate::parallel_chunks::for_each_chunk;

/// Rows of `A` (and of `dst`) per tile.
const TILE_ROWS: usize = 4;
/// Rows of `B` (columns of `dst`) per tile.
const TILE_COLUMNS: usize = 4;
/// `k` per block: each tile's accumulators are summed into `dst` once per block.
const K_BLOCK: usize = 1024;
/// Rows of `B` per block (128 rows of 1,024 floats: 512 KB, within a core's L2).
const B_BLOCK: usize = 128;

/// Whether [`product_nt`] runs on this CPU (x86-64 with AVX-512F).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst [m, n] (+)= a [m, k] · b [n, k]ᵀ`, all row-major; adds to `dst` when `accumulate`.
/// The tiles of each block run on rayon's threads when `parallel`.
///
/// # Panics
/// If a slice is shorter than its matrix, or the CPU lacks AVX-512F ([`available`]).
pub(crate) fn product_nt(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    accumulate: bool,
    parallel: bool,
) {
    assert!(available(), "product_nt: needs AVX-512F");
    assert!(
        dst.len() >= m * n && a.len() >= m * k && b.len() >= n * k,
        "product_nt: a matrix slice is too short"
    );
    let dst = &mut dst[..m * n];
    if !accumulate {
        dst.fill(0.0);
    }
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let tiles_in_parallel = parallel && m > TILE_ROWS;
    for k_start in (0..k).step_by(K_BLOCK) {
        let k_range = k_start..(k_start + K_BLOCK).min(k);
        for b_start in (0..n).step_by(B_BLOCK) {
            let b_rows = b_start..(b_start + B_BLOCK).min(n);
            for_each_chunk(
                dst,
                TILE_ROWS * n,
                tiles_in_parallel,
                |tile_row, dst_rows| {
                    let rows = tile_row * TILE_ROWS..(tile_row * TILE_ROWS + TILE_ROWS).min(m);
                    let block = Block {
                        a,
                        b,
                        k,
                        k_range: k_range.clone(),
                    };
                    for column in b_rows.clone().step_by(TILE_COLUMNS) {
                        let columns = column..(column + TILE_COLUMNS).min(b_rows.end);
                        // SAFETY: `available()` was checked above.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            block.tile(dst_rows, n, rows.clone(), columns)
                        };
                    }
                },
            );
        }
    }
}

/// The operands and the `k` block a tile reads.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Block<'a> {
    a: &'a [f32],
    b: &'a [f32],
    /// Row length of `a` and `b`.
    k: usize,
    k_range: core::ops::Range<usize>,
}

#[cfg(target_arch = "x86_64")]
impl Block<'_> {
    /// Adds the tile `rows × columns` of `A · Bᵀ` over this block's `k` to `dst_rows` (the rows
    /// `rows` of `dst`, each `n` long). A tile at the edge reads its last row of `A` or `B`
    /// again in place of the missing ones and drops those sums.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(
        &self,
        dst_rows: &mut [f32],
        n: usize,
        rows: core::ops::Range<usize>,
        columns: core::ops::Range<usize>,
    ) {
        use std::arch::x86_64::*;
        const LANES: usize = 16;
        let (k_start, len) = (self.k_range.start, self.k_range.len());
        let mut a_rows = [&self.a[..0]; TILE_ROWS];
        for (r, row) in a_rows.iter_mut().enumerate() {
            let i = (rows.start + r).min(rows.end - 1);
            *row = &self.a[i * self.k + k_start..][..len];
        }
        let mut b_rows = [&self.b[..0]; TILE_COLUMNS];
        for (c, row) in b_rows.iter_mut().enumerate() {
            let j = (columns.start + c).min(columns.end - 1);
            *row = &self.b[j * self.k + k_start..][..len];
        }
        let mut sums = [[_mm512_setzero_ps(); TILE_COLUMNS]; TILE_ROWS];
        let mut a_lanes = [_mm512_setzero_ps(); TILE_ROWS];
        let full = len / LANES;
        for step in 0..full {
            let at = step * LANES;
            for r in 0..TILE_ROWS {
                // SAFETY: `at + 16 <= len`, the length of each row slice.
                a_lanes[r] = unsafe { _mm512_loadu_ps(a_rows[r].as_ptr().add(at)) };
            }
            for c in 0..TILE_COLUMNS {
                // SAFETY: as above.
                let b_lanes = unsafe { _mm512_loadu_ps(b_rows[c].as_ptr().add(at)) };
                for r in 0..TILE_ROWS {
                    sums[r][c] = _mm512_fmadd_ps(a_lanes[r], b_lanes, sums[r][c]);
                }
            }
        }
        let rest = len - full * LANES;
        if rest > 0 {
            let at = full * LANES;
            let mask: __mmask16 = ((1u32 << rest) - 1) as __mmask16;
            for r in 0..TILE_ROWS {
                // SAFETY: the mask reads only the `rest` elements left in each row slice.
                a_lanes[r] = unsafe { _mm512_maskz_loadu_ps(mask, a_rows[r].as_ptr().add(at)) };
            }
            for c in 0..TILE_COLUMNS {
                // SAFETY: as above.
                let b_lanes = unsafe { _mm512_maskz_loadu_ps(mask, b_rows[c].as_ptr().add(at)) };
                for r in 0..TILE_ROWS {
                    sums[r][c] = _mm512_fmadd_ps(a_lanes[r], b_lanes, sums[r][c]);
                }
            }
        }
        for (r, row_sums) in sums.iter().enumerate().take(rows.len()) {
            let dst_row = &mut dst_rows[r * n..][..n];
            for (c, &sum) in row_sums.iter().enumerate().take(columns.len()) {
                dst_row[columns.start + c] += _mm512_reduce_add_ps(sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        let spread = crate::test_values::spread(len, seed);
        spread.into_iter().map(|v| v as f32).collect()
    }

    /// `A · Bᵀ + initial` in `f64` sums of the `f32` inputs, and the sum of the absolute values
    /// of each element's terms (what bounds its rounding).
    fn naive(
        a: &[f32],
        b: &[f32],
        (m, n, k): (usize, usize, usize),
        initial: &[f32],
    ) -> (Vec<f64>, Vec<f64>) {
        let mut dst = vec![0.0; m * n];
        let mut magnitude = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|p| a[i * k + p] as f64 * b[j * k + p] as f64);
                let start = initial[i * n + j] as f64;
                dst[i * n + j] = start + terms.clone().sum::<f64>();
                magnitude[i * n + j] = start.abs() + terms.map(f64::abs).sum::<f64>();
            }
        }
        (dst, magnitude)
    }

    #[test]
    fn matches_f64_sums_on_edges_tails_blocks_and_threads() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: product_nt is not used here");
            return;
        }
        // Edge tiles (m, n not multiples of 4), a k tail (k mod 16), several k blocks and B
        // blocks, one row, and the empty product.
        let shapes = [
            (5, 7, 37),
            (4, 4, 16),
            (1, 9, 3),
            (9, 130, 1030),
            (64, 27, 2100),
            (3, 2, 0),
        ];
        for (shape_index, &(m, n, k)) in shapes.iter().enumerate() {
            let (a, b) = (values(m * k, shape_index), values(n * k, shape_index + 7));
            let initial = values(m * n, shape_index + 13);
            for (accumulate, parallel) in [(false, false), (true, false), (true, true)] {
                let mut dst = initial.clone();
                product_nt(&mut dst, (m, n, k), &a, &b, accumulate, parallel);
                let start = if accumulate {
                    initial.clone()
                } else {
                    vec![0.0; m * n]
                };
                let (expected, magnitude) = naive(&a, &b, (m, n, k), &start);
                // Each lane sums k/16 terms in order, then 16 lanes in a tree, then one add
                // per k block into `dst`.
                let depth = (k / 16 + k / 1024 + 8) as f64;
                for (index, (&ours, &want)) in dst.iter().zip(&expected).enumerate() {
                    let bound = depth * f32::EPSILON as f64 * magnitude[index];
                    assert!(
                        (ours as f64 - want).abs() <= bound,
                        "{:?} accumulate {accumulate} parallel {parallel} [{index}]: {ours} vs {want}",
                        (m, n, k)
                    );
                }
            }
        }
    }

    #[test]
    fn the_threads_do_not_change_a_bit() {
        if !available() {
            return;
        }
        let (m, n, k) = (37, 150, 1500);
        let (a, b) = (values(m * k, 1), values(n * k, 2));
        let mut serial = vec![0.0; m * n];
        let mut threaded = vec![0.0; m * n];
        product_nt(&mut serial, (m, n, k), &a, &b, false, false);
        product_nt(&mut threaded, (m, n, k), &a, &b, false, true);
        assert_eq!(serial, threaded);
    }
}
