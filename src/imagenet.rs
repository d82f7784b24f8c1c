//! The ImageNet input pipeline, shared by the `imagenet` example (training) and `data_bench
//! --pipeline imagenet` (its throughput): class-folder files decoded when the loader asks for
//! them ([`ImageFolderFiles`]), training files only as far as their crop window reaches
//! ([`Decoding`]); SSKD's training sample in one pass per stage
//! ([`rotations_train_sample`]: `RandomResizedCrop(size, (0.08, 1), (3/4, 4/3))`, flip, four
//! rotations, ImageNet's mean and std); the four transforms of a run ([`ImageNetTransforms`],
//! evaluation with `Resize(size·256/224)` + `CenterCrop(size)`); and synthetic JPEG folders of
//! ImageNet's sizes for benchmarks and tests ([`write_synthetic_folder`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::data::dataset::Dataset;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sskd_augment::loader::Sample;
use sskd_augment::normalize::{normalize_rotations, IMAGENET_MEAN, IMAGENET_STD};
use sskd_augment::recipes::{imagenet_train_draws, imagenet_train_window, imagenet_val_at};
use sskd_augment::resize::resize_window_bilinear;
use sskd_data::folders::{decode_rgb, ImageFiles};
use sskd_data::window::{decode_rgb_window, Window};
use sskd_data::DataError;
use sskd_train::stages::Transform;

/// Image files of a class-folder layout as a dataset of `(file, label)`: each file is decoded
/// by the transform when the loader asks for it, so a bad file is an error naming it.
#[derive(Debug, Clone)]
pub struct ImageFolderFiles(pub ImageFiles);

impl Dataset<(PathBuf, usize)> for ImageFolderFiles {
    fn get(&self, index: usize) -> Option<(PathBuf, usize)> {
        self.0.files.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.0.files.len()
    }
}

/// A transform of a file into a sample made by `make` from the decoded image and its label;
/// a file that does not decode is an error naming it.
pub fn file_transform(
    make: impl Fn(&RgbImage, usize, &mut StdRng) -> Sample + Send + Sync + 'static,
) -> Transform<(PathBuf, usize)> {
    Arc::new(move |(path, label): (PathBuf, usize), rng: &mut StdRng| {
        Ok(make(&decode_rgb(&path)?, label, rng))
    })
}

/// One normalised copy of `image` (ImageNet's mean and std) as a sample `[1, 3, H, W]`.
fn plain_sample(image: &RgbImage, label: usize) -> Sample {
    Sample::from_images(
        std::slice::from_ref(image),
        IMAGENET_MEAN,
        IMAGENET_STD,
        label,
    )
}

/// SSKD's training sample of `image` at crop `size`: `RandomResizedCrop(size, (0.08, 1),
/// (3/4, 4/3))`, a horizontal flip with p = 0.5, the four rotations of that crop, normalised
/// with ImageNet's mean and std — `[4, 3, size, size]`. One pass per stage: the window is
/// resized without being copied out, the flip and the rotations are index permutations done
/// while normalising; the floats are those of [`imagenet_train_at`], [`rotate90`] and
/// [`Sample::from_images`] one after the other.
///
/// [`rotate90`]: sskd_augment::geometry::rotate90
/// [`imagenet_train_at`]: sskd_augment::recipes::imagenet_train_at
pub fn rotations_train_sample(
    image: &RgbImage,
    size: u32,
    label: usize,
    rng: &mut StdRng,
) -> Sample {
    let (window, mirror) = imagenet_train_draws(image.width(), image.height(), rng);
    rotations_window_sample(image, window, mirror, size, label)
}

/// [`rotations_train_sample`] for a window `(top, left, height, width)` and flip already
/// drawn ([`imagenet_train_draws`]); only the window's pixels of `image` are read.
pub fn rotations_window_sample(
    image: &RgbImage,
    window: Window,
    mirror: bool,
    size: u32,
    label: usize,
) -> Sample {
    rotations_sample(
        &resize_window_bilinear(image, window, size, size),
        mirror,
        label,
    )
}

/// The four rotations of a square `crop` (mirrored first when `mirror`), normalised with
/// ImageNet's mean and std, as a sample `[4, 3, S, S]`.
pub fn rotations_sample(crop: &RgbImage, mirror: bool, label: usize) -> Sample {
    let side = crop.width() as usize;
    Sample {
        pixels: normalize_rotations(crop, mirror, IMAGENET_MEAN, IMAGENET_STD),
        shape: [4, 3, side, side],
        label,
    }
}

