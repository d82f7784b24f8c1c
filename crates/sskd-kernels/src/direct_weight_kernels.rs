//! The weight gradient of dense `f32` convolutions as a direct AVX-512 kernel with the output
//! channels in the vector lanes: no im2col matrix, no GEMM packing.
//!
//! `dW[o, c, kh, kw] = Σ_{b, oh, ow} dY[b, o, oh, ow] · x_pad[b, c, oh·sh + kh·dh, ow·sw + kw]`.
//! For each image and block of 16 output channels, `dY` is laid out pixel-major once
//! (`[OH, OW, 16]`, by 16×16 transposes in registers, into the thread's scratch); each thread
//! keeps zero-padded copies of the images of the slice of the batch it works on (as
//! [`direct_kernels`](crate::direct_kernels) pads an image) across its units. A tile is 8
//! neighbouring output pixels of one row (or two rows of 4 on maps 4 pixels wide): their 8
//! vectors of `dY` stay in registers while each input value of a kernel row
//! is broadcast once and multiplied into the sums of the `KW` taps that read it, for `CI` input
//! channels at a time (`CI · KW` accumulators of 16 output channels): at 3×3 and stride 1, 8
//! loads and 40 broadcasts per 96 fused multiply-adds. Rows of tiles are taken in bands whose
//! `dY` stays in L1; each band adds to the sums kept in a partial gradient laid out
//! `[O/16, C, KH·KW, 16]`.
//!
//! The batch is split into a fixed number of slices ([`partial_count`], from the shapes alone),
//! each summed into its own partial gradient over its images in order, and the partials added
//! in slice order: every element is the same sum whichever thread computes a block, for any
//! thread count.
//!
//! Taken ([`applies`]) in `f32` on an AVX-512 CPU for ungrouped convolutions with a multiple of
//! 16 output channels, kernels 3, 5 or 7 wide at unit column dilation, a row stride of 1 or 2
//! and rows of a multiple of 8 output pixels (or of 4, in an even number of rows, at stride 1);
//! im2col and GEMM otherwise. Measured against them
//! in docs/performance.md ("Direct weight gradients").

use core::sync::atomic::{AtomicU64, Ordering};

use crate::conv_geometry::Conv2dGeometry;
use crate::direct_kernels::{
    blocks_per_unit, pad_planes, padded_plane, padded_width, reads_image, run_where, LANES,
    TILE_PIXELS,
};
use crate::nt_product;
use crate::parallel_chunks::{for_each_chunk, zeroed_vec};
use crate::reused_buffers::with_reused_buffer;
use crate::transpose::transpose;

/// Output pixels a partial gradient sums at the least: fewer partials where the gradient is
/// large against the batch's pixels (adding the partials costs one pass over each).
const PIXELS_PER_PARTIAL: usize = 2048;
/// The most partial gradients one call sums into.
const MAX_PARTIALS: usize = 16;
/// Output pixels per band of tile rows: a band's `dY` (`16 · 4` bytes a pixel) stays in L1.
const BAND_PIXELS: usize = 256;
/// The fewest units (a slice's block of 16 output channels) a gradient must have to take the
/// kernel: fewer leave a core idle where gemm's parallel loops would not.
const MIN_UNITS: usize = 4;

/// Whether [`weight_grad`] computes this convolution's weight gradient (an `f32` one).
pub(crate) fn applies(geo: &Conv2dGeometry) -> bool {
    nt_product::available()
        && geo.groups == 1
        && geo.c_out.is_multiple_of(LANES)
        && geo.dilation[1] == 1
        && matches!(geo.k_w, 3 | 5 | 7)
        && matches!(geo.stride[1], 1 | 2)
        && (geo.out_w.is_multiple_of(TILE_PIXELS) || takes_two_rows(geo))
        && geo.batch * geo.out_h * geo.c_in > 0
        && partial_count(geo) * geo.c_out / LANES >= MIN_UNITS
}

