//! Dense convolutions in `f32` as direct AVX-512 kernels with the output channels in the vector
//! lanes: no im2col matrix, no GEMM packing.
//!
//! Each image is copied once into a zero-padded buffer (`[C, H + 2·ph, W + 2·pw]`, the thread's
//! scratch). A tile is `16·NB` output channels by [`TILE_PIXELS`] neighbouring output pixels of
//! one output row, `NB · 8` accumulators of 16 lanes. For each input channel and kernel row it
//! loads the row's `KW · NB` vectors of the packed weight (`[C, KH·KW, 16·NB]` per block of
//! output channels) and broadcasts each input value the row reads once, straight from the
//! padded image, for the `KW` taps that read it (the taps' offsets in a padded plane do not
//! depend on the pixel, so no bounds are tested): at stride 1 and 3×3, 10 broadcasts and 6
//! loads per 48 fused multiply-adds. The input channels are taken in groups whose weights stay
//! in L1, each group adding to every tile's sums; the sums are written to NCHW once. Every
//! output element is the same sum, in the same order (input channels, then taps), whichever
//! thread computes its tile.
//!
//! The input gradient of a stride-1 convolution is the same kernel: `dx = conv(dy, w')` with the
//! weight flipped and its two channel axes swapped, padded by `dilation · (K − 1) − pad`.
//!
//! Taken in `f32` on an AVX-512 CPU ([`applies`]; for an input gradient, to its transposed
//! convolution) for ungrouped convolutions with a multiple of 16 output channels, at least
//! [`MIN_PRODUCT_DEPTH`] multiply-adds per output, a row stride of 1 or 2 and output rows that
//! whole tiles cover with at most 1/7 of their pixels past the row's end (7, 8, 14, 16 …
//! pixels wide, not 4 or 12), and at least [`MIN_BLOCKS`] blocks of output channels over the
//! batch; the im2col/GEMM kernels otherwise. Measured against them in docs/performance.md ("Direct convolutions").

use rayon::prelude::*;

use crate::conv_geometry::{thread_count, Conv2dGeometry};
use crate::nt_product;
use crate::parallel_chunks::vec_by_chunks;
use crate::reused_buffers::with_reused_buffer;
use crate::transpose::transpose;

/// Lanes of one AVX-512 `f32` vector: output channels per vector.
pub(crate) const LANES: usize = 16;
/// Output pixels of one row per tile.
pub(crate) const TILE_PIXELS: usize = 8;
/// The fewest multiply-adds per output element (`C · KH · KW`) the direct kernels take: below
/// it, writing each tile to NCHW (a transpose) outweighs the sums.
pub(crate) const MIN_PRODUCT_DEPTH: usize = 64;

/// Whether [`forward_packed`] computes this convolution (an `f32` one: the caller checks the
/// type).
pub(crate) fn applies(geo: &Conv2dGeometry) -> bool {
    nt_product::available()
        && geo.groups == 1
        && geo.c_out.is_multiple_of(LANES)
        && geo.c_in * geo.k_h * geo.k_w >= MIN_PRODUCT_DEPTH
        && matches!(geo.stride[1], 1 | 2)
        && geo.batch * geo.out_plane() > 0
        && rows_fill_tiles(geo)
        && geo.batch * geo.c_out / (channel_vectors(geo) * LANES) >= MIN_BLOCKS
}

/// Whether whole tiles cover the output rows with at most 1/7 of their pixels past the row's
/// end (rows 7, 8, 14, 16 … pixels wide, not 4 or 12).
pub(crate) fn rows_fill_tiles(geo: &Conv2dGeometry) -> bool {
    geo.out_w.div_ceil(TILE_PIXELS) * TILE_PIXELS * 7 <= geo.out_w * 8
}

/// The fewest blocks (an image's `16·NB` output channels) a convolution must have to take the
/// direct kernels, which spread whole blocks over the threads (one image of a few channels
/// is left to gemm's parallel loops). A fixed count, so the kernel a convolution takes does
/// not depend on the thread count.
pub(crate) const MIN_BLOCKS: usize = 4;

/// Vectors of output channels per block (`NB`): two where the channels pair up, else one.
pub(crate) fn channel_vectors(geo: &Conv2dGeometry) -> usize {
    if geo.c_out.is_multiple_of(2 * LANES) {
        2
    } else {
        1
    }
}