/// How the training transforms decode a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    /// As far as the crop window reaches ([`decode_rgb_window`]: a JPEG's rows below the
    /// window are not read, and only the window's columns are transformed): the same samples
    /// as [`Decoding::Whole`], bit for bit, for less work. The default.
    #[default]
    Window,
    /// The whole image ([`decode_rgb`]), then the crop.
    Whole,
}

/// A training transform of a file: the crop window and flip drawn for the image's size
/// ([`imagenet_train_draws`]), the file decoded as `decoding` says, the sample made by `make`
/// from the image, the window, the flip and the label. A file that does not decode is an error
/// naming it.
pub fn train_transform(
    decoding: Decoding,
    make: impl Fn(&RgbImage, Window, bool, usize) -> Sample + Send + Sync + 'static,
) -> Transform<(PathBuf, usize)> {
    Arc::new(move |(path, label): (PathBuf, usize), rng: &mut StdRng| {
        let (image, window, mirror) = decode_train_crop(&path, decoding, rng)?;
        Ok(make(&image, window, mirror, label))
    })
}

/// Image file `path` decoded for a training crop: the window and flip drawn for its size
/// ([`imagenet_train_draws`]), the file decoded as `decoding` says — `(image, window, mirror)`;
/// the window's pixels are exact either way.
pub fn decode_train_crop(
    path: &Path,
    decoding: Decoding,
    rng: &mut StdRng,
) -> Result<(RgbImage, Window, bool), DataError> {
    let mut mirror = false;
    let mut choose = |width, height| {
        let (window, flip) = imagenet_train_draws(width, height, rng);
        mirror = flip;
        window
    };
    let (image, window) = match decoding {
        Decoding::Window => decode_rgb_window(path, choose)?,
        Decoding::Whole => {
            let image = decode_rgb(path)?;
            let window = choose(image.width(), image.height());
            (image, window)
        }
    };
    Ok((image, window, mirror))
}

/// The four transforms of a run at crop `size`: plain and four-rotation, training and
/// evaluation.
pub struct ImageNetTransforms {
    /// Training crop, one copy.
    pub plain_train: Transform<(PathBuf, usize)>,
    /// Training crop, four rotations.
    pub rotations_train: Transform<(PathBuf, usize)>,
    /// Evaluation crop, one copy.
    pub plain_test: Transform<(PathBuf, usize)>,
    /// Evaluation crop, four rotations.
    pub rotations_test: Transform<(PathBuf, usize)>,
}

impl ImageNetTransforms {
    /// The transforms at crop `size` (224 for ImageNet), training files decoded as far as
    /// their crop window reaches.
    pub fn new(size: u32) -> Self {
        Self::with_decoding(size, Decoding::Window)
    }

    /// The transforms at crop `size`, training files decoded as `decoding` says (evaluation
    /// resizes the whole image: it is decoded whole).
    pub fn with_decoding(size: u32, decoding: Decoding) -> Self {
        Self {
            plain_train: train_transform(decoding, move |image, window, mirror, label| {
                plain_sample(&imagenet_train_window(image, window, mirror, size), label)
            }),
            rotations_train: train_transform(decoding, move |image, window, mirror, label| {
                rotations_window_sample(image, window, mirror, size, label)
            }),
            plain_test: file_transform(move |image, label, _| {
                plain_sample(&imagenet_val_at(image, size), label)
            }),
            rotations_test: file_transform(move |image, label, _| {
                rotations_sample(&imagenet_val_at(image, size), false, label)
            }),
        }
    }
}

/// ImageNet's common image sizes (width, height): most photos are 500 pixels on their longer
/// side, landscape more often than portrait.
const IMAGENET_SIZES: [(u32, u32); 6] = [
    (500, 375),
    (500, 333),
    (375, 500),
    (500, 400),
    (640, 480),
    (500, 500),
];

