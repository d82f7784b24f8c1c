//! Portable loops compiled for AVX-512 where the CPU has it.
//!
//! This crate is built for the baseline x86-64 target (SSE2), so its portable loops run two
//! `f64`s or four `f32`s per instruction. [`with_avx512`] runs a closure through a function
//! compiled with AVX-512F enabled: the closure and what it inlines (the callers mark their
//! loops `#[inline(always)]`) are compiled again for 512-bit vectors, eight `f64`s or sixteen
//! `f32`s per instruction. The arithmetic is the code's own, in its own order (the compiler does
//! not reassociate floating-point sums), so both versions give the same bits.

/// `work()`, compiled for AVX-512F when the CPU has it.
#[inline(always)]
pub(crate) fn with_avx512<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if crate::nt_product::available() {
        // SAFETY: the CPU has AVX-512F (checked on the line above).
        return unsafe { run_with_avx512(work) };
    }
    work()
}

/// `work()`, with AVX-512F enabled for what is inlined into it.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_with_avx512<R>(work: impl FnOnce() -> R) -> R {
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sums, in the same order, with and without the wider vectors.
    #[test]
    fn the_wide_loop_gives_the_same_bits() {
        let values: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let sum = || {
            let mut lanes = [0.0f64; 8];
            for chunk in values.chunks_exact(8) {
                for (lane, &v) in lanes.iter_mut().zip(chunk) {
                    *lane += f64::from(v) * f64::from(v);
                }
            }
            lanes
        };
        assert_eq!(with_avx512(sum), sum());
    }
}
