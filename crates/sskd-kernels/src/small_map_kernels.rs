//! Dense convolutions of small output maps in `f32` as direct AVX-512 kernels whose tiles hold
//! eight images at one output pixel: VGG's 4×4 and 2×2 maps and the CIFAR ResNets' last stage,
//! whose rows are too short for [`direct_kernels`]' tiles of eight pixels of one row.
//!
//! The output channels are in the vector lanes as in [`direct_kernels`] (the same packed weight,
//! `[C, KH·KW, 16·NB]` per block of output channels). The input is copied once into groups of
//! eight images interleaved pixel by pixel (`[⌈B/8⌉, C, H, W, 8]`, the missing images of the last
//! group zero), so that the eight inputs a tile reads at one tap are neighbours. A tile is
//! `16·NB` output channels of one output pixel of the eight images, `NB · 8` accumulators of 16
//! lanes: per tap, `NB` weight loads and 8 broadcasts for `8·NB` fused multiply-adds. Each
//! output pixel visits only the taps that read the image: the taps on the zero padding are
//! never multiplied (at 3×3 with padding 1, 31 % of the taps of a 4×4 map, 56 % of a 2×2 one),
//! where im2col and GEMM multiply the padding's zeros. A unit of work is one block of output
//! channels over a run of groups of images (the whole batch where the blocks alone keep the
//! threads busy), so that its weights are read once for all of them; the input channels are
//! taken in groups whose packed weights stay in L1 ([`WEIGHT_BLOCK_BYTES`]), each group adding
//! to every tile of the unit. The sums go to NCHW by 16×16 transposes, with the bias. Every
//! output element is one tile's sum in a fixed order (input channels, then taps), whichever
//! thread computes it.
//!
//! The input gradient of a stride-1 convolution is the same kernel: `dx = conv(dy, w')` with the
//! weight flipped and its channel axes swapped ([`Conv2dGeometry::transposed`]).
//!
//! Taken in `f32` on an AVX-512 CPU ([`applies`]; for an input gradient, to its transposed
//! convolution) for ungrouped convolutions with a multiple of 16 output channels and at least
//! [`MIN_PRODUCT_DEPTH`] multiply-adds per output, whose output rows [`direct_kernels`] does
//! not take, with at most [`MAX_OUT_PLANE`] pixels per map, batches that fill at least three quarters of their groups
//! of eight images, and at least [`MIN_BLOCKS`] units of work (any stride, padding and
//! dilation). Measured against im2col and PyTorch in docs/performance.md ("Small maps as tiles
//! of eight images").

use rayon::prelude::*;

use crate::conv_geometry::Conv2dGeometry;
use crate::direct_kernels::{
    self, blocks_per_unit, channel_vectors, LANES, MIN_BLOCKS, MIN_PRODUCT_DEPTH, TILE_PIXELS,
    WEIGHT_BLOCK_BYTES,
};
#[cfg(target_arch = "x86_64")]
use crate::direct_kernels::{tile_start, tile_store};
use crate::nt_product;
use crate::parallel_chunks::{for_each_chunk, vec_by_chunks};
use crate::reused_buffers::with_reused_buffer;
use crate::transpose::transpose;

/// Images per tile, side by side in the interleaved input: a tile's pixels.
const IMAGES: usize = TILE_PIXELS;

/// The most output pixels per map this kernel takes: a block's sums (`8 · OH·OW · 16·NB`
/// values) stay within 64 KB, and larger maps have rows long enough for [`direct_kernels`] or
/// columns enough for GEMM.
const MAX_OUT_PLANE: usize = 64;

/// Whether [`forward_packed`] computes this convolution (an `f32` one: the caller checks the
/// type).
pub(crate) fn applies(geo: &Conv2dGeometry) -> bool {
    let groups = geo.batch.div_ceil(IMAGES);
    nt_product::available()
        && geo.groups == 1
        && geo.c_out.is_multiple_of(LANES)
        && geo.c_in * geo.k_h * geo.k_w >= MIN_PRODUCT_DEPTH
        && geo.out_plane() > 0
        && geo.out_plane() <= MAX_OUT_PLANE
        && !direct_kernels::rows_fill_tiles(geo)
        && groups * IMAGES * 3 <= geo.batch * 4
        && groups * geo.c_out / (channel_vectors(geo) * LANES) >= MIN_BLOCKS
}