/// Whether a tile holds two output rows of 4 pixels (maps 4 pixels wide with an even number
/// of rows, at row stride 1) instead of 8 pixels of one row.
fn takes_two_rows(geo: &Conv2dGeometry) -> bool {
    geo.out_w == 4 && geo.out_h.is_multiple_of(2) && geo.stride[1] == 1
}

/// Where tiles of `row_pixels` pixels a row (8, or 4 for two rows a tile) lie in a block's
/// output: `(tiles a row, output rows a tile)`.
fn tile_layout(geo: &Conv2dGeometry, row_pixels: usize) -> (usize, usize) {
    (geo.out_w.div_ceil(row_pixels), TILE_PIXELS / row_pixels)
}

/// Partial gradients the batch is split into: one per [`PIXELS_PER_PARTIAL`] output pixels,
/// at most one per image and [`MAX_PARTIALS`] (the shapes alone decide, not the thread count).
fn partial_count(geo: &Conv2dGeometry) -> usize {
    (geo.batch * geo.out_plane() / PIXELS_PER_PARTIAL).clamp(1, MAX_PARTIALS.min(geo.batch.max(1)))
}

/// `dw [O, C, KH, KW]` from the input `x [B, C, H, W]` and `dy [B, O, OH, OW]`.
///
/// # Panics
/// If [`applies`] does not hold for `geo`.
pub(crate) fn weight_grad(geo: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(
        applies(geo),
        "direct conv2d weight gradient: unsupported geometry {geo:?}"
    );
    let (block_len, partials) = (geo.col_rows() * LANES, partial_count(geo));
    with_reused_buffer(partials * geo.c_out / LANES * block_len, |sums| {
        partial_sums(geo, x, dy, partials, sums);
        add_partials(geo, sums, partials)
    })
}

/// The partial gradients of the slices of the batch (`sums`, `[partials][O/16, C, KH·KW,
/// 16]`): each unit one slice's run of blocks of 16 output channels, every element written.
fn partial_sums(geo: &Conv2dGeometry, x: &[f32], dy: &[f32], partials: usize, sums: &mut [f32]) {
    let blocks = geo.c_out / LANES;
    let block_len = geo.col_rows() * LANES;
    let blocks_per_unit = blocks_per_unit(partials, blocks);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    for_each_chunk(
        sums,
        blocks_per_unit * block_len,
        true,
        |index, unit_sums| {
            let first_block = index * blocks_per_unit % blocks;
            let partial = index * blocks_per_unit / blocks;
            let images = partial * geo.batch / partials..(partial + 1) * geo.batch / partials;
            let x_slice = &x[images.start * geo.in_image()..images.end * geo.in_image()];
            with_padded_slice(geo, (call, partial), x_slice, |padded, dy_pixels| {
                let padded_image = geo.c_in * padded_plane(geo);
                for (step, image) in images.enumerate() {
                    let x_padded = &padded[step * padded_image..][..padded_image];
                    for (i, block_sums) in unit_sums.chunks_exact_mut(block_len).enumerate() {
                        let channels = (first_block + i) * LANES..(first_block + i + 1) * LANES;
                        let dy_block = &dy
                            [image * geo.out_image() + channels.start * geo.out_plane()..]
                            [..LANES * geo.out_plane()];
                        transpose(dy_block, LANES, geo.out_plane(), dy_pixels, None);
                        let block = GradientBlock {
                            geo,
                            x_padded,
                            dy_pixels,
                        };
                        block.add_to(block_sums, step > 0);
                    }
                }
            });
        },
    );
}

/// Calls of [`weight_grad`] so far: the key of the padded slices a thread keeps.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// A thread's padded copy of one slice of the batch and its pixel-major `dY` block.
#[derive(Default)]
struct SliceScratch {
    /// The call and slice the padded copy holds.
    key: Option<(u64, usize)>,
    /// The slice's images, each `[C, H + 2·ph, W + 2·pw]`, then zeros.
    padded: Vec<f32>,
    /// One image's block of `dY`, `[OH, OW, 16]`.
    dy_pixels: Vec<f32>,
}

