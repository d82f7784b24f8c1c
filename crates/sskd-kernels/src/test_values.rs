//! Deterministic test inputs shared by the kernels' unit tests.

/// `len` values spread over `[-2, 2.8)` without a pattern a kernel could exploit (a stride
/// coprime with the period 1,009), different for each `seed`.
pub(crate) fn spread(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 211.0 - 2.0)
        .collect()
}

/// [`spread`] in `f32`.
pub(crate) fn spread_f32(len: usize, seed: usize) -> Vec<f32> {
    spread(len, seed).into_iter().map(|v| v as f32).collect()
}

/// `work` run on a pool of `threads` rayon threads of its own (fresh threads: empty
/// thread-local scratch).
pub(crate) fn on_threads<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(work)
}
