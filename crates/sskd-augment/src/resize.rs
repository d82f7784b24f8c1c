//! Bilinear resizing exactly as Pillow does it for 8-bit images (`Image.resize(…, BILINEAR)`,
//! what torchvision's `Resize` / `RandomResizedCrop` call on PIL images): a separable
//! triangle filter widened by the scale factor when shrinking (antialiasing), coefficients in
//! 22-bit fixed point, horizontal pass first.
//!
//! [`resize_window_bilinear`] resizes a window of an image without copying it out first (what
//! `RandomResizedCrop` does: crop, then resize); its integer sums are Pillow's, only their
//! order in memory differs, so every pixel is the same as [`crop`](crate::geometry::crop)
//! followed by [`resize_bilinear`].

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The rounding term every fixed-point sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Pillow's filter of one axis: per output pixel, the first input index and the fixed-point
/// weights of its taps (`precompute_coeffs` + `normalize_coeffs_8bpc`).
struct AxisFilter {
    /// `(first input index, tap count)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `taps` weights per output pixel (the first `count` of them used).
    weights: Vec<i32>,
    /// Weights stored per output pixel.
    taps: usize,
}

impl AxisFilter {
    fn new(input: u32, output: u32) -> Self {
        let scale = input as f64 / output as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // bilinear support 1.0 × filter scale
        let taps = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(output as usize);
        let mut weights = vec![0i32; output as usize * taps];
        for out in 0..output as usize {
            let center = (out as f64 + 0.5) * scale;
            let inverse = 1.0 / filter_scale;
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let count = last - first;
            let raw: Vec<f64> = (0..count)
                .map(|x| {
                    let distance = ((x + first) as f64 - center + 0.5) * inverse;
                    (1.0 - distance.abs()).max(0.0)
                })
                .collect();
            let total: f64 = raw.iter().sum();
            for (x, value) in raw.iter().enumerate() {
                let normalised = if total != 0.0 { value / total } else { *value };
                let scaled = normalised * (1u32 << PRECISION_BITS) as f64;
                weights[out * taps + x] = if scaled < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            bounds.push((first, count));
        }
        Self {
            bounds,
            weights,
            taps,
        }
    }

    /// The taps of output pixel `out`: its first input index and its weights.
    fn taps_of(&self, out: usize) -> (usize, &[i32]) {
        let (first, count) = self.bounds[out];
        (
            first,
            &self.weights[out * self.taps..out * self.taps + count],
        )
    }
}

fn clip8(accumulator: i32) -> u8 {
    (accumulator >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The horizontal pass over `rows` rows of `source` (row stride `source_stride` bytes, the
/// window starting `left` pixels in): `rows × filter.bounds.len()` RGB pixels. `pixel_sums`
/// computes one output pixel's clipped channels from its taps (the RGB bytes of its input
/// pixels and one byte more: the byte after them) and its weights.
#[inline(always)]
fn horizontal_pass(
    source: &[u8],
    source_stride: usize,
    (rows, left): (usize, usize),
    filter: &AxisFilter,
    pixel_sums: impl Fn(&[u8], &[i32]) -> [u8; 4],
) -> Vec<u8> {
    let width = filter.bounds.len();
    // One byte of slack: each pixel is stored as four bytes, the fourth overwritten by the
    // next pixel's first.
    let mut out = vec![0u8; rows * width * 3 + 1];
    for row in 0..rows {
        let input = &source[row * source_stride + left * 3..];
        for x in 0..width {
            let (first, weights) = filter.taps_of(x);
            let pixel = match input.get(first * 3..(first + weights.len()) * 3 + 1) {
                Some(taps) => pixel_sums(taps, weights),
                // The image's last pixel: no byte after it.
                None => rgb_sums(&input[first * 3..], weights),
            };
            let at = (row * width + x) * 3;
            out[at..at + 4].copy_from_slice(&pixel);
        }
    }
    out.truncate(rows * width * 3);
    out
}

/// One output pixel of the horizontal pass: `clip8(HALF + Σ weight · input)` per channel over
/// the RGB pixels of `inputs`, one per weight (a fourth byte of zero).
fn rgb_sums(inputs: &[u8], weights: &[i32]) -> [u8; 4] {
    let mut sums = [HALF; 3];
    for (input, &weight) in inputs.chunks_exact(3).zip(weights) {
        for channel in 0..3 {
            sums[channel] += input[channel] as i32 * weight;
        }
    }
    [clip8(sums[0]), clip8(sums[1]), clip8(sums[2]), 0]
}

/// [`rgb_sums`] with each input pixel loaded as four bytes into one vector (the fourth lane,
/// the next pixel's first byte, is computed and dropped): one multiply-add per tap. Integer
/// sums, so the first three bytes are [`rgb_sums`]'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rgb_sums_avx2(inputs: &[u8], weights: &[i32]) -> [u8; 4] {
    use std::arch::x86_64::{
        _mm_add_epi32, _mm_cvtepu8_epi32, _mm_cvtsi128_si32, _mm_cvtsi32_si128, _mm_mullo_epi32,
        _mm_packs_epi32, _mm_packus_epi16, _mm_set1_epi32, _mm_srai_epi32,
    };
    let mut sums = _mm_set1_epi32(HALF);
    for (tap, &weight) in weights.iter().enumerate() {
        let bytes: [u8; 4] = inputs[tap * 3..tap * 3 + 4].try_into().expect("four bytes");
        let pixel = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(bytes)));
        sums = _mm_add_epi32(sums, _mm_mullo_epi32(pixel, _mm_set1_epi32(weight)));
    }
    // clip8 of each lane: shift, then saturate to i16 and to u8 (a clamp to 0..=255).
    let shifted = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(sums);
    let bytes = _mm_packus_epi16(_mm_packs_epi32(shifted, shifted), shifted);
    _mm_cvtsi128_si32(bytes).to_le_bytes()
}

/// The vertical pass over `source` (rows of `stride` bytes): `filter.bounds.len()` rows.
#[inline(always)]
fn vertical_pass(source: &[u8], stride: usize, filter: &AxisFilter) -> Vec<u8> {
    let mut out = vec![0u8; filter.bounds.len() * stride];
    let mut sums = vec![0i32; stride];
    for (y, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (first, weights) = filter.taps_of(y);
        sums.fill(HALF);
        for (tap, &weight) in weights.iter().enumerate() {
            let row = &source[(first + tap) * stride..(first + tap + 1) * stride];
            for (sum, &value) in sums.iter_mut().zip(row) {
                *sum += value as i32 * weight;
            }
        }
        for (value, &sum) in out_row.iter_mut().zip(&sums) {
            *value = clip8(sum);
        }
    }
    out
}

/// Resizes to `width × height` with Pillow's bilinear filter.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_width, in_height) = image.dimensions();
    resize_window_bilinear(image, (0, 0, in_height, in_width), width, height)
}