/// `out [B, O, OH, OW] = conv2d(x [B, C, H, W], w [O, C, KH, KW]) + bias [O]` with the weight
/// packed for these tiles (`direct_kernels::with_packed_weight`); the input gradient of a
/// stride-1 convolution is this pass of [`Conv2dGeometry::transposed`] on the flipped weight.
///
/// # Panics
/// If [`applies`] does not hold for `geo`.
pub(crate) fn forward_packed(
    geo: &Conv2dGeometry,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(
        applies(geo),
        "small-map conv2d: unsupported geometry {geo:?}"
    );
    let lanes = channel_vectors(geo) * LANES;
    let groups = geo.batch.div_ceil(IMAGES);
    let group_len = geo.in_image() * IMAGES;
    with_reused_buffer(groups * group_len, |interleaved| {
        interleave_images(geo, x, interleaved);
        let blocks = geo.c_out / lanes;
        let block_len = IMAGES * geo.out_plane() * lanes;
        with_reused_buffer(blocks * groups * block_len, |sums| {
            sum_blocks(geo, interleaved, packed, sums);
            write_images(geo, sums, bias)
        })
    })
}

/// The sums of each block of output channels and group of images (`sums`, `[O/(16·NB), ⌈B/8⌉,
/// 8, OH·OW, 16·NB]`) from the interleaved images and the packed weight. A unit is one block
/// over a run of groups of images: its weights are read once for all of them.
fn sum_blocks(geo: &Conv2dGeometry, interleaved: &[f32], packed: &[f32], sums: &mut [f32]) {
    let lanes = channel_vectors(geo) * LANES;
    let (groups, blocks) = (geo.batch.div_ceil(IMAGES), geo.c_out / lanes);
    let block_len = IMAGES * geo.out_plane() * lanes;
    let group_len = geo.in_image() * IMAGES;
    let taps = pixel_taps(geo, lanes);
    let unit_groups = blocks_per_unit(blocks, groups);
    for_each_chunk(sums, unit_groups * block_len, true, |index, unit| {
        let (block, first_group) = (index * unit_groups / groups, index * unit_groups % groups);
        let tiles = BlockTiles {
            geo,
            x_groups: &interleaved[first_group * group_len..][..unit_groups * group_len],
            w_block: &packed[block * geo.col_rows() * lanes..][..geo.col_rows() * lanes],
            taps: &taps,
        };
        match lanes / LANES {
            2 => tiles.sum::<2>(unit),
            _ => tiles.sum::<1>(unit),
        }
    });
}

/// `out [B, O, OH, OW]` from [`sum_blocks`]' sums, by 16×16 transposes, with the bias.
fn write_images(geo: &Conv2dGeometry, sums: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let lanes = channel_vectors(geo) * LANES;
    let groups = geo.batch.div_ceil(IMAGES);
    let block_len = IMAGES * geo.out_plane() * lanes;
    let plane = geo.out_plane();
    let out_len = geo.batch * geo.out_image();
    vec_by_chunks(out_len, geo.out_image(), true, |b, out_image| {
        let (group, image) = (b / IMAGES, b % IMAGES);
        for (block, out_block) in out_image.chunks_exact_mut(lanes * plane).enumerate() {
            let from = &sums[(block * groups + group) * block_len + image * plane * lanes..];
            let bias = bias.map(|b| &b[block * lanes..][..lanes]);
            transpose(from, plane, lanes, out_block, bias);
        }
    })
}

/// Writes `x [B, C, H, W]` into `out` as groups of [`IMAGES`] images interleaved pixel by pixel,
/// `[⌈B/8⌉, C, H, W, 8]`: `out[((g·C + c)·H·W + p)·8 + j] = x[8g + j, c, p]`, zeros for the
/// images past the batch.
fn interleave_images(geo: &Conv2dGeometry, x: &[f32], out: &mut [f32]) {
    let image_len = geo.in_image();
    if image_len == 0 {
        return;
    }
    out.par_chunks_mut(IMAGES * image_len)
        .zip(x.par_chunks(IMAGES * image_len))
        .for_each(|(group, images)| {
            let count = images.len() / image_len;
            for (j, to) in group.chunks_exact_mut(IMAGES).enumerate() {
                for (image, value) in to.iter_mut().enumerate() {
                    *value = match image < count {
                        true => images[image * image_len + j],
                        false => 0.0,
                    };
                }
            }
        });
}

