//! The supervised augmentation recipes of the paper's code: CIFAR train (pad-4 crop and
//! flip, at any size), ImageNet train (random resized crop and flip) and validation (resize
//! and centre crop). All randomness comes from the generator passed in.

use image::RgbImage;
use rand::Rng;

use crate::geometry::{center_crop, horizontal_flip, random_crop, resized_crop_window};
use crate::resize::{resize_shorter_side, resize_window_bilinear};

/// A fair coin flip.
pub(crate) fn coin<R: Rng>(rng: &mut R) -> bool {
    rng.random::<f64>() < 0.5
}

/// CIFAR training: zero-pad 4, random 32×32 crop, horizontal flip with p = 0.5.
pub fn cifar_train<R: Rng>(image: &RgbImage, rng: &mut R) -> RgbImage {
    crop_and_flip(image, 32, 4, rng)
}

/// `RandomCrop(size, padding)` then `RandomHorizontalFlip()`: the CIFAR recipe at any size
/// (e.g. 28 with padding 4 for Fashion-MNIST).
pub fn crop_and_flip<R: Rng>(image: &RgbImage, size: u32, padding: u32, rng: &mut R) -> RgbImage {
    let (cropped, _) = random_crop(image, size, padding, rng);
    if coin(rng) {
        horizontal_flip(&cropped)
    } else {
        cropped
    }
}

/// `RandomResizedCrop(size, scale, ratio)` with Pillow's bilinear resize.
pub fn random_resized_crop<R: Rng>(
    image: &RgbImage,
    size: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> RgbImage {
    let window = resized_crop_window(image.width(), image.height(), scale, ratio, rng);
    resize_window_bilinear(image, window, size, size)
}

/// The draws of ImageNet training for an image of `width × height`, in torchvision's order:
/// `RandomResizedCrop`'s window (top, left, height, width) with scale (0.08, 1) and ratio
/// (3/4, 4/3), then whether `RandomHorizontalFlip` mirrors.
pub fn imagenet_train_draws<R: Rng>(
    width: u32,
    height: u32,
    rng: &mut R,
) -> ((u32, u32, u32, u32), bool) {
    let window = resized_crop_window(width, height, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
    (window, coin(rng))
}

/// ImageNet training at crop `size`: `RandomResizedCrop(size, (0.08, 1), (3/4, 4/3))` +
/// horizontal flip.
pub fn imagenet_train_at<R: Rng>(image: &RgbImage, size: u32, rng: &mut R) -> RgbImage {
    let (window, mirror) = imagenet_train_draws(image.width(), image.height(), rng);
    imagenet_train_window(image, window, mirror, size)
}

/// [`imagenet_train_at`] for a window `(top, left, height, width)` and flip already drawn
/// ([`imagenet_train_draws`]): the window resized to `size × size`, mirrored when `mirror`.
pub fn imagenet_train_window(
    image: &RgbImage,
    window: (u32, u32, u32, u32),
    mirror: bool,
    size: u32,
) -> RgbImage {
    let cropped = resize_window_bilinear(image, window, size, size);
    if mirror {
        horizontal_flip(&cropped)
    } else {
        cropped
    }
}

/// ImageNet training: `RandomResizedCrop(224, (0.08, 1), (3/4, 4/3))` + horizontal flip.
pub fn imagenet_train<R: Rng>(image: &RgbImage, rng: &mut R) -> RgbImage {
    imagenet_train_at(image, 224, rng)
}

/// ImageNet validation at crop `size`: `Resize(size · 256 / 224)` + `CenterCrop(size)`.
pub fn imagenet_val_at(image: &RgbImage, size: u32) -> RgbImage {
    center_crop(&resize_shorter_side(image, size * 256 / 224), size)
}

/// ImageNet validation: `Resize(256)` + `CenterCrop(224)`.
pub fn imagenet_val(image: &RgbImage) -> RgbImage {
    imagenet_val_at(image, 224)
}
