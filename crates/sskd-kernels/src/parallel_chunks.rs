//! The loop every kernel of this crate runs its output through: fixed-size chunks (images,
//! planes, rows, per-thread partial sums), each written by one call, on rayon's threads or in
//! order; and the zero-filled buffers they start from.

use rayon::prelude::*;

/// Elements below which an element-wise pass stays on the calling thread.
pub(crate) const PARALLEL_ELEMENTS: usize = 1 << 15;

/// The fewest elements one thread takes at a time in an element-wise pass.
pub(crate) const MIN_SLICE: usize = 1 << 13;

/// The length of the slices an element-wise pass over `len` elements cuts them into: one per
/// thread, at least [`MIN_SLICE`] long.
pub(crate) fn slice_len(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads()).max(MIN_SLICE)
}

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
        data.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(index, chunk)| work(index, chunk));
        return;
    }
    for (index, chunk) in data.chunks_mut(chunk_len).enumerate() {
        work(index, chunk);
    }
}

/// A vector of `len` zeros, written on all cores when large (a fresh buffer reused from the
/// heap is otherwise zeroed by one `memset` on the calling thread while the others wait).
pub(crate) fn zeroed_vec<T: bytemuck::Zeroable + Copy + Send + Sync>(len: usize) -> Vec<T> {
    if len < PARALLEL_ELEMENTS {
        return vec![T::zeroed(); len];
    }
    let mut out = Vec::with_capacity(len);
    out.par_extend(rayon::iter::repeat_n(T::zeroed(), len).with_min_len(MIN_SLICE));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_vectors_hold_zeros_on_both_paths() {
        for len in [0, 5, PARALLEL_ELEMENTS + 77] {
            let values = zeroed_vec::<f64>(len);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for parallel in [false, true] {
            let mut data = vec![0usize; 10];
            for_each_chunk(&mut data, 3, parallel, |index, chunk| {
                chunk.iter_mut().for_each(|v| *v += index + 1)
            });
            assert_eq!(data, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
        }
    }
}
