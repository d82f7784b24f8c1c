//! Geometric transforms on RGB images: padding, crops, flips, 90° rotations and torchvision's
//! crop-parameter samplers.

use image::{Rgb, RgbImage};
use rand::Rng;

/// Zero-pads `padding` pixels on every side (torchvision `RandomCrop(padding, fill=0)`).
pub fn pad(image: &RgbImage, padding: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let mut out = RgbImage::from_pixel(width + 2 * padding, height + 2 * padding, Rgb([0, 0, 0]));
    image::imageops::replace(&mut out, image, padding as i64, padding as i64);
    out
}

/// The `height × width` window whose top-left corner is (`top`, `left`).
///
/// # Panics
/// If the window leaves the image.
pub fn crop(image: &RgbImage, top: u32, left: u32, height: u32, width: u32) -> RgbImage {
    image::imageops::crop_imm(image, left, top, width, height).to_image()
}

/// Mirrors left–right.
pub fn horizontal_flip(image: &RgbImage) -> RgbImage {
    image::imageops::flip_horizontal(image)
}

/// Rotates by `k · 90°` counter-clockwise, as `numpy.rot90(x, k)` on an `H×W×C` array.
pub fn rotate90(image: &RgbImage, k: u32) -> RgbImage {
    match k % 4 {
        0 => image.clone(),
        1 => image::imageops::rotate270(image),
        2 => image::imageops::rotate180(image),
        _ => image::imageops::rotate90(image),
    }
}

/// torchvision `RandomCrop(size, padding)`: pads, then a uniformly drawn `size × size` window.
/// Returns the crop and its (top, left) in the padded image.
pub fn random_crop<R: Rng>(
    image: &RgbImage,
    size: u32,
    padding: u32,
    rng: &mut R,
) -> (RgbImage, (u32, u32)) {
    let padded = pad(image, padding);
    let (width, height) = padded.dimensions();
    let top = rng.random_range(0..=height - size);
    let left = rng.random_range(0..=width - size);
    (crop(&padded, top, left, size, size), (top, left))
}

/// The window of torchvision's `RandomResizedCrop.get_params`: up to ten tries of an area share
/// in `scale` and a log-uniform aspect ratio in `ratio`, else the central crop with the ratio
/// clamped. Returns (top, left, height, width).
pub fn resized_crop_window<R: Rng>(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (u32, u32, u32, u32) {
    let area = (width * height) as f64;
    let (log_low, log_high) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.random_range(scale.0..scale.1);
        let aspect = rng.random_range(log_low..log_high).exp();
        let w = (target_area * aspect).sqrt().round() as u32;
        let h = (target_area / aspect).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (width as f64 / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((height as f64 * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// torchvision `CenterCrop(size)`: top = round((H − size) / 2), likewise left.
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let top = ((height as f64 - size as f64) / 2.0).round() as u32;
    let left = ((width as f64 - size as f64) / 2.0).round() as u32;
    crop(image, top, left, size, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rot90_matches_numpy_counter_clockwise() {
        // 2×2 image [[a, b], [c, d]]: numpy rot90 k=1 → [[b, d], [a, c]].
        let mut image = RgbImage::new(2, 2);
        for (i, (x, y)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
            image.put_pixel(x, y, Rgb([i as u8; 3]));
        }
        let rotated = rotate90(&image, 1);
        let value = |x, y| rotated.get_pixel(x, y).0[0];
        assert_eq!(
            [value(0, 0), value(1, 0), value(0, 1), value(1, 1)],
            [1, 3, 0, 2]
        );
    }
}
