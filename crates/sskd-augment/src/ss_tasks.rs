//! The self-supervised tasks: SSKD's four-rotation sample, the transformation pool of the ECCV
//! supplementary (§2.2), and jigsaw, rotation and exemplar for the SS-task ablation. All
//! randomness comes from the generator passed in.

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::color::{color_jitter, grayscale, JitterParams};
use crate::geometry::{crop, horizontal_flip, random_crop, resized_crop_window, rotate90};
use crate::recipes::coin;
use crate::resize::resize_bilinear;

/// SSKD's sample (`cifar.py`): one flip decision shared by the four copies (training only),
/// copies rotated by 0°, 90°, 180°, 270° counter-clockwise, then an independent random
/// pad-4 crop per copy (training only). Stacking `[B, 4, C, H, W]` and flattening gives the
/// `[4B, …]` batch whose row `4i + k` is image `i` rotated `k·90°`.
pub fn sskd_rotations<R: Rng>(image: &RgbImage, train: bool, rng: &mut R) -> [RgbImage; 4] {
    let base = if train && coin(rng) {
        horizontal_flip(image)
    } else {
        image.clone()
    };
    [0, 1, 2, 3].map(|k| {
        let rotated = rotate90(&base, k);
        if train {
            let side = rotated.width();
            random_crop(&rotated, side, 4, rng).0
        } else {
            rotated
        }
    })
}

/// A transform of the supplementary's pool (§2.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolTransform {
    /// Colour dropping: grey = 0.299 R + 0.587 G + 0.114 B in every channel.
    ColorDrop,
    /// Rotation by `k · 90°` counter-clockwise, `k` in 1..=3 (±90°, 180°).
    Rotation(u32),
    /// Random crop (scale 0.08–1, ratio 3/4–4/3) resized back to the input size.
    CropResize,
    /// Colour jitter: brightness, contrast and saturation factors in [0.6, 1.4], hue in
    /// [−0.1, 0.1], applied in a random order.
    ColorJitter,
}

/// Draws one transform of the pool uniformly (rotations: one of 90°, 180°, 270°).
pub fn draw_pool_transform<R: Rng>(rng: &mut R) -> PoolTransform {
    match rng.random_range(0..4) {
        0 => PoolTransform::ColorDrop,
        1 => PoolTransform::Rotation(rng.random_range(1..=3)),
        2 => PoolTransform::CropResize,
        _ => PoolTransform::ColorJitter,
    }
}

/// Draws colour-jitter parameters: factors in `[1 − s, 1 + s]` (s = 0.4), hue in
/// `[−0.1, 0.1]`, a random order.
pub fn draw_jitter<R: Rng>(strength: f32, hue: f32, rng: &mut R) -> JitterParams {
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);
    JitterParams {
        brightness: rng.random_range(1.0 - strength..=1.0 + strength),
        contrast: rng.random_range(1.0 - strength..=1.0 + strength),
        saturation: rng.random_range(1.0 - strength..=1.0 + strength),
        hue: rng.random_range(-hue..=hue),
        order,
    }
}

/// Applies a pool transform.
pub fn apply_pool_transform<R: Rng>(
    image: &RgbImage,
    transform: PoolTransform,
    rng: &mut R,
) -> RgbImage {
    match transform {
        PoolTransform::ColorDrop => grayscale(image),
        PoolTransform::Rotation(k) => rotate90(image, k),
        PoolTransform::CropResize => {
            let (width, height) = image.dimensions();
            let (top, left, h, w) =
                resized_crop_window(width, height, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
            resize_bilinear(&crop(image, top, left, h, w), width, height)
        }
        PoolTransform::ColorJitter => color_jitter(image, &draw_jitter(0.4, 0.1, rng)),
    }
}

/// The paper's policy: the image itself and three copies, each transformed by one transform
/// drawn from the pool (the layout of [`sskd_rotations`], so the same losses apply).
pub fn sskd_pool<R: Rng>(image: &RgbImage, rng: &mut R) -> [RgbImage; 4] {
    let first = image.clone();
    let mut copies = [first.clone(), first.clone(), first.clone(), first];
    for copy in copies.iter_mut().skip(1) {
        let transform = draw_pool_transform(rng);
        *copy = apply_pool_transform(copy, transform, rng);
    }
    copies
}

/// The 24 permutations of the four 2×2 jigsaw tiles, in lexicographic order; the label of a
/// jigsaw sample is the index of its permutation here.
pub fn jigsaw_permutations() -> Vec<[usize; 4]> {
    let mut all = Vec::with_capacity(24);
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let p = [a, b, c, d];
                    let mut seen = [false; 4];
                    if p.iter().all(|&x| !std::mem::replace(&mut seen[x], true)) {
                        all.push(p);
                    }
                }
            }
        }
    }
    all
}