/// `out [B, O, OH, OW] = conv2d(x [B, C, H, W], w [O, C, KH, KW]) + bias [O]` with the weight
/// packed for these tiles ([`with_packed_weight`]); the input gradient of a stride-1
/// convolution is this pass of [`Conv2dGeometry::transposed`] on the flipped weight
/// ([`Packing::InputGrad`]).
///
/// # Panics
/// If [`applies`] does not hold for `geo`.
pub(crate) fn forward_packed(
    geo: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(applies(geo), "direct conv2d: unsupported geometry {geo:?}");
    let block = channel_vectors(geo);
    let block_len = block * LANES * geo.out_plane();
    let blocks_per_image = geo.c_out / (block * LANES);
    let blocks_per_unit = blocks_per_unit(geo.batch, blocks_per_image);
    // A unit is one image's run of blocks: its padded copy is made once for all of them.
    vec_by_chunks(
        geo.batch * geo.out_image(),
        blocks_per_unit * block_len,
        true,
        |index, out_unit| {
            let first_block = index * blocks_per_unit;
            let image = first_block / blocks_per_image;
            let x_image = &x[image * geo.in_image()..][..geo.in_image()];
            with_padded_copy(geo, x_image, block * LANES, |x_padded, partial| {
                for (i, out_block) in out_unit.chunks_exact_mut(block_len).enumerate() {
                    let co_block = (first_block + i) % blocks_per_image;
                    let output = OutputBlock {
                        geo,
                        x_padded,
                        weights: &packed[co_block * geo.col_rows() * block * LANES..],
                        bias: bias.map(|b| &b[co_block * block * LANES..][..block * LANES]),
                    };
                    match block {
                        2 => output.write_with_stride::<2>(out_block, partial),
                        _ => output.write_with_stride::<1>(out_block, partial),
                    }
                }
            });
        },
    )
}

/// Blocks per unit of work when each of `groups` groups (images, slices of the batch) holds
/// `blocks` blocks of output channels: the most (a divisor of `blocks`, so a unit stays in one
/// group) that still leaves [`UNITS_PER_THREAD`] units for each thread. Only the split of the
/// work depends on the thread count, not any sum.
pub(crate) fn blocks_per_unit(groups: usize, blocks: usize) -> usize {
    let wanted_units = UNITS_PER_THREAD * thread_count();
    (1..=blocks)
        .rev()
        .find(|&d| blocks.is_multiple_of(d) && groups * blocks / d >= wanted_units)
        .unwrap_or(1)
}

/// Units of work per thread the direct kernels aim for (whole groups where there are enough).
const UNITS_PER_THREAD: usize = 4;

/// What a packed weight serves: the convolution's forward pass, or its input gradient as the
/// forward pass of [`Conv2dGeometry::transposed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packing {
    Forward,
    InputGrad,
}

/// `work(tiles, packed)` with the weight packed for the tiles of the forward pass of `tiles`:
/// `geo` itself ([`pack_weight`]) or, for its input gradient, [`Conv2dGeometry::transposed`]
/// ([`pack_flipped_weight`]); the packed weight in a reused buffer.
pub(crate) fn with_packed_weight<R>(
    geo: &Conv2dGeometry,
    weight: &[f32],
    packing: Packing,
    work: impl FnOnce(&Conv2dGeometry, &[f32]) -> R,
) -> R {
    let tiles = match packing {
        Packing::Forward => *geo,
        Packing::InputGrad => geo.transposed(),
    };
    let lanes = channel_vectors(&tiles) * LANES;
    with_reused_buffer(weight.len(), |packed| {
        match packing {
            Packing::Forward => pack_weight(geo, weight, lanes, packed),
            Packing::InputGrad => pack_flipped_weight(geo, weight, lanes, packed),
        }
        work(&tiles, packed)
    })
}

/// Writes the weight as the tiles read it into `packed`: for each block of `block` output
/// channels, `[C, KH·KW, block]` (a tap's weights for the block's channels side by side), each
/// block the transpose of its rows of the weight.
pub(crate) fn pack_weight(geo: &Conv2dGeometry, weight: &[f32], block: usize, packed: &mut [f32]) {
    let per_channel = geo.col_rows();
    packed
        .par_chunks_mut(per_channel * block)
        .zip(weight.par_chunks(per_channel * block))
        .for_each(|(packed_block, rows)| transpose(rows, block, per_channel, packed_block, None));
}

