//! Colour transforms exactly as Pillow computes them on 8-bit RGB images, which is what
//! torchvision's `ColorJitter` and `Grayscale` call on PIL images.

use image::{Rgb, RgbImage};

/// Pillow's luma `L = (R·19595 + G·38470 + B·7471 + 2¹⁵) >> 16`, i.e. 0.299 R + 0.587 G +
/// 0.114 B rounded (ITU-R 601). The ECCV supplementary prints 0.229 for R; that is a typo of
/// the standard 0.299 used here.
pub fn luma(pixel: [u8; 3]) -> u8 {
    ((pixel[0] as u32 * 19595 + pixel[1] as u32 * 38470 + pixel[2] as u32 * 7471 + 0x8000) >> 16)
        as u8
}

/// Colour dropping: every channel replaced by the luma (`convert("L").convert("RGB")`).
pub fn grayscale(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let value = luma(pixel.0);
        *pixel = Rgb([value; 3]);
    }
    out
}

/// Pillow's `Image.blend(degenerate, image, factor)` on one channel value.
fn blend(degenerate: u8, value: u8, factor: f32) -> u8 {
    let mixed = degenerate as i32 as f32 + factor * (value as i32 - degenerate as i32) as f32;
    if (0.0..=1.0).contains(&factor) {
        mixed as u8
    } else if mixed <= 0.0 {
        0
    } else if mixed >= 255.0 {
        255
    } else {
        mixed as u8
    }
}

fn blend_with(image: &RgbImage, factor: f32, degenerate: impl Fn([u8; 3]) -> [u8; 3]) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let base = degenerate(pixel.0);
        pixel.0 = [0, 1, 2].map(|c| blend(base[c], pixel.0[c], factor));
    }
    out
}

/// `ImageEnhance.Brightness(image).enhance(factor)`: blend with black.
pub fn adjust_brightness(image: &RgbImage, factor: f32) -> RgbImage {
    blend_with(image, factor, |_| [0, 0, 0])
}

/// `ImageEnhance.Contrast(image).enhance(factor)`: blend with the mean luma, rounded.
pub fn adjust_contrast(image: &RgbImage, factor: f32) -> RgbImage {
    let total: u64 = image.pixels().map(|p| luma(p.0) as u64).sum();
    let mean = (total as f64 / (image.width() * image.height()).max(1) as f64 + 0.5) as u8;
    blend_with(image, factor, |_| [mean; 3])
}

/// `ImageEnhance.Color(image).enhance(factor)`: blend with the grey version.
pub fn adjust_saturation(image: &RgbImage, factor: f32) -> RgbImage {
    blend_with(image, factor, |pixel| [luma(pixel); 3])
}

/// Pillow's RGB → HSV (`Convert.c`, after `colorsys`).
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max == min {
        return [0, 0, max];
    }
    let range = (max - min) as f32;
    let saturation = range / max as f32;
    let rc = (max - r) as f32 / range;
    let gc = (max - g) as f32 / range;
    let bc = (max - b) as f32 / range;
    // The C code mixes float variables with double literals; mirror each promotion.
    let hue: f32 = if r == max {
        bc - gc
    } else if g == max {
        (2.0 + rc as f64 - bc as f64) as f32
    } else {
        (4.0 + gc as f64 - rc as f64) as f32
    };
    let hue = ((hue as f64 / 6.0 + 1.0) % 1.0) as f32;
    let clip = |value: f64| (value as i32).clamp(0, 255) as u8;
    [
        clip(hue as f64 * 255.0),
        clip(saturation as f64 * 255.0),
        max,
    ]
}

/// Pillow's HSV → RGB.
fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    if s == 0 {
        return [v; 3];
    }
    let sector = (h as f32 as f64 * 6.0 / 255.0).floor() as i32;
    let fraction = (h as f32 as f64 * 6.0 / 255.0 - sector as f32 as f64) as f32;
    let fs = (s as f32 as f64 / 255.0) as f32;
    let clip = |value: f64| (value.round() as i32).clamp(0, 255) as u8;
    let p = clip(v as f32 as f64 * (1.0 - fs as f64));
    let q = clip(v as f32 as f64 * (1.0 - (fs * fraction) as f64));
    let t = clip(v as f32 as f64 * (1.0 - fs as f64 * (1.0 - fraction as f64)));
    match sector % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// torchvision's `adjust_hue` on a PIL image: to HSV, `H += uint8(factor · 255)` with
/// wrap-around, back to RGB. `factor` in `[-0.5, 0.5]`.
pub fn adjust_hue(image: &RgbImage, factor: f32) -> RgbImage {
    // numpy's uint8 cast of a negative float wraps on the usual platforms.
    let shift = ((factor as f64 * 255.0) as i64).rem_euclid(256) as u8;
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(pixel.0);
        pixel.0 = hsv_to_rgb([h.wrapping_add(shift), s, v]);
    }
    out
}

/// One colour-jitter draw: the four factors and the order torchvision applies them in
/// (0 brightness, 1 contrast, 2 saturation, 3 hue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor.
    pub contrast: f32,
    /// Saturation factor.
    pub saturation: f32,
    /// Hue shift.
    pub hue: f32,
    /// Application order.
    pub order: [usize; 4],
}

/// Applies a colour jitter with the given parameters.
pub fn color_jitter(image: &RgbImage, params: &JitterParams) -> RgbImage {
    params
        .order
        .iter()
        .fold(image.clone(), |current, &step| match step {
            0 => adjust_brightness(&current, params.brightness),
            1 => adjust_contrast(&current, params.contrast),
            2 => adjust_saturation(&current, params.saturation),
            _ => adjust_hue(&current, params.hue),
        })
}