std::thread_local! {
    /// Each thread's [`SliceScratch`], kept between units and calls: the units of one slice
    /// that a thread takes one after another (rayon hands each thread a run of neighbouring
    /// units) pad its images once.
    static SLICE: core::cell::RefCell<SliceScratch> =
        core::cell::RefCell::new(SliceScratch::default());
}

impl SliceScratch {
    /// Makes `padded` the padded copy of `x_slice` for `key` (unless it is already) and
    /// `dy_pixels` one block long.
    fn hold(&mut self, geo: &Conv2dGeometry, key: (u64, usize), x_slice: &[f32]) {
        let dy_len = geo.out_plane() * LANES;
        if self.dy_pixels.len() < dy_len {
            self.dy_pixels.resize(dy_len, 0.0);
        }
        if self.key == Some(key) {
            return;
        }
        let images = x_slice.len() / geo.in_image();
        let len = images * geo.c_in * padded_plane(geo);
        if self.padded.len() < len {
            self.padded.resize(len, 0.0);
        }
        pad_planes(geo, x_slice, &mut self.padded[..len]);
        self.key = Some(key);
    }
}

/// Runs `work` on the padded copy of the slice `key.1` of call `key.0` (`x_slice`, its images)
/// and a buffer for one block of pixel-major `dY`, from this thread's scratch.
fn with_padded_slice<R>(
    geo: &Conv2dGeometry,
    key: (u64, usize),
    x_slice: &[f32],
    work: impl FnOnce(&[f32], &mut [f32]) -> R,
) -> R {
    SLICE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.hold(geo, key, x_slice);
            let SliceScratch {
                padded, dy_pixels, ..
            } = &mut *scratch;
            work(padded, dy_pixels)
        }
        Err(_) => {
            let mut scratch = SliceScratch::default();
            scratch.hold(geo, key, x_slice);
            work(&scratch.padded, &mut scratch.dy_pixels)
        }
    })
}

/// `dw [O, C, KH, KW]`: the partial gradients (`[partials][O/16, C, KH·KW, 16]`) added in
/// slice order, each block of 16 output channels on one thread.
fn add_partials(geo: &Conv2dGeometry, sums: &[f32], partials: usize) -> Vec<f32> {
    let per_channel = geo.col_rows();
    let partial_len = geo.c_out * per_channel;
    let mut dw = zeroed_vec(partial_len);
    for_each_chunk(&mut dw, LANES * per_channel, true, |block, dw_block| {
        let block_start = block * LANES * per_channel;
        for (lane, row) in dw_block.chunks_exact_mut(per_channel).enumerate() {
            for (ct, value) in row.iter_mut().enumerate() {
                let at = block_start + ct * LANES + lane;
                *value = (0..partials).fold(0.0, |sum, p| sum + sums[p * partial_len + at]);
            }
        }
    });
    dw
}

/// One image's block of 16 output channels and what its tiles read.
struct GradientBlock<'a> {
    geo: &'a Conv2dGeometry,
    /// The image's padded copy, `[C, H + 2·ph, W + 2·pw]` (and whatever follows it).
    x_padded: &'a [f32],
    /// The block's `dY`, pixel-major: `[OH, OW, 16]`.
    dy_pixels: &'a [f32],
}

