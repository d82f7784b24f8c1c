//! rayon's global pool with the program's main thread as its first worker.
//!
//! The kernels split every operation over rayon's global pool. Called from a thread outside the
//! pool (a program's `main`, by default), each parallel operation is handed to the pool's
//! threads while the caller sleeps until they finish: every one of the hundreds of operations
//! of a training step pays a wake-up of the pool and one of the caller, and the caller's core
//! runs nothing meanwhile. With the main thread as worker 0 of the pool
//! (`rayon::ThreadPoolBuilder::use_current_thread`), it splits and runs its operations itself
//! and the pool starts one thread fewer, as OpenMP's threads run PyTorch's operations.
//!
//! Measured in docs/performance.md ("The main thread as one of rayon's workers", 2026-12-06):
//! the step table's batch-16 rows a median 8 % faster, up to 22 %, on the 2-core build VM.

use std::fmt;

/// Why [`adopt_main_thread`] left rayon's global pool as it was.
#[derive(Debug)]
pub enum MainThreadPoolError {
    /// Called from another thread than the process's main thread (its name, if any): a thread
    /// that may end before the process would leave the pool a worker short.
    NotMainThread(Option<String>),
    /// The global pool exists already (something used rayon before the call), or its threads
    /// could not start.
    Build(rayon::ThreadPoolBuildError),
}

impl fmt::Display for MainThreadPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMainThread(name) => write!(
                f,
                "rayon's global pool takes only the main thread as a worker (called from thread {})",
                name.as_deref().unwrap_or("without a name")
            ),
            Self::Build(source) => write!(f, "rayon's global pool was not built: {source}"),
        }
    }
}

impl std::error::Error for MainThreadPoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotMainThread(_) => None,
            Self::Build(source) => Some(source),
        }
    }
}

/// Builds rayon's global pool with the calling thread, the process's main thread, as worker 0
/// and `RAYON_NUM_THREADS` (default: one per core) threads in all. Call it first in `main`,
/// before anything uses rayon; the examples' `--device cpu` runs do.
///
/// The pool's size is unchanged, so every kernel splits its work, and sums its partial results,
/// exactly as without the call: the same bits, faster.
///
/// # Errors
/// [`MainThreadPoolError::NotMainThread`] when called from another thread (a test's, say), and
/// [`MainThreadPoolError::Build`] when the global pool exists already; rayon's pool is then the
/// one it was, and the kernels run as before.
pub fn adopt_main_thread() -> Result<(), MainThreadPoolError> {
    let current = std::thread::current();
    if current.name() != Some("main") {
        return Err(MainThreadPoolError::NotMainThread(
            current.name().map(str::to_owned),
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .map_err(MainThreadPoolError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_thread_is_not_adopted() {
        let error = adopt_main_thread().unwrap_err();
        assert!(
            matches!(error, MainThreadPoolError::NotMainThread(Some(ref name)) if name.contains("a_test_thread_is_not_adopted")),
            "{error}"
        );
        assert!(error.to_string().contains("main thread"), "{error}");
    }
}
