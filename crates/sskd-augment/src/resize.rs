//! Bilinear resizing exactly as Pillow does it for 8-bit images (`Image.resize(…, BILINEAR)`,
//! what torchvision's `Resize` / `RandomResizedCrop` call on PIL images): a separable
//! triangle filter widened by the scale factor when shrinking (antialiasing), coefficients in
//! 22-bit fixed point, horizontal pass first.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, tap count, and fixed-point weights (Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(input: u32, output: u32) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
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
    (bounds, weights, taps)
}

fn clip8(accumulator: i32) -> u8 {
    (accumulator >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `width × height` with Pillow's bilinear filter.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_width, in_height) = image.dimensions();
    let source = image.as_raw();
    // Horizontal pass: in_height rows × width columns.
    let horizontal: Vec<u8> = if width == in_width {
        source.clone()
    } else {
        let (bounds, weights, taps) = coefficients(in_width, width);
        let mut out = vec![0u8; (width * in_height * 3) as usize];
        for y in 0..in_height as usize {
            let row = &source[y * in_width as usize * 3..(y + 1) * in_width as usize * 3];
            for (x, &(first, count)) in bounds.iter().enumerate() {
                for channel in 0..3 {
                    let mut sum = 1i32 << (PRECISION_BITS - 1);
                    for tap in 0..count {
                        sum += row[(first + tap) * 3 + channel] as i32 * weights[x * taps + tap];
                    }
                    out[(y * width as usize + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        out
    };
    if height == in_height {
        return RgbImage::from_raw(width, height, horizontal).expect("sizes agree");
    }
    let (bounds, weights, taps) = coefficients(in_height, height);
    let stride = width as usize * 3;
    let mut out = vec![0u8; (width * height * 3) as usize];
    for (y, &(first, count)) in bounds.iter().enumerate() {
        for position in 0..stride {
            let mut sum = 1i32 << (PRECISION_BITS - 1);
            for tap in 0..count {
                sum +=
                    horizontal[(first + tap) * stride + position] as i32 * weights[y * taps + tap];
            }
            out[y * stride + position] = clip8(sum);
        }
    }
    RgbImage::from_raw(width, height, out).expect("sizes agree")
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
