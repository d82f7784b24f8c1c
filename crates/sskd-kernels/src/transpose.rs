//! Transposes of `f32` matrices in 16×16 blocks held in AVX-512 registers: the layout changes
//! of the direct convolution kernels (their tile sums, pixel-major, into NCHW; a block of `dY`
//! into pixel-major).

use crate::nt_product;

/// Values per block side: one AVX-512 `f32` vector.
const BLOCK: usize = 16;

/// `out [cols, rows] = from [rows, cols]ᵀ`, plus `offsets[col]` on every value of output row
/// `col` where given (a bias per output channel): 16×16 blocks in registers on an AVX-512 CPU,
/// the values outside whole blocks one at a time.
///
/// # Panics
/// If `from` or `out` holds fewer than `rows · cols` values or `offsets` fewer than `cols`.
pub(crate) fn transpose(
    from: &[f32],
    rows: usize,
    cols: usize,
    out: &mut [f32],
    offsets: Option<&[f32]>,
) {
    assert!(
        from.len() >= rows * cols
            && out.len() >= rows * cols
            && offsets.is_none_or(|o| o.len() >= cols),
        "transpose of {rows}×{cols}: buffers too short"
    );
    let offset = |col: usize| offsets.map_or(0.0, |o| o[col]);
    let blocked = nt_product::available();
    let (whole_rows, whole_cols) = if blocked {
        (rows / BLOCK * BLOCK, cols / BLOCK * BLOCK)
    } else {
        (0, 0)
    };
    for r in (0..whole_rows).step_by(BLOCK) {
        for c in (0..whole_cols).step_by(BLOCK) {
            // SAFETY: AVX-512F is available (`blocked`); rows `r .. r + 16 ≤ rows` of `from`
            // hold columns `c .. c + 16 ≤ cols`, rows `c .. c + 16` of `out` hold columns
            // `r .. r + 16`, and `offsets` (when given) values `c .. c + 16` (lengths checked
            // above).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                transpose_block(
                    from.as_ptr().add(r * cols + c),
                    cols,
                    out.as_mut_ptr().add(c * rows + r),
                    rows,
                    offsets.map(|o| o.as_ptr().add(c)),
                );
            }
        }
    }
    for r in 0..rows {
        let first_col = if r < whole_rows { whole_cols } else { 0 };
        for c in first_col..cols {
            out[c * rows + r] = from[r * cols + c] + offset(c);
        }
    }
}

/// `out[j · out_stride + i] = from[i · from_stride + j] (+ offsets[j])` for `i, j < 16`.
///
/// # Safety
/// The CPU has AVX-512F; `from` is readable for 16 values at each of its 16 rows, `out`
/// writable for 16 at each of its 16 rows, and `offsets` (when given) readable for 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_block(
    from: *const f32,
    from_stride: usize,
    out: *mut f32,
    out_stride: usize,
    offsets: Option<*const f32>,
) {
    use std::arch::x86_64::*;
    let rows: [__m512; BLOCK] =
        core::array::from_fn(|i| _mm512_loadu_ps(from.add(i * from_stride)));
    // Pairs of rows interleaved by 32 bits, then by 64: each 128-bit lane `l` of
    // `quads[4q + k]` holds column `4·l + k` of rows `4q .. 4q + 4`.
    let pairs: [__m512; BLOCK] = core::array::from_fn(|i| {
        let (a, b) = (rows[i / 2 * 2], rows[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let quads: [__m512; BLOCK] = core::array::from_fn(|i| {
        let (q, k) = (i / 4, i % 4);
        let a = _mm512_castps_pd(pairs[4 * q + k / 2]);
        let b = _mm512_castps_pd(pairs[4 * q + 2 + k / 2]);
        _mm512_castpd_ps(if k % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Then the 128-bit lanes, in two rounds: `halves[h·8 + k]` holds lanes 0 and 2 of quads
    // `4·2h + k` and `4·(2h+1) + k`, `halves[h·8 + 4 + k]` their lanes 1 and 3 (rows
    // `8h .. 8h + 8`); column `4·l + k` takes lane `l` of every quad of index `≡ k (mod 4)`.
    let halves: [__m512; BLOCK] = core::array::from_fn(|i| {
        let (h, k) = (i / 8, i % 4);
        let (a, b) = (quads[8 * h + k], quads[8 * h + 4 + k]);
        if i % 8 < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    for c in 0..BLOCK {
        let (lane, k) = (c / 4, c % 4);
        let first = lane % 2 * 4 + k;
        let (a, b) = (halves[first], halves[8 + first]);
        let mut column = if lane / 2 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        };
        if let Some(offsets) = offsets {
            column = _mm512_add_ps(column, _mm512_set1_ps(*offsets.add(c)));
        }
        _mm512_storeu_ps(out.add(c * out_stride), column);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::spread_f32;

    /// Against the definition on whole blocks, partial blocks on either side and both, with
    /// and without offsets.
    #[test]
    fn transposes_match_the_definition() {
        for (rows, cols) in [(16, 16), (16, 100), (64, 32), (56, 48), (7, 16), (33, 21)] {
            let from = spread_f32(rows * cols, 4);
            let offsets: Vec<f32> = (0..cols).map(|c| c as f32 * 0.5 - 3.0).collect();
            for offsets in [None, Some(offsets.as_slice())] {
                let mut out = vec![f32::NAN; rows * cols];
                transpose(&from, rows, cols, &mut out, offsets);
                for r in 0..rows {
                    for c in 0..cols {
                        let want = from[r * cols + c] + offsets.map_or(0.0, |o| o[c]);
                        assert_eq!(out[c * rows + r], want, "{rows}×{cols} [{r}, {c}]");
                    }
                }
            }
        }
    }
}