/// A 2×2 jigsaw: tile `t` of the output (row-major) is input tile `permutation[t]`.
/// Odd sizes drop the last row/column so the tiles are equal.
pub fn jigsaw(image: &RgbImage, permutation: [usize; 4]) -> RgbImage {
    let (tile_w, tile_h) = (image.width() / 2, image.height() / 2);
    let mut out = RgbImage::new(2 * tile_w, 2 * tile_h);
    for (slot, &source) in permutation.iter().enumerate() {
        let tile = crop(
            image,
            (source as u32 / 2) * tile_h,
            (source as u32 % 2) * tile_w,
            tile_h,
            tile_w,
        );
        image::imageops::replace(
            &mut out,
            &tile,
            ((slot as u32 % 2) * tile_w) as i64,
            ((slot as u32 / 2) * tile_h) as i64,
        );
    }
    out
}

/// Draws a jigsaw sample and its label (0..24).
pub fn jigsaw_task<R: Rng>(image: &RgbImage, rng: &mut R) -> (RgbImage, usize) {
    let permutations = jigsaw_permutations();
    let label = rng.random_range(0..permutations.len());
    (jigsaw(image, permutations[label]), label)
}

/// The rotation task: the four rotations with labels 0..4 (= [`sskd_rotations`] at test time).
pub fn rotation_task(image: &RgbImage) -> [(RgbImage, usize); 4] {
    [0, 1, 2, 3].map(|k| (rotate90(image, k), k as usize))
}

/// The exemplar task's heavy transform (its label is the image's index): random resized crop
/// back to the input size, flip, colour jitter (0.4, hue 0.1) and colour drop with p = 0.2.
pub fn exemplar<R: Rng>(image: &RgbImage, rng: &mut R) -> RgbImage {
    let (width, height) = image.dimensions();
    let (top, left, h, w) =
        resized_crop_window(width, height, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
    let mut out = resize_bilinear(&crop(image, top, left, h, w), width, height);
    if coin(rng) {
        out = horizontal_flip(&out);
    }
    out = color_jitter(&out, &draw_jitter(0.4, 0.1, rng));
    if rng.random::<f64>() < 0.2 {
        out = grayscale(&out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn twenty_four_distinct_permutations() {
        let permutations = jigsaw_permutations();
        assert_eq!(permutations.len(), 24);
        assert_eq!(permutations[0], [0, 1, 2, 3]);
        assert_eq!(permutations[23], [3, 2, 1, 0]);
    }

    #[test]
    fn same_seed_same_pixels() {
        let image = RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([x as u8 * 7, y as u8 * 5, (x + y) as u8])
        });
        let a = sskd_rotations(&image, true, &mut sample_rng(1, 2, 3));
        let b = sskd_rotations(&image, true, &mut sample_rng(1, 2, 3));
        assert_eq!(a, b);
        let c = sskd_rotations(&image, true, &mut sample_rng(1, 2, 4));
        assert_ne!(a, c);
        assert_eq!(
            exemplar(&image, &mut sample_rng(9, 0, 0)),
            exemplar(&image, &mut sample_rng(9, 0, 0))
        );
    }

    #[test]
    fn test_time_rotations_are_plain_rotations() {
        let image = RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let copies = sskd_rotations(&image, false, &mut sample_rng(0, 0, 0));
        assert_eq!(copies[0], image);
        assert_eq!(copies[2], image::imageops::rotate180(&image));
    }
}