/// Per output pixel (`oh·OW + ow`), the taps that read the image: each as the offset of its
/// input pixel in an interleaved channel (`(ih·W + iw)·8`) and of its weights in a channel's
/// packed weight (`(kh·KW + kw)·lanes`), in the order of the taps.
fn pixel_taps(geo: &Conv2dGeometry, lanes: usize) -> Vec<Vec<(usize, usize)>> {
    let reads_image = |(first, end): (usize, usize), at: usize| (first..end).contains(&at);
    (0..geo.out_plane())
        .map(|pixel| {
            let (oh, ow) = (pixel / geo.out_w, pixel % geo.out_w);
            let rows = (0..geo.k_h).filter(|&kh| reads_image(geo.rows_for_tap(kh), oh));
            rows.flat_map(|kh| {
                (0..geo.k_w)
                    .filter(move |&kw| reads_image(geo.cols_for_tap(kw), ow))
                    .map(move |kw| {
                        let input = geo.in_row(oh, kh) * geo.in_w + geo.in_col(ow, kw);
                        (input * IMAGES, (kh * geo.k_w + kw) * lanes)
                    })
            })
            .collect()
        })
        .collect()
}

/// One block of output channels over a run of groups of images: what its tiles read.
struct BlockTiles<'a> {
    geo: &'a Conv2dGeometry,
    /// The run's interleaved images, `[groups, C, H, W, 8]`.
    x_groups: &'a [f32],
    /// The block's packed weight, `[C, KH·KW, 16·NB]`.
    w_block: &'a [f32],
    /// [`pixel_taps`].
    taps: &'a [Vec<(usize, usize)>],
}

impl BlockTiles<'_> {
    /// The block's sums, `sums [groups, 8, OH·OW, 16·NB]` (group of images, image, output
    /// pixel, output channel): the input channels in groups whose packed weights fit in L1,
    /// each channel group adding to every tile of every group of images.
    fn sum<const NB: usize>(&self, sums: &mut [f32]) {
        let geo = self.geo;
        let (plane, tile_lanes) = (geo.out_plane(), NB * LANES);
        let x_channel = geo.in_plane() * IMAGES;
        let w_channel = geo.k_h * geo.k_w * tile_lanes;
        let (group_len, sums_len) = (geo.c_in * x_channel, IMAGES * plane * tile_lanes);
        let image_groups = sums.len() / sums_len;
        assert!(
            self.x_groups.len() >= image_groups * group_len
                && self.w_block.len() >= geo.c_in * w_channel
                && self.taps.len() == plane,
            "small-map conv2d: buffers too short"
        );
        assert!(
            self.taps.iter().flatten().all(|&(input, weight)| {
                input + IMAGES <= x_channel && weight + tile_lanes <= w_channel
            }),
            "small-map conv2d: a tap outside its channel"
        );
        let channel_group = (WEIGHT_BLOCK_BYTES / (w_channel * 4)).max(1);
        for first in (0..geo.c_in).step_by(channel_group) {
            let channels = channel_group.min(geo.c_in - first);
            for (group, group_sums) in sums.chunks_exact_mut(sums_len).enumerate() {
                let x = &self.x_groups[group * group_len + first * x_channel..];
                for (pixel, taps) in self.taps.iter().enumerate() {
                    // SAFETY: `nt_product::available()` holds (checked in `applies`); the
                    // channels `first .. first + channels ≤ C` of the group of images lie
                    // within `x_groups` and `w_block` (checked above), each tap's reads within
                    // its channel (checked above), and the tile's 8 images `j` at
                    // `group_sums[(j·OH·OW + pixel)·16·NB ..][..16·NB]` within `group_sums`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        let source = ImageTileSource {
                            x: x.as_ptr(),
                            x_channel,
                            w: self.w_block.as_ptr().add(first * w_channel),
                            w_channel,
                        };
                        image_tile_sums::<NB>(
                            &source,
                            channels,
                            taps,
                            group_sums.as_mut_ptr().add(pixel * tile_lanes),
                            plane * tile_lanes,
                            first > 0,
                        );
                    }
                }
            }
        }
    }
}