/// Resizes the window `(top, left, window_height, window_width)` of `image` to `width ×
/// height` with Pillow's bilinear filter: the same pixels as cropping the window out and
/// resizing the crop, without the copy.
///
/// # Panics
/// When the window is not inside the image.
pub fn resize_window_bilinear(
    image: &RgbImage,
    (top, left, window_height, window_width): (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> RgbImage {
    let (in_width, in_height) = image.dimensions();
    assert!(
        left + window_width <= in_width && top + window_height <= in_height,
        "window {window_width}×{window_height} at ({left}, {top}) outside a {in_width}×{in_height} image"
    );
    let window = (top, left, window_height, window_width);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { resize_window_avx2(image, window, (width, height)) };
    }
    resize_window_passes(image, window, (width, height), rgb_sums)
}

/// [`resize_window_passes`] compiled for AVX2: a vector multiply-add per tap in the horizontal
/// pass, eight-lane multiplies in the vertical one.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn resize_window_avx2(
    image: &RgbImage,
    window: (u32, u32, u32, u32),
    size: (u32, u32),
) -> RgbImage {
    // The closure has this function's target features: it may call `rgb_sums_avx2`.
    resize_window_passes(image, window, size, |taps, weights| {
        rgb_sums_avx2(taps, weights)
    })
}

/// The two passes of [`resize_window_bilinear`], the horizontal one's pixels by `pixel_sums`.
#[inline(always)]
fn resize_window_passes(
    image: &RgbImage,
    (top, left, window_height, window_width): (u32, u32, u32, u32),
    (width, height): (u32, u32),
    pixel_sums: impl Fn(&[u8], &[i32]) -> [u8; 4],
) -> RgbImage {
    let in_width = image.width();
    let source_stride = in_width as usize * 3;
    let window = &image.as_raw()[top as usize * source_stride..];
    let rows = window_height as usize;
    // Horizontal pass: window rows × `width` columns (a plain copy when the width stays).
    let horizontal: Vec<u8> = if width == window_width {
        window
            .chunks(source_stride)
            .take(rows)
            .flat_map(|row| &row[left as usize * 3..(left + window_width) as usize * 3])
            .copied()
            .collect()
    } else {
        let filter = AxisFilter::new(window_width, width);
        horizontal_pass(
            window,
            source_stride,
            (rows, left as usize),
            &filter,
            pixel_sums,
        )
    };
    let pixels = if height == window_height {
        horizontal
    } else {
        vertical_pass(
            &horizontal,
            width as usize * 3,
            &AxisFilter::new(window_height, height),
        )
    };
    RgbImage::from_raw(width, height, pixels).expect("sizes agree")
}

/// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer
/// `int(size · long / short)`.
pub fn resize_shorter_side(image: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let (short, long) = (width.min(height), width.max(height));
    let new_long = (size as u64 * long as u64 / short as u64) as u32;
    if width <= height {
        resize_bilinear(image, size, new_long)
    } else {
        resize_bilinear(image, new_long, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::crop;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The straightforward form of Pillow's two passes, index by index, as this file had it
    /// before the passes were reordered for speed.
    fn resize_by_definition(image: &RgbImage, width: u32, height: u32) -> RgbImage {
        let (in_width, in_height) = image.dimensions();
        let source = image.as_raw();
        let filter = AxisFilter::new(in_width, width);
        let mut horizontal = vec![0u8; (width * in_height * 3) as usize];
        for y in 0..in_height as usize {
            for x in 0..width as usize {
                let (first, count) = filter.bounds[x];
                for channel in 0..3 {
                    let mut sum = HALF;
                    for tap in 0..count {
                        let input = source[(y * in_width as usize + first + tap) * 3 + channel];
                        sum += input as i32 * filter.weights[x * filter.taps + tap];
                    }
                    horizontal[(y * width as usize + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        let filter = AxisFilter::new(in_height, height);
        let stride = width as usize * 3;
        let mut out = vec![0u8; height as usize * stride];
        for y in 0..height as usize {
            let (first, count) = filter.bounds[y];
            for position in 0..stride {
                let mut sum = HALF;
                for tap in 0..count {
                    let input = horizontal[(first + tap) * stride + position];
                    sum += input as i32 * filter.weights[y * filter.taps + tap];
                }
                out[y * stride + position] = clip8(sum);
            }
        }
        RgbImage::from_raw(width, height, out).unwrap()
    }

    fn noise(width: u32, height: u32, rng: &mut StdRng) -> RgbImage {
        RgbImage::from_fn(width, height, |_, _| image::Rgb(rng.random()))
    }

    #[test]
    fn the_reordered_passes_give_the_same_pixels_as_the_definition() {
        let mut rng = StdRng::seed_from_u64(1);
        for (size, target) in [
            ((37, 23), (224, 224)),
            ((500, 375), (224, 224)),
            ((9, 40), (9, 7)),
        ] {
            let image = noise(size.0, size.1, &mut rng);
            let resized = resize_bilinear(&image, target.0, target.1);
            assert_eq!(resized, resize_by_definition(&image, target.0, target.1));
        }
    }

    #[test]
    fn the_portable_and_the_avx2_passes_agree() {
        let mut rng = StdRng::seed_from_u64(3);
        for (size, window, target) in [
            ((500, 375), (0, 0, 375, 500), (224, 224)),
            ((500, 375), (13, 100, 300, 399), (224, 224)),
            ((61, 47), (40, 50, 7, 11), (32, 20)),
            ((8, 8), (0, 0, 8, 8), (3, 5)),
        ] {
            let image = noise(size.0, size.1, &mut rng);
            let portable = resize_window_passes(&image, window, target, rgb_sums);
            assert_eq!(
                portable,
                resize_window_bilinear(&image, window, target.0, target.1)
            );
            assert_eq!(
                portable,
                resize_by_definition(
                    &crop(&image, window.0, window.1, window.2, window.3),
                    target.0,
                    target.1
                )
            );
        }
    }

    #[test]
    fn a_window_resizes_as_its_crop_does() {
        let mut rng = StdRng::seed_from_u64(2);
        let image = noise(61, 47, &mut rng);
        for _ in 0..20 {
            let (height, width) = (rng.random_range(1..=47), rng.random_range(1..=61));
            let (top, left) = (
                rng.random_range(0..=47 - height),
                rng.random_range(0..=61 - width),
            );
            let (out_width, out_height) = (rng.random_range(1..40), rng.random_range(1..40));
            let window = (top, left, height, width);
            assert_eq!(
                resize_window_bilinear(&image, window, out_width, out_height),
                resize_bilinear(
                    &crop(&image, top, left, height, width),
                    out_width,
                    out_height
                ),
                "window {window:?} to {out_width}×{out_height}"
            );
        }
    }
}
