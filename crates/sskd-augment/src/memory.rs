//! Host buffers of the loader: batches backed by transparent huge pages where the system
//! allows it ([`zeroed_floats`]), and sample buffers reused from one batch to the next
//! ([`pixel_buffer`]).
//!
//! A batch of 64 four-rotation 224×224 samples is 154 MB of floats, allocated fresh for each
//! batch (it becomes the batch tensor). Memory fresh from the system is zeroed a 4 KB page at
//! a time on first write, one page fault each: 600 per sample, as much time as normalising it.
//! Asking for 2 MB pages (`madvise(MADV_HUGEPAGE)`, what PyTorch's `THP_MEM_ALLOC_ENABLE`
//! does) makes that about 500 times fewer faults. On systems without it the buffer is a
//! plain one.

/// 2 MB: the huge page size of x86-64 and most arm64 kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// `len` zeroed floats, backed by huge pages where the system allows it (Linux with
/// transparent huge pages in `madvise` or `always` mode).
pub fn zeroed_floats(len: usize) -> Vec<f32> {
    let buffer = vec![0f32; len];
    #[cfg(target_os = "linux")]
    advise_huge_pages(&buffer);
    buffer
}

/// Asks the kernel to back the whole 2 MB pages inside `buffer` with huge pages; it may
/// decline, which changes nothing but the speed.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buffer: &[f32]) {
    let (start, end) = (
        buffer.as_ptr() as usize,
        buffer.as_ptr() as usize + std::mem::size_of_val(buffer),
    );
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = end - end % HUGE_PAGE;
    if last > first {
        // SAFETY: the range lies inside `buffer`'s allocation, which outlives the call;
        // MADV_HUGEPAGE is advice about how to back the pages and leaves their contents (zero,
        // not yet touched) and their validity unchanged.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

/// Sample buffers whose pixels are already in a batch, kept for the next samples: a
/// 224×224 four-rotation sample is 2.4 MB, and memory fresh from the system costs a page fault
/// per 4 KB on first write — as much time as the normalisation that fills it.
static SPARE_BUFFERS: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// Spare buffers kept at most (a batch of 256 samples' worth).
const MAX_SPARE_BUFFERS: usize = 256;

/// A buffer of `len` floats for a sample's pixels, reused from samples the loader has put in
/// batches when one is spare: its values are unspecified (left from an earlier sample), so
/// the caller writes every one of them.
pub fn pixel_buffer(len: usize) -> Vec<f32> {
    let spare = SPARE_BUFFERS
        .lock()
        .map(|mut spare| spare.pop())
        .unwrap_or(None);
    // A spare too small would be copied on growing: a fresh one costs less.
    let mut buffer = spare.filter(|b| b.capacity() >= len).unwrap_or_default();
    buffer.resize(len, 0.0);
    buffer
}

/// Keeps `buffer` for [`pixel_buffer`] (up to [`MAX_SPARE_BUFFERS`]): the loader hands back
/// each sample's buffer once its pixels are in the batch.
pub(crate) fn recycle(buffer: Vec<f32>) {
    if let Ok(mut spare) = SPARE_BUFFERS.lock() {
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_buffers_are_zeroed_and_writable() {
        for len in [0, 1, 1000, 3 << 20] {
            let mut buffer = zeroed_floats(len);
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&x| x == 0.0));
            buffer.iter_mut().for_each(|x| *x = 1.0);
            assert_eq!(buffer.iter().sum::<f32>(), len as f32);
        }
    }

    #[test]
    fn recycled_buffers_come_back_at_the_asked_length() {
        for (recycled, asked) in [(5000, 4000), (5000, 6000), (10, 0), (0, 10)] {
            recycle(vec![7.0; recycled]);
            assert_eq!(pixel_buffer(asked).len(), asked, "{recycled} then {asked}");
        }
    }
}