/// What one tile reads: a group's first input channel (interleaved) and its packed weight,
/// each with the distance between two input channels.
struct ImageTileSource {
    x: *const f32,
    x_channel: usize,
    w: *const f32,
    w_channel: usize,
}

/// The sums of one tile over a group of input channels: `tile[j · image_stride + nb·16 + lane]
/// (+)= Σ_c Σ_(input, weight) ∈ taps w[c·w_channel + weight + nb·16 + lane] · x[c·x_channel +
/// input + j]` for the 8 images `j`; adds to the tile when `accumulate`. The sums of an output
/// element run over `c`, then the taps in their order.
///
/// # Safety
/// The CPU has AVX-512F; `x` is readable at every `c·x_channel + input + j`, `w` at every
/// `c·w_channel + weight + nb·16 + lane` and `tile` at every `j · image_stride + nb·16 + lane`,
/// for `c < channels`, `j < 8`, `nb < NB`, `lane < 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds, unrolled whole: the accumulators stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn image_tile_sums<const NB: usize>(
    source: &ImageTileSource,
    channels: usize,
    taps: &[(usize, usize)],
    tile: *mut f32,
    image_stride: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let ImageTileSource {
        x,
        x_channel,
        w,
        w_channel,
    } = *source;
    let mut acc = tile_start::<NB>(tile, image_stride, accumulate);
    for c in 0..channels {
        let (x, w) = (x.add(c * x_channel), w.add(c * w_channel));
        for &(input, weight) in taps {
            let weights: [__m512; NB] =
                core::array::from_fn(|nb| _mm512_loadu_ps(w.add(weight + nb * LANES)));
            for j in 0..IMAGES {
                let value = _mm512_set1_ps(*x.add(input + j));
                for nb in 0..NB {
                    acc[nb][j] = _mm512_fmadd_ps(weights[nb], value, acc[nb][j]);
                }
            }
        }
    }
    tile_store(&acc, tile, image_stride);
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::ops::ConvOptions;

    fn geometry(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize) -> Conv2dGeometry {
        let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
        Conv2dGeometry::new(&x, &w, &options)
    }

    /// A tap is visited where its input pixel lies inside the image: at 3×3, padding 1, a
    /// corner of a 4×4 map reads 4 taps, an edge 6, the middle 9; a 2×2 map 4 everywhere.
    #[test]
    fn each_pixel_visits_the_taps_that_read_the_image() {
        let count = |size: usize| {
            let geo = geometry([8, 16, size, size], [16, 16, 3, 3], 1, 1);
            pixel_taps(&geo, 16)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(count(4), [4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4]);
        assert_eq!(count(2), [4; 4]);
        let geo = geometry([8, 16, 4, 4], [16, 16, 3, 3], 1, 1);
        // The first pixel's taps: kernel rows and columns 1 and 2, at input pixels 0, 1, 4, 5.
        let first: Vec<(usize, usize)> = [(0, 4), (1, 5), (4, 7), (5, 8)]
            .map(|(input, tap)| (input * IMAGES, tap * 16))
            .to_vec();
        assert_eq!(pixel_taps(&geo, 16)[0], first);
    }

    #[test]
    fn images_are_interleaved_pixel_by_pixel() {
        let geo = geometry([10, 2, 1, 3], [16, 2, 1, 1], 1, 0);
        let x: Vec<f32> = (0..60).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 2 * 8 * 6];
        interleave_images(&geo, &x, &mut out);
        assert_eq!(out.len(), 2 * 8 * 6);
        for b in 0..16 {
            for i in 0..6 {
                let want = if b < 10 { x[b * 6 + i] } else { 0.0 };
                assert_eq!(
                    out[(b / 8 * 6 + i) * 8 + b % 8],
                    want,
                    "image {b}, value {i}"
                );
            }
        }
    }
}
