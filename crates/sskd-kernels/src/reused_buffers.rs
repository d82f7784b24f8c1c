//! `f32` buffers kept between calls for the kernels' scratch space (packed weights, interleaved
//! inputs, per-block and partial sums): a kernel writes every element of such a buffer before
//! it reads it, so a buffer kept from an earlier call serves as it is, neither zero-filled nor
//! handed back to the allocator (each a pass over memory, with page faults for fresh pages).
//!
//! In this crate's tests a buffer is filled with NaN before each use, so that an element a
//! kernel reads before writing shows in its results.

use std::sync::{Mutex, PoisonError};

use crate::parallel_chunks::zeroed_vec;

/// The buffers kept between calls.
static KEPT: Mutex<Kept> = Mutex::new(Kept(Vec::new()));

/// The most buffers kept at once: a kernel holds up to three at a time (a packed weight, an
/// interleaved input and the sums); the rest serve calls of other shapes.
const KEPT_BUFFERS: usize = 6;

/// Runs `work` on a buffer of `len` elements whose values are unspecified (what an earlier call
/// left there): `work` must write each element before it reads it.
pub(crate) fn with_reused_buffer<R>(len: usize, work: impl FnOnce(&mut [f32]) -> R) -> R {
    let kept = KEPT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(len);
    let mut buffer = kept.unwrap_or_else(|| zeroed_vec(len));
    #[cfg(test)]
    buffer[..len].fill(f32::NAN);
    let result = work(&mut buffer[..len]);
    KEPT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keep(buffer);
    result
}

/// Buffers not in use, at most [`KEPT_BUFFERS`].
struct Kept(Vec<Vec<f32>>);

impl Kept {
    /// The smallest buffer that holds `len` elements, taken out.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let fitting = (0..self.0.len())
            .filter(|&index| self.0[index].len() >= len)
            .min_by_key(|&index| self.0[index].len())?;
        Some(self.0.swap_remove(fitting))
    }

    /// Keeps `buffer`, dropping the smallest past [`KEPT_BUFFERS`].
    fn keep(&mut self, buffer: Vec<f32>) {
        self.0.push(buffer);
        if self.0.len() > KEPT_BUFFERS {
            let smallest = (0..self.0.len()).min_by_key(|&index| self.0[index].len());
            self.0.swap_remove(smallest.unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_fitting_buffer_is_taken_and_the_smallest_dropped() {
        let mut kept = Kept(Vec::new());
        for len in [40, 10, 30, 20, 50, 60] {
            kept.keep(vec![0.0; len]);
        }
        assert_eq!(kept.take(25).map(|b| b.len()), Some(30));
        assert_eq!(kept.take(61), None);
        kept.keep(vec![0.0; 5]);
        kept.keep(vec![0.0; 70]);
        let mut lens: Vec<usize> = kept.0.iter().map(Vec::len).collect();
        lens.sort_unstable();
        assert_eq!(lens, [10, 20, 40, 50, 60, 70]);
    }

    /// A buffer in use is not handed out again, and each use starts from NaN (in tests).
    #[test]
    fn nested_buffers_are_distinct() {
        with_reused_buffer(1 << 16, |outer| {
            assert!(outer.iter().all(|v| v.is_nan()));
            outer.fill(1.0);
            with_reused_buffer(1 << 16, |inner| {
                assert!(inner.iter().all(|v| v.is_nan()));
                inner.fill(2.0);
            });
            assert!(outer.iter().all(|&v| v == 1.0));
        });
    }
}