impl GradientBlock<'_> {
    /// Adds the image's terms to `block_sums` (`[C, KH·KW, 16]`), or writes them there when
    /// not `accumulate`.
    fn add_to(&self, block_sums: &mut [f32], accumulate: bool) {
        let geo = self.geo;
        match (geo.stride[1], geo.k_w, takes_two_rows(geo)) {
            (1, 3, true) => self.add_with::<4, 1, 3, 4>(block_sums, accumulate),
            (1, 5, true) => self.add_with::<2, 1, 5, 4>(block_sums, accumulate),
            (1, _, true) => self.add_with::<2, 1, 7, 4>(block_sums, accumulate),
            (1, 3, _) => self.add_with::<4, 1, 3, 8>(block_sums, accumulate),
            (1, 5, _) => self.add_with::<2, 1, 5, 8>(block_sums, accumulate),
            (1, _, _) => self.add_with::<2, 1, 7, 8>(block_sums, accumulate),
            (_, 3, _) => self.add_with::<4, 2, 3, 8>(block_sums, accumulate),
            (_, 5, _) => self.add_with::<2, 2, 5, 8>(block_sums, accumulate),
            _ => self.add_with::<2, 2, 7, 8>(block_sums, accumulate),
        }
    }

    /// [`Self::add_to`] with `CI` input channels at a time (the channels left over in one more
    /// group), row stride `S`, kernel rows `KW` wide and tiles of `R` pixels a row (8, or 4
    /// for two rows). The bands of tile rows go first, then the groups of input channels, then
    /// the kernel rows: a band's `dY` and a group's input rows stay in L1 while every tap's
    /// sums take them.
    fn add_with<const CI: usize, const S: usize, const KW: usize, const R: usize>(
        &self,
        block_sums: &mut [f32],
        accumulate: bool,
    ) {
        let geo = self.geo;
        assert_eq!((geo.k_w, geo.stride[1]), (KW, S), "direct weight gradient");
        let (width, plane) = (padded_width(geo), padded_plane(geo));
        let taps = geo.k_h * geo.k_w;
        let (tiles_per_row, rows_per_tile) = tile_layout(geo, R);
        let pixel_row_step = geo.stride[0] * width;
        let last_read = (geo.c_in - 1) * plane
            + (geo.out_h - 1) * pixel_row_step
            + (geo.k_h - 1) * geo.dilation[0] * width
            + (tiles_per_row * R - 1) * S
            + KW
            - 1;
        assert!(
            last_read < self.x_padded.len()
                && geo.out_w == tiles_per_row * R
                && geo.out_h.is_multiple_of(rows_per_tile)
                && self.dy_pixels.len() >= geo.out_plane() * LANES
                && block_sums.len() >= geo.c_in * taps * LANES,
            "direct weight gradient: buffers too short for {geo:?}"
        );
        let tile_rows = geo.out_h / rows_per_tile;
        let band_rows = (BAND_PIXELS / (tiles_per_row * TILE_PIXELS)).max(1);
        for band_start in (0..tile_rows).step_by(band_rows) {
            let band = Band {
                dy: &self.dy_pixels[band_start * tiles_per_row * TILE_PIXELS * LANES..],
                rows: band_rows.min(tile_rows - band_start),
                tiles_per_row,
                row_step: rows_per_tile * pixel_row_step,
                pixel_row_step,
                plane,
                first_input: band_start * rows_per_tile * pixel_row_step,
                sums_step: taps * LANES,
            };
            // Per kernel row, the band's rows of tiles that read the image: rows of zero
            // padding add nothing (a twelfth of the products at 3×3 on 8×8 maps).
            let kernel_rows: Vec<Band> = (0..geo.k_h)
                .map(|kh| {
                    let live = run_where(band.rows, |r| {
                        let first_pixel_row = (band_start + r) * rows_per_tile;
                        (first_pixel_row..first_pixel_row + rows_per_tile)
                            .any(|oh| reads_image(geo, oh, kh))
                    });
                    band.part(live, kh * geo.dilation[0] * width)
                })
                .collect();
            let accumulate = accumulate || band_start > 0;
            let bands = kernel_rows.as_slice();
            let grouped = geo.c_in / CI * CI;
            for c in (0..grouped).step_by(CI) {
                self.add_channels::<CI, S, KW, R>(bands, c, block_sums, accumulate);
            }
            let (c, sums) = (grouped, &mut *block_sums);
            match geo.c_in - grouped {
                0 => {}
                1 => self.add_channels::<1, S, KW, R>(bands, c, sums, accumulate),
                2 => self.add_channels::<2, S, KW, R>(bands, c, sums, accumulate),
                _ => self.add_channels::<3, S, KW, R>(bands, c, sums, accumulate),
            }
        }
    }

    /// One band's terms for the input channels `c .. c + CI`, every kernel row: `kernel_rows`
    /// holds, per kernel row, the band's rows that read the image there.
    fn add_channels<const CI: usize, const S: usize, const KW: usize, const R: usize>(
        &self,
        kernel_rows: &[Band],
        c: usize,
        block_sums: &mut [f32],
        accumulate: bool,
    ) {
        let geo = self.geo;
        for (kh, band) in kernel_rows.iter().enumerate() {
            let x_start = c * band.plane + band.first_input;
            let sums_start = (c * geo.k_h * geo.k_w + kh * KW) * LANES;
            // SAFETY: `nt_product::available()` holds (checked in `applies`); the furthest read
            // of the input (the band's last tile at the last kernel row and tap of channel
            // `c + CI − 1 < C`) lies at or below the `last_read` that `add_with` checked, the
            // band's `dY` holds `rows · tiles_per_row · 8 · 16` elements (the block's rows from
            // `band_start` on), and the sums of channels `c .. c + CI` at kernel row `kh` lie
            // within `block_sums` (`C · KH·KW · 16`, checked too).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                band_sums::<CI, S, KW, R>(
                    band,
                    self.x_padded.as_ptr().add(x_start),
                    block_sums.as_mut_ptr().add(sums_start),
                    accumulate,
                );
            }
        }
    }
}