/// [`pack_weight`] of [`Conv2dGeometry::transposed`] (whose output channels are this
/// convolution's input channels) with [`flipped_weight`](crate::conv_geometry::flipped_weight),
/// in one pass over this convolution's weight `w [O, C, KH, KW]`: for each block of `block`
/// input channels, `packed[o, t, lane] = w[o, block·cb + lane, KH·KW − 1 − t]`.
pub(crate) fn pack_flipped_weight(
    geo: &Conv2dGeometry,
    weight: &[f32],
    block: usize,
    packed: &mut [f32],
) {
    let taps = geo.k_h * geo.k_w;
    packed
        .par_chunks_mut(geo.c_out * taps * block)
        .enumerate()
        .for_each(|(cb, packed_block)| {
            for (o, to) in packed_block.chunks_exact_mut(taps * block).enumerate() {
                let from = &weight[(o * geo.c_in + cb * block) * taps..][..block * taps];
                for (lane, lane_taps) in from.chunks_exact(taps).enumerate() {
                    for (t, &w) in lane_taps.iter().rev().enumerate() {
                        to[t * block + lane] = w;
                    }
                }
            }
        });
}

std::thread_local! {
    /// Each thread's padded image and tile sums, kept between calls (rayon's workers live as
    /// long as the process).
    static PADDED: core::cell::RefCell<Vec<f32>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// The row length of an image's zero-padded copy, `W + 2·pw`.
pub(crate) fn padded_width(geo: &Conv2dGeometry) -> usize {
    geo.in_w + 2 * geo.padding[1]
}

/// One plane of an image's zero-padded copy, `(H + 2·ph) · (W + 2·pw)`.
pub(crate) fn padded_plane(geo: &Conv2dGeometry) -> usize {
    (geo.in_h + 2 * geo.padding[0]) * padded_width(geo)
}

/// Elements past the last padded plane a tile may read (its pixels beyond the row's end, at a
/// row stride of up to 2).
const PADDED_SLACK: usize = 2 * TILE_PIXELS;

/// Runs `work` on the zero-padded copy of `image` (`[C, H, W]` → `[C, H + 2·ph, W + 2·pw]`,
/// then [`PADDED_SLACK`] zeros) and a buffer for the tiles' sums of `lanes` output channels,
/// both in this thread's scratch.
fn with_padded_copy<R>(
    geo: &Conv2dGeometry,
    image: &[f32],
    lanes: usize,
    work: impl FnOnce(&[f32], &mut [f32]) -> R,
) -> R {
    let len = geo.c_in * padded_plane(geo) + PADDED_SLACK;
    let sums_len = geo.out_h * geo.out_w.div_ceil(TILE_PIXELS) * TILE_PIXELS * lanes;
    let fill = |buffer: &mut [f32]| pad_planes(geo, image, buffer);
    PADDED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len + sums_len {
                buffer.resize(len + sums_len, 0.0);
            }
            let (padded, sums) = buffer[..len + sums_len].split_at_mut(len);
            fill(padded);
            work(padded, sums)
        }
        Err(_) => {
            let mut buffer = vec![0.0; len + sums_len];
            let (padded, sums) = buffer.split_at_mut(len);
            fill(padded);
            work(padded, sums)
        }
    })
}

/// Writes the planes of `planes` (`[N, H, W]`: the channels of one or more images) zero-padded
/// into `out` (`[N, H + 2·ph, W + 2·pw]`) and zeros over the rest of `out`, each element
/// written once.
pub(crate) fn pad_planes(geo: &Conv2dGeometry, planes: &[f32], out: &mut [f32]) {
    if geo.in_plane() == 0 {
        out.fill(0.0);
        return;
    }
    let (width, [ph, pw]) = (padded_width(geo), geo.padding);
    let count = planes.len() / geo.in_plane();
    let (padded, rest) = out.split_at_mut(count * padded_plane(geo));
    for (plane, to) in planes
        .chunks_exact(geo.in_plane())
        .zip(padded.chunks_exact_mut(padded_plane(geo)))
    {
        let (top, below) = to.split_at_mut(ph * width);
        top.fill(0.0);
        let (middle, bottom) = below.split_at_mut(geo.in_h * width);
        for (row, to_row) in plane
            .chunks_exact(geo.in_w)
            .zip(middle.chunks_exact_mut(width))
        {
            to_row[..pw].fill(0.0);
            to_row[pw..pw + geo.in_w].copy_from_slice(row);
            to_row[pw + geo.in_w..].fill(0.0);
        }
        bottom.fill(0.0);
    }
    rest.fill(0.0);
}

