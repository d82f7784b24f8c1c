//! The loop every kernel of this crate runs its output through: fixed-size chunks (images,
//! planes, rows, per-thread partial sums), each written by one call, on rayon's threads or in
//! order.

/// Runs `work(index, chunk)` on each `chunk_len`-sized chunk of `data`, in parallel when
/// `parallel`.
pub(crate) fn for_each_chunk<T, F>(data: &mut [T], chunk_len: usize, parallel: bool, work: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    if chunk_len == 0 {
        return;
    }
    if parallel {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(index, chunk)| work(index, chunk));
        return;
    }
    for (index, chunk) in data.chunks_mut(chunk_len).enumerate() {
        work(index, chunk);
    }
}
