//! Deterministic test inputs shared by the kernels' unit tests.

/// `len` values spread over `[-2, 2.8)` without a pattern a kernel could exploit (a stride
/// coprime with the period 1,009), different for each `seed`.
pub(crate) fn spread(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 211.0 - 2.0)
        .collect()
}