/// Value noise of one octave: a grid of uniform values in [−0.5, 0.5) every `cell` pixels,
/// interpolated bilinearly, `width × height` values row by row.
fn value_noise(width: u32, height: u32, cell: u32, rng: &mut StdRng) -> Vec<f32> {
    let grid_width = (width / cell + 2) as usize;
    let grid: Vec<f32> = (0..grid_width * (height / cell + 2) as usize)
        .map(|_| rng.random::<f32>() - 0.5)
        .collect();
    let mut noise = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        let (row, fy) = ((y / cell) as usize, (y % cell) as f32 / cell as f32);
        for x in 0..width {
            let (column, fx) = ((x / cell) as usize, (x % cell) as f32 / cell as f32);
            let at = |r: usize, c: usize| grid[r * grid_width + c];
            let top = at(row, column) * (1.0 - fx) + at(row, column + 1) * fx;
            let bottom = at(row + 1, column) * (1.0 - fx) + at(row + 1, column + 1) * fx;
            noise.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    noise
}

/// Detail at every scale from 1 to 32 pixels (six octaves of value noise, 50 grey levels
/// each), the same in the three channels up to a gain: what gives a photograph its JPEG size.
fn photo_detail(width: u32, height: u32, rng: &mut StdRng) -> Vec<f32> {
    let mut detail = vec![0f32; (width * height) as usize];
    for cell in [1, 2, 4, 8, 16, 32] {
        for (sum, value) in detail.iter_mut().zip(value_noise(width, height, cell, rng)) {
            *sum += 50.0 * value;
        }
    }
    detail
}

/// A synthetic photo-like image: colour gradients, a few soft blobs, and detail at every scale
/// shared by the channels (JPEG compresses it like a photograph — about 90 KB at 500×375 and
/// quality 90, as ImageNet's files — not like white noise or a flat field).
fn synthetic_photo(width: u32, height: u32, rng: &mut StdRng) -> RgbImage {
    let base: [f32; 3] = std::array::from_fn(|_| rng.random_range(40.0..200.0));
    let slope: [(f32, f32); 3] =
        std::array::from_fn(|_| (rng.random_range(-0.2..0.2), rng.random_range(-0.2..0.2)));
    let gain: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.8..1.2));
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..rng.random_range(3..7))
        .map(|_| {
            let centre = (
                rng.random_range(0.0..width as f32),
                rng.random_range(0.0..height as f32),
            );
            let radius = rng.random_range(30.0..160.0);
            let colour = std::array::from_fn(|_| rng.random_range(-90.0..90.0));
            (centre.0, centre.1, radius, colour)
        })
        .collect();
    let detail = photo_detail(width, height, rng);
    RgbImage::from_fn(width, height, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let texture = detail[(y * width + x) as usize];
        let pixel: [u8; 3] = std::array::from_fn(|c| {
            let mut value = base[c] + slope[c].0 * xf + slope[c].1 * yf + gain[c] * texture;
            for (cx, cy, radius, colour) in &blobs {
                let distance = ((xf - cx).powi(2) + (yf - cy).powi(2)) / (radius * radius);
                value += colour[c] * (-distance).exp();
            }
            value.clamp(0.0, 255.0) as u8
        });
        image::Rgb(pixel)
    })
}

/// Writes a synthetic ImageNet-layout folder under `dir`: `train/` with `per_class` JPEGs of
/// each of `classes` classes (`n00000000`, …) and `val/` with a quarter as many (at least one),
/// of ImageNet's typical sizes (about 500×375) at JPEG quality `quality` (ImageNet's are about
/// 90), the same files for the same `seed`.
pub fn write_synthetic_folder(
    dir: &Path,
    classes: usize,
    per_class: usize,
    (quality, seed): (u8, u64),
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (split, count) in [("train", per_class), ("val", (per_class / 4).max(1))] {
        for class in 0..classes {
            let folder = dir.join(split).join(format!("n{class:08}"));
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            for index in 0..count {
                let (width, height) = IMAGENET_SIZES[rng.random_range(0..IMAGENET_SIZES.len())];
                let photo = synthetic_photo(width, height, &mut rng);
                let path = folder.join(format!("n{class:08}_{index}.JPEG"));
                write_jpeg(&photo, &path, quality)?;
            }
        }
    }
    Ok(())
}