/// A band of tile rows of one image's block: its pixel-major `dY` and the strides its tiles
/// read the padded input and write the sums with.
struct Band<'a> {
    /// `[rows, tiles_per_row, 8, 16]` from the band's first row of tiles on.
    dy: &'a [f32],
    /// Rows of tiles.
    rows: usize,
    tiles_per_row: usize,
    /// Elements between the input rows of two neighbouring rows of tiles.
    row_step: usize,
    /// Elements between the input rows of two neighbouring output rows (`sh · padded width`).
    pixel_row_step: usize,
    /// Elements of one padded input plane.
    plane: usize,
    /// Where in a channel's padded plane the band's first row of tiles reads its first input
    /// row.
    first_input: usize,
    /// Elements between two input channels' sums (`KH·KW · 16`).
    sums_step: usize,
}

impl<'a> Band<'a> {
    /// The band's rows `rows` (counted from its first) as a band of their own, reading the
    /// input `row_offset` elements further down (a kernel row's offset).
    fn part(&self, rows: core::ops::Range<usize>, row_offset: usize) -> Band<'a> {
        let tile_row_len = self.tiles_per_row * TILE_PIXELS * LANES;
        Band {
            dy: &self.dy[rows.start * tile_row_len..],
            rows: rows.len(),
            first_input: self.first_input + rows.start * self.row_step + row_offset,
            ..*self
        }
    }
}