/// One image's block of output channels and what its tiles read.
struct OutputBlock<'a> {
    geo: &'a Conv2dGeometry,
    /// The image's padded copy ([`with_padded_copy`]).
    x_padded: &'a [f32],
    /// The block's packed weight, `[C, KH·KW, 16·NB]`.
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
}

impl OutputBlock<'_> {
    /// [`Self::write`] at this convolution's row stride.
    fn write_with_stride<const NB: usize>(&self, out_block: &mut [f32], partial: &mut [f32]) {
        match self.geo.stride[1] {
            1 => self.write_with_row::<NB, 1>(out_block, partial),
            _ => self.write_with_row::<NB, 2>(out_block, partial),
        }
    }

    /// [`Self::write`] with whole kernel rows at a time where the kernel is 3, 5 or 7 wide at
    /// unit column dilation, a tap at a time otherwise.
    fn write_with_row<const NB: usize, const S: usize>(
        &self,
        out_block: &mut [f32],
        partial: &mut [f32],
    ) {
        match (self.geo.dilation[1], self.geo.k_w) {
            (1, 3) => self.write::<NB, S, 3>(out_block, partial),
            (1, 5) => self.write::<NB, S, 5>(out_block, partial),
            (1, 7) => self.write::<NB, S, 7>(out_block, partial),
            _ => self.write::<NB, S, 1>(out_block, partial),
        }
    }

    /// Writes the block (`out_block`: `[16·NB, OH, OW]`); `S` is the row stride. The input
    /// channels are taken in groups whose packed weights fit in L1 ([`WEIGHT_BLOCK_BYTES`]),
    /// each group adding to every tile's sums (`partial`, `[OH, ⌈OW/8⌉, 8, 16·NB]`), which
    /// are then written to NCHW with the bias (by 16×16 transposes where the rows hold whole
    /// tiles).
    fn write<const NB: usize, const S: usize, const KW: usize>(
        &self,
        out_block: &mut [f32],
        partial: &mut [f32],
    ) {
        let geo = self.geo;
        let (width, plane) = (padded_width(geo), padded_plane(geo));
        // Rows of KW taps read together: the kernel rows, or each tap on its own (KW = 1).
        let rows: Vec<isize> = (0..geo.k_h)
            .flat_map(|kh| {
                (0..geo.k_w / KW)
                    .map(move |kw| (kh * geo.dilation[0] * width + kw * geo.dilation[1]) as isize)
            })
            .collect();
        assert_eq!(
            rows.len() * KW,
            geo.k_h * geo.k_w,
            "direct conv2d: kernel rows"
        );
        let tap_weights = geo.k_h * geo.k_w * NB * LANES;
        assert!(
            self.weights.len() >= geo.c_in * tap_weights,
            "direct conv2d: packed weight too short"
        );
        let tiles_per_row = geo.out_w.div_ceil(TILE_PIXELS);
        let tile_len = TILE_PIXELS * NB * LANES;
        let partial = &mut partial[..geo.out_h * tiles_per_row * tile_len];
        let last_read = (geo.c_in - 1) * plane
            + ((geo.out_h - 1) * geo.stride[0]) * width
            + (tiles_per_row * TILE_PIXELS - 1) * S
            + rows.last().copied().unwrap_or(0) as usize
            + KW
            - 1;
        assert!(
            last_read < self.x_padded.len(),
            "direct conv2d: padded image too short"
        );
        let row_weights = KW * NB * LANES;
        let rows_per_kh = rows.len() / geo.k_h;
        // Per output row, the entries of `rows` whose kernel rows read the image rather than
        // its zero padding (rows of zeros add nothing: a twelfth of the products at 3×3 on
        // 8×8 maps, a twenty-fourth on 16×16 ones).
        let live_rows: Vec<core::ops::Range<usize>> = (0..geo.out_h)
            .map(|oh| {
                let live = live_kernel_rows(geo, oh);
                live.start * rows_per_kh..live.end * rows_per_kh
            })
            .collect();
        let group = (WEIGHT_BLOCK_BYTES / (tap_weights * 4)).max(1);
        for first in (0..geo.c_in).step_by(group) {
            let channels = group.min(geo.c_in - first);
            let x_group = &self.x_padded[first * plane..];
            let w_group = &self.weights[first * tap_weights..];
            for (index, tile) in partial.chunks_exact_mut(tile_len).enumerate() {
                let (oh, ow) = (index / tiles_per_row, index % tiles_per_row * TILE_PIXELS);
                let start = oh * geo.stride[0] * width + ow * S;
                let live = live_rows[oh].clone();
                // SAFETY: `nt_product::available()` holds (checked in `applies`); every read
                // of the input lies at or below `last_read` (checked above: the furthest tile
                // at the furthest tap of the last channel), those of the weight within its
                // `c_in · tap_weights` elements (checked above: the live rows start at or
                // after the first), and `tile` holds `TILE_PIXELS · NB · LANES` elements.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let source = TileSource {
                        x: x_group.as_ptr().add(start),
                        plane,
                        w: w_group.as_ptr().add(live.start * row_weights),
                        channel_weights: tap_weights,
                    };
                    tile_sums::<NB, S, KW>(
                        &source,
                        channels,
                        &rows[live.clone()],
                        tile.as_mut_ptr(),
                        first > 0,
                    );
                }
            }
        }
        let out_plane = geo.out_plane();
        if geo.out_w.is_multiple_of(TILE_PIXELS) {
            // Whole tiles: the sums are `[OH·OW, 16·NB]`, the block `[16·NB, OH·OW]`.
            transpose(partial, out_plane, NB * LANES, out_block, self.bias);
            return;
        }
        for (index, tile) in partial.chunks_exact(tile_len).enumerate() {
            let (oh, ow) = (index / tiles_per_row, index % tiles_per_row * TILE_PIXELS);
            let pixels = TILE_PIXELS.min(geo.out_w - ow);
            for lane in 0..NB * LANES {
                let bias = self.bias.map_or(0.0, |b| b[lane]);
                let row = &mut out_block[lane * out_plane + oh * geo.out_w + ow..][..pixels];
                for (j, value) in row.iter_mut().enumerate() {
                    *value = tile[j * NB * LANES + lane] + bias;
                }
            }
        }
    }
}