/// `image` as a JPEG of `quality` at `path`.
fn write_jpeg(image: &RgbImage, path: &Path, quality: u8) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, quality)
        .encode_image(image)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sskd_augment::geometry::rotate90;
    use sskd_augment::recipes::imagenet_train_at;

    #[test]
    fn synthetic_folders_decode_to_imagenet_sizes_and_repeat_with_the_seed() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_synthetic_folder(a.path(), 2, 3, (90, 7)).unwrap();
        write_synthetic_folder(b.path(), 2, 3, (90, 7)).unwrap();
        let files = ImageFiles::image_folder(&a.path().join("train")).unwrap();
        assert_eq!((files.files.len(), files.classes.len()), (6, 2));
        for (path, _) in &files.files {
            let image = decode_rgb(path).unwrap();
            assert!(IMAGENET_SIZES.contains(&image.dimensions()), "{path:?}");
            let twin = b.path().join(path.strip_prefix(a.path()).unwrap());
            assert_eq!(std::fs::read(path).unwrap(), std::fs::read(twin).unwrap());
        }
        let val = ImageFiles::image_folder(&a.path().join("val")).unwrap();
        assert_eq!(val.files.len(), 2);
    }

    #[test]
    fn the_training_transform_gives_four_rotations_of_one_normalised_crop() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_folder(dir.path(), 1, 1, (90, 1)).unwrap();
        let files = ImageFiles::image_folder(&dir.path().join("train")).unwrap();
        let transform = ImageNetTransforms::new(32).rotations_train;
        let mut rng = StdRng::seed_from_u64(3);
        let sample = transform(files.files[0].clone(), &mut rng).unwrap();
        assert_eq!(sample.shape, [4, 3, 32, 32]);
        // The 180° copy is the unrotated one read backwards, channel by channel.
        let plane = 32 * 32;
        let (upright, upside_down) = (
            &sample.pixels[..plane],
            &sample.pixels[6 * plane..7 * plane],
        );
        assert!(upright
            .iter()
            .zip(upside_down.iter().rev())
            .all(|(a, b)| a == b));
    }

    #[test]
    fn window_decoding_gives_the_whole_decoding_s_samples() {
        // ImageNet-like files (4:4:4) and Pillow's: 4:2:0 and 4:2:2 with restart markers,
        // progressive and greyscale (decoded whole), sizes off the MCU grid.
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_folder(dir.path(), 1, 4, (90, 5)).unwrap();
        let mut paths: Vec<PathBuf> = ImageFiles::image_folder(&dir.path().join("train"))
            .unwrap()
            .files
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("forks/sskd-jpeg/tests/fixtures");
        for name in [
            "coffee_420_301x203.jpg",
            "cat_420_restart5_451x300.jpg",
            "cat_422_restart_rows_227x150.jpg",
            "coffee_420_progressive_200x120.jpg",
            "coffee_grey_150x100.jpg",
        ] {
            paths.push(fixtures.join(name));
        }
        let (window, whole) = (
            ImageNetTransforms::with_decoding(48, Decoding::Window),
            ImageNetTransforms::with_decoding(48, Decoding::Whole),
        );
        for (index, path) in paths.iter().enumerate() {
            for seed in 0..6 {
                let seed = (index * 10 + seed) as u64;
                for (ours, theirs) in [
                    (&window.rotations_train, &whole.rotations_train),
                    (&window.plain_train, &whole.plain_train),
                ] {
                    let item = (path.clone(), 7);
                    let a = ours(item.clone(), &mut StdRng::seed_from_u64(seed)).unwrap();
                    let b = theirs(item, &mut StdRng::seed_from_u64(seed)).unwrap();
                    assert_eq!((a.shape, a.label), (b.shape, b.label));
                    assert!(a.pixels == b.pixels, "{path:?} seed {seed}");
                }
            }
        }
    }

    #[test]
    fn the_one_pass_sample_is_the_stepwise_pipeline_s() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_folder(dir.path(), 1, 8, (90, 2)).unwrap();
        let files = ImageFiles::image_folder(&dir.path().join("train")).unwrap();
        for (seed, (path, _)) in files.files.iter().enumerate() {
            let image = decode_rgb(path).unwrap();
            let (mut fused_rng, mut stepwise_rng) = (
                StdRng::seed_from_u64(seed as u64),
                StdRng::seed_from_u64(seed as u64),
            );
            let fused = rotations_train_sample(&image, 64, 3, &mut fused_rng);
            let crop = imagenet_train_at(&image, 64, &mut stepwise_rng);
            let copies: Vec<RgbImage> = (0..4).map(|k| rotate90(&crop, k)).collect();
            let stepwise = Sample::from_images(&copies, IMAGENET_MEAN, IMAGENET_STD, 3);
            assert_eq!(fused.shape, stepwise.shape);
            assert!(fused.pixels == stepwise.pixels, "{path:?}");
        }
    }
}
