//! The loop every kernel of this crate runs its output through: fixed-size chunks (images,
//! planes, rows, per-thread partial sums), each written by one call, on rayon's threads or in
//! order; the fresh vectors made that way, each chunk zero-filled by the thread that writes it;
//! and zero-filled buffers.

use std::mem::MaybeUninit;

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

/// A vector of `len` elements made chunk by chunk: each `chunk_len`-sized chunk (the last may
/// be shorter) is zero-filled and then handed to `work(index, chunk)`, on rayon's threads when
/// `parallel`. Each chunk is first touched by the thread that writes it, right before it writes
/// it, so its memory passes through that core's cache once, instead of a pass zero-filling the
/// whole buffer first and a second pass reading it back from memory.
pub(crate) fn vec_by_chunks<T, F>(len: usize, chunk_len: usize, parallel: bool, work: F) -> Vec<T>
where
    T: bytemuck::Zeroable + Copy + Send + Sync,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    vec_by_chunks_with(
        len,
        chunk_len,
        parallel,
        || (),
        |_, index, chunk| work(index, chunk),
    )
}

/// [`vec_by_chunks`] with a scratch value per thread: `work(scratch, index, chunk)`, `scratch`
/// made by `init` once for each thread's run of chunks.
pub(crate) fn vec_by_chunks_with<T, S, I, F>(
    len: usize,
    chunk_len: usize,
    parallel: bool,
    init: I,
    work: F,
) -> Vec<T>
where
    T: bytemuck::Zeroable + Copy + Send + Sync,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [T]) + Sync + Send,
{
    if chunk_len == 0 || len == 0 {
        return vec![T::zeroed(); len];
    }
    let mut out = Vec::with_capacity(len);
    let fresh = &mut out.spare_capacity_mut()[..len];
    if parallel {
        fresh
            .par_chunks_mut(chunk_len)
            .enumerate()
            .for_each_init(&init, |scratch, (index, chunk)| {
                work(scratch, index, zeroed_in_place(chunk))
            });
    } else {
        let mut scratch = init();
        for (index, chunk) in fresh.chunks_mut(chunk_len).enumerate() {
            work(&mut scratch, index, zeroed_in_place(chunk));
        }
    }
    // SAFETY: the chunks above cover the first `len` elements, and each was zero-filled by
    // `zeroed_in_place` (a panic in `work` unwinds past this line, and the vector is dropped
    // with no element).
    unsafe { out.set_len(len) };
    out
}

/// `chunk` zero-filled, as the initialised slice it then is.
fn zeroed_in_place<T: bytemuck::Zeroable + Copy>(chunk: &mut [MaybeUninit<T>]) -> &mut [T] {
    chunk.fill(MaybeUninit::new(T::zeroed()));
    // SAFETY: every element was written just above, and `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
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
    fn fresh_vectors_hand_each_chunk_zeroed_and_once_to_work() {
        for parallel in [false, true] {
            for (len, chunk_len) in [
                (10, 3),
                (9, 3),
                (0, 4),
                (5, 0),
                (PARALLEL_ELEMENTS + 5, 1000),
            ] {
                let values = vec_by_chunks::<u64, _>(len, chunk_len, parallel, |index, chunk| {
                    assert!(chunk.iter().all(|&v| v == 0), "chunk {index} not zeroed");
                    assert!(chunk.len() == chunk_len || chunk.len() == len % chunk_len);
                    chunk.iter_mut().for_each(|v| *v += index as u64 + 1);
                });
                let expected: Vec<u64> = match chunk_len {
                    0 => vec![0; len],
                    _ => (0..len).map(|i| (i / chunk_len) as u64 + 1).collect(),
                };
                assert_eq!(values, expected, "len {len}, chunks of {chunk_len}");
            }
        }
    }

    #[test]
    fn fresh_vectors_give_each_thread_its_own_scratch() {
        for parallel in [false, true] {
            let values = vec_by_chunks_with(
                PARALLEL_ELEMENTS,
                64,
                parallel,
                Vec::new,
                |seen: &mut Vec<usize>, index, chunk: &mut [f64]| {
                    assert!(seen.iter().all(|&earlier| earlier != index));
                    seen.push(index);
                    chunk.fill(seen.len() as f64);
                },
            );
            assert!(values.iter().all(|&v| v >= 1.0));
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
