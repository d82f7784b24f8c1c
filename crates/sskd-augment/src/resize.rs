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
/// window starting `left` pixels in): `rows × filter.bounds.len()` RGB pixels.
fn horizontal_pass(
    source: &[u8],
    source_stride: usize,
    (rows, left): (usize, usize),
    filter: &AxisFilter,
) -> Vec<u8> {
    let width = filter.bounds.len();
    let mut out = vec![0u8; rows * width * 3];
    for (row, out_row) in out.chunks_exact_mut(width * 3).enumerate() {
        let row = &source[row * source_stride + left * 3..];
        for (x, pixel) in out_row.chunks_exact_mut(3).enumerate() {
            let (first, weights) = filter.taps_of(x);
            let mut sums = [HALF; 3];
            for (input, &weight) in row[first * 3..].chunks_exact(3).zip(weights) {
                for channel in 0..3 {
                    sums[channel] += input[channel] as i32 * weight;
                }
            }
            for channel in 0..3 {
                pixel[channel] = clip8(sums[channel]);
            }
        }
    }
    out
}

/// The vertical pass over `source` (rows of `stride` bytes): `filter.bounds.len()` rows.
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
        horizontal_pass(window, source_stride, (rows, left as usize), &filter)
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