/// One band's terms for one kernel row of `CI` input channels: `sums[ci·sums_step + kw·16 +
/// lane] (+)= Σ_{r, t, j} dy[((r·tiles + t)·8 + j)·16 + lane] · x[ci·plane + r·row_step +
/// t·R·S + at(j) + kw]` with `at(j) = ⌊j/R⌋·pixel_row_step + (j mod R)·S` (`x` at the band's
/// first input row of the kernel row in channel `c`'s padded plane); adds to the sums when
/// `accumulate`.
///
/// A tile's 8 vectors of `dY` stay in registers; each input value is broadcast once for the
/// `KW` taps that read it: `8` loads and `CI · (7·S + KW)` broadcasts per `CI · KW · 8` fused
/// multiply-adds. The sums run over the rows, then the tiles, then the pixels.
///
/// # Safety
/// The CPU has AVX-512F; `x` is readable at every `ci·plane + r·row_step + t·R·S + at(j) + kw`,
/// `band.dy` holds the band's tiles and `sums` is writable at every `ci·sums_step + kw·16 +
/// lane`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds, unrolled whole: the accumulators stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn band_sums<const CI: usize, const S: usize, const KW: usize, const R: usize>(
    band: &Band,
    x: *const f32,
    sums: *mut f32,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); KW]; CI];
    if accumulate {
        for (ci, taps) in acc.iter_mut().enumerate() {
            for (kw, tap) in taps.iter_mut().enumerate() {
                *tap = _mm512_loadu_ps(sums.add(ci * band.sums_step + kw * LANES));
            }
        }
    }
    let mut dy = band.dy.as_ptr();
    for r in 0..band.rows {
        let x_row = x.add(r * band.row_step);
        for t in 0..band.tiles_per_row {
            let mut grads = [_mm512_setzero_ps(); TILE_PIXELS];
            for (j, grad) in grads.iter_mut().enumerate() {
                *grad = _mm512_loadu_ps(dy.add(j * LANES));
            }
            dy = dy.add(TILE_PIXELS * LANES);
            let x_tile = x_row.add(t * R * S);
            for ci in 0..CI {
                let x_channel = x_tile.add(ci * band.plane);
                // One broadcast per input column: the loads of `x_channel[at(j) + kw]` that
                // coincide are one load once unrolled.
                for kw in 0..KW {
                    for j in 0..TILE_PIXELS {
                        let at = j / R * band.pixel_row_step + j % R * S;
                        let input = _mm512_set1_ps(*x_channel.add(at + kw));
                        acc[ci][kw] = _mm512_fmadd_ps(grads[j], input, acc[ci][kw]);
                    }
                }
            }
        }
    }
    for (ci, taps) in acc.iter().enumerate() {
        for (kw, &tap) in taps.iter().enumerate() {
            _mm512_storeu_ps(sums.add(ci * band.sums_step + kw * LANES), tap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{on_threads, spread_f32};
    use burn_backend::ops::ConvOptions;

    /// The slices of the batch come from the shapes alone: the bits do not depend on the number
    /// of threads that share the blocks.
    #[test]
    fn the_threads_do_not_change_a_bit() {
        if !nt_product::available() {
            return;
        }
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let geo = Conv2dGeometry::new(&[40, 24, 8, 16], &[32, 24, 3, 3], &options);
        assert!(partial_count(&geo) > 1 && applies(&geo));
        let x = spread_f32(geo.batch * geo.in_image(), 1);
        let dy = spread_f32(geo.batch * geo.out_image(), 3);
        let run = |threads: usize| on_threads(threads, || weight_grad(&geo, &x, &dy));
        assert_eq!(run(1), run(3));
    }

    /// A thread keeps its padded slice between calls: a second call on other values of the
    /// same shape gives what fresh threads give.
    #[test]
    fn a_call_does_not_reuse_the_images_of_the_one_before() {
        if !nt_product::available() {
            return;
        }
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let geo = Conv2dGeometry::new(&[8, 16, 8, 8], &[64, 16, 3, 3], &options);
        let first = spread_f32(geo.batch * geo.in_image(), 5);
        let second = spread_f32(geo.batch * geo.in_image(), 6);
        let dy = spread_f32(geo.batch * geo.out_image(), 7);
        let reused = on_threads(2, || {
            weight_grad(&geo, &first, &dy);
            weight_grad(&geo, &second, &dy)
        });
        let fresh = on_threads(2, || weight_grad(&geo, &second, &dy));
        assert_eq!(reused, fresh);
        assert_ne!(fresh, on_threads(2, || weight_grad(&geo, &first, &dy)));
    }

    /// Small batches of small maps sum into one partial; large ones into up to sixteen, at most
    /// one per image.
    #[test]
    fn the_partials_follow_the_pixels() {
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let count = |batch: usize, side: usize| {
            partial_count(&Conv2dGeometry::new(
                &[batch, 16, side, side],
                &[16, 16, 3, 3],
                &options,
            ))
        };
        assert_eq!(count(16, 8), 1);
        assert_eq!(count(64, 8), 2);
        assert_eq!(count(64, 32), 16);
        assert_eq!(count(3, 64), 3);
    }
}