/// The kernel rows `kh` whose input row `oh·sh + kh·dh − ph` lies inside the image for output
/// row `oh` (a range: the rows in between read the image too).
fn live_kernel_rows(geo: &Conv2dGeometry, oh: usize) -> core::ops::Range<usize> {
    run_where(geo.k_h, |kh| reads_image(geo, oh, kh))
}

/// Whether output row `oh` reads a row of the image, not of its zero padding, at kernel row
/// `kh`.
pub(crate) fn reads_image(geo: &Conv2dGeometry, oh: usize, kh: usize) -> bool {
    let padded_row = oh * geo.stride[0] + kh * geo.dilation[0];
    padded_row >= geo.padding[0] && padded_row < geo.padding[0] + geo.in_h
}

/// The indices `0..len` where `holds` is true, for a `holds` that is true on one run of them
/// (or none: an empty range).
pub(crate) fn run_where(len: usize, holds: impl Fn(usize) -> bool) -> core::ops::Range<usize> {
    let first = (0..len).find(|&i| holds(i)).unwrap_or(len);
    let end = (first..len).find(|&i| !holds(i)).unwrap_or(len);
    first..end
}

/// Bytes of packed weight one group of input channels holds (a group's weights stay in L1
/// while its sums are added to every tile of the block).
pub(crate) const WEIGHT_BLOCK_BYTES: usize = 16 * 1024;

/// What one tile reads: the input at its first pixel in the padded plane of a group's first
/// channel and the packed weight of that channel at the tile's first kernel row, each with the
/// distance between two input channels.
struct TileSource {
    x: *const f32,
    plane: usize,
    w: *const f32,
    channel_weights: usize,
}

