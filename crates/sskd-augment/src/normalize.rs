//! `ToTensor` + `Normalize` and the datasets' channel statistics; and SSKD's four rotations
//! written straight into normalised planes ([`normalize_rotations`]).

use image::RgbImage;

/// CIFAR-100 channel means (SSKD's `cifar.py`).
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4866, 0.4409];
/// CIFAR-100 channel standard deviations.
pub const CIFAR100_STD: [f32; 3] = [0.2675, 0.2565, 0.2761];
/// ImageNet channel means.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(x / 255 − mean) / std` of every byte value `x` of each channel, computed once: a lookup
/// gives the same float as the expression.
struct NormalizeTable([[f32; 256]; 3]);

impl NormalizeTable {
    fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        Self(std::array::from_fn(|channel| {
            std::array::from_fn(|x| (x as f32 / 255.0 - mean[channel]) / std[channel])
        }))
    }

    /// `image` as normalised planes `[3, H, W]` in `out`, mirrored left–right when `mirror`.
    fn planes_into(&self, image: &RgbImage, mirror: bool, out: &mut [f32]) {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let plane = width * height;
        let (red, rest) = out.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        let rows = image.as_raw().chunks_exact(width * 3);
        for (y, row) in rows.enumerate() {
            let line = y * width..(y + 1) * width;
            let targets = (&mut red[line.clone()], &mut green[line.clone()]);
            let (red_row, green_row, blue_row) = (targets.0, targets.1, &mut blue[line]);
            for (x, pixel) in row.chunks_exact(3).enumerate() {
                let x = if mirror { width - 1 - x } else { x };
                red_row[x] = self.0[0][pixel[0] as usize];
                green_row[x] = self.0[1][pixel[1] as usize];
                blue_row[x] = self.0[2][pixel[2] as usize];
            }
        }
    }
}

/// `ToTensor` + `Normalize`: planar `C×H×W` floats `(x / 255 − mean) / std`.
pub fn normalize(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let mut out = vec![0f32; 3 * image.width() as usize * image.height() as usize];
    normalize_into(image, mean, std, &mut out);
    out
}

/// [`normalize`] into `out` (`3 · H · W` floats).
///
/// # Panics
/// When `out` is shorter than `3 · H · W`.
pub fn normalize_into(image: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    NormalizeTable::new(mean, std).planes_into(image, false, out);
}

/// SSKD's four-rotation sample of a square `image`, mirrored left–right first when `mirror`:
/// normalised planes `[4, 3, S, S]`, copy `k` turned by `k · 90°` counter-clockwise — the same
/// floats as normalising [`rotate90`](crate::geometry::rotate90)`(image, k)` for k = 0..4, with
/// the rotations done as index permutations of the normalised planes.
///
/// # Panics
/// When `image` is not square.
pub fn normalize_rotations(
    image: &RgbImage,
    mirror: bool,
    mean: [f32; 3],
    std: [f32; 3],
) -> Vec<f32> {
    let side = image.width() as usize;
    assert_eq!(image.height() as usize, side, "rotations of a square image");
    let plane = side * side;
    let mut out = crate::memory::pixel_buffer(4 * 3 * plane);
    let (upright, turned) = out.split_at_mut(3 * plane);
    NormalizeTable::new(mean, std).planes_into(image, mirror, upright);
    for (k, copy) in turned.chunks_exact_mut(3 * plane).enumerate() {
        for (source, target) in upright
            .chunks_exact(plane)
            .zip(copy.chunks_exact_mut(plane))
        {
            rotate_plane(source, target, side, k + 1);
        }
    }
    out
}

/// `target` = `source` (a `side × side` plane, row-major) turned by `k · 90°`
/// counter-clockwise, as `numpy.rot90`: row `i` of a quarter turn is column `side − 1 − i`.
fn rotate_plane(source: &[f32], target: &mut [f32], side: usize, k: usize) {
    match k % 4 {
        0 => target.copy_from_slice(source),
        2 => target
            .iter_mut()
            .zip(source.iter().rev())
            .for_each(|(t, s)| *t = *s),
        quarter => {
            for (i, row) in target.chunks_exact_mut(side).enumerate() {
                for (j, value) in row.iter_mut().enumerate() {
                    *value = if quarter == 1 {
                        source[j * side + side - 1 - i]
                    } else {
                        source[(side - 1 - j) * side + i]
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{horizontal_flip, rotate90};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn the_table_gives_the_expression_s_floats() {
        let image = RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16 + y) as u8; 3]));
        let planes = normalize(&image, IMAGENET_MEAN, IMAGENET_STD);
        for (position, pixel) in image.pixels().enumerate() {
            for channel in 0..3 {
                let expected = (pixel.0[channel] as f32 / 255.0 - IMAGENET_MEAN[channel])
                    / IMAGENET_STD[channel];
                assert_eq!(
                    planes[channel * 256 + position].to_bits(),
                    expected.to_bits()
                );
            }
        }
    }

    #[test]
    fn normalised_rotations_are_the_rotated_images_normalised() {
        let mut rng = StdRng::seed_from_u64(5);
        let image = RgbImage::from_fn(7, 7, |_, _| image::Rgb(rng.random()));
        for mirror in [false, true] {
            let source = if mirror {
                horizontal_flip(&image)
            } else {
                image.clone()
            };
            let expected: Vec<f32> = (0..4)
                .flat_map(|k| normalize(&rotate90(&source, k), CIFAR100_MEAN, CIFAR100_STD))
                .collect();
            let planes = normalize_rotations(&image, mirror, CIFAR100_MEAN, CIFAR100_STD);
            assert_eq!(planes, expected, "mirror {mirror}");
        }
    }
}