/// The sums of one tile over a group of input channels: `tile[j · 16·NB + lane] (+)= Σ_c Σ_r
/// Σ_kw w[c·channel_weights + (r·KW + kw)·16·NB + lane] · x[c·plane + rows[r] + j·S + kw]` for
/// the `TILE_PIXELS` pixels `j` (`x`, `plane`, `w` and `channel_weights` from `source`, `rows`
/// the offsets of the kernel rows' first taps, each row `KW` taps wide at unit column
/// dilation); adds to `tile` when `accumulate`.
///
/// Each input value of a kernel row is broadcast once and multiplied by the `KW` taps that
/// read it (the weights of the row's taps stay in registers): `(TILE_PIXELS − 1)·S + KW`
/// broadcasts and `NB · KW` weight loads per `NB · KW · TILE_PIXELS` fused multiply-adds.
/// The sums of an output element run over `c`, then `r`, then `kw`.
///
/// # Safety
/// The CPU has AVX-512F; `x` is readable at every `c·plane + rows[r] + j·S + kw`, `w` at every
/// `c·channel_weights + (r·KW + kw)·16·NB + lane` and `tile` for `TILE_PIXELS · 16·NB`
/// elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds, unrolled whole: the accumulators stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn tile_sums<const NB: usize, const S: usize, const KW: usize>(
    source: &TileSource,
    channels: usize,
    rows: &[isize],
    tile: *mut f32,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let TileSource {
        x,
        plane,
        w,
        channel_weights,
    } = *source;
    let mut acc = tile_start::<NB>(tile, NB * LANES, accumulate);
    for c in 0..channels {
        let x_channel = x.add(c * plane);
        let mut w = w.add(c * channel_weights);
        for &row in rows {
            let x_row = x_channel.offset(row);
            let mut weights = [[_mm512_setzero_ps(); KW]; NB];
            for kw in 0..KW {
                for (nb, taps) in weights.iter_mut().enumerate() {
                    taps[kw] = _mm512_loadu_ps(w.add((kw * NB + nb) * LANES));
                }
            }
            w = w.add(KW * NB * LANES);
            // One broadcast per input column: the loads of `x_row[j·S + kw]` that coincide
            // are one load once unrolled.
            for kw in 0..KW {
                for j in 0..TILE_PIXELS {
                    let input = _mm512_set1_ps(*x_row.add(j * S + kw));
                    for nb in 0..NB {
                        acc[nb][j] = _mm512_fmadd_ps(weights[nb][kw], input, acc[nb][j]);
                    }
                }
            }
        }
    }
    tile_store(&acc, tile, NB * LANES);
}

/// A tile's [`TILE_PIXELS`] · `NB` accumulators: its sums so far when `accumulate` (pixel `j`'s
/// vector `nb` at `tile + j · pixel_stride + nb·16`), else zeros.
///
/// # Safety
/// The CPU has AVX-512F; with `accumulate`, `tile` is readable at every `j · pixel_stride +
/// nb·16 + lane` (`j < 8`, `nb < NB`, `lane < 16`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tile_start<const NB: usize>(
    tile: *const f32,
    pixel_stride: usize,
    accumulate: bool,
) -> [[std::arch::x86_64::__m512; TILE_PIXELS]; NB] {
    use std::arch::x86_64::*;
    core::array::from_fn(|nb| {
        core::array::from_fn(|j| match accumulate {
            true => _mm512_loadu_ps(tile.add(j * pixel_stride + nb * LANES)),
            false => _mm512_setzero_ps(),
        })
    })
}

/// Stores a tile's accumulators where [`tile_start`] reads them.
///
/// # Safety
/// The CPU has AVX-512F; `tile` is writable at every `j · pixel_stride + nb·16 + lane`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tile_store<const NB: usize>(
    acc: &[[std::arch::x86_64::__m512; TILE_PIXELS]; NB],
    tile: *mut f32,
    pixel_stride: usize,
) {
    use std::arch::x86_64::*;
    for (nb, pixels) in acc.iter().enumerate() {
        for (j, &sums) in pixels.iter().enumerate() {
            _mm512_storeu_ps(tile.add(j * pixel_stride + nb * LANES), sums);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::ops::ConvOptions;

    fn geometry(x: [usize; 4], w: [usize; 4], padding: usize, dilation: usize) -> Conv2dGeometry {
        let options = ConvOptions::new([1, 1], [padding; 2], [dilation; 2], 1);
        Conv2dGeometry::new(&x, &w, &options)
    }

    /// The convolution whose forward pass is an input gradient maps the output back onto the
    /// input: same sizes, channels swapped, padding `dilation · (K − 1) − pad`.
    #[test]
    fn the_transposed_convolution_has_the_input_shape() {
        for (padding, dilation, k) in [(1, 1, 3), (0, 1, 3), (2, 1, 5), (2, 2, 3), (3, 1, 7)] {
            let geo = geometry([2, 16, 11, 9], [32, 16, k, k], padding, dilation);
            let back = geo.transposed();
            let options = ConvOptions::new([1, 1], back.padding, back.dilation, 1);
            let again = Conv2dGeometry::new(
                &[geo.batch, geo.c_out, geo.out_h, geo.out_w],
                &[geo.c_in, geo.c_out, k, k],
                &options,
            );
            assert_eq!(
                again, back,
                "padding {padding}, dilation {dilation}, {k}×{k}"
            );
            assert_eq!((back.out_h, back.out_w), (geo.in_h, geo.in_w));
        }
    }
}
