//! The supervised augmentation recipes of the paper's code: CIFAR train (pad-4 crop and
//! flip, at any size), ImageNet train (random resized crop and flip) and validation (resize
//! and centre crop). All randomness comes from the generator passed in.

use image::RgbImage;
use rand::Rng;

use crate::geometry::{center_crop, crop, horizontal_flip, random_crop, resized_crop_window};
use crate::resize::{resize_bilinear, resize_shorter_side};

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
    let (top, left, height, width) =
        resized_crop_window(image.width(), image.height(), scale, ratio, rng);
    resize_bilinear(&crop(image, top, left, height, width), size, size)
}

/// ImageNet training: `RandomResizedCrop(224, (0.08, 1), (3/4, 4/3))` + horizontal flip.
pub fn imagenet_train<R: Rng>(image: &RgbImage, rng: &mut R) -> RgbImage {
    let cropped = random_resized_crop(image, 224, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
    if coin(rng) {
        horizontal_flip(&cropped)
    } else {
        cropped
    }
}

/// ImageNet validation: `Resize(256)` + `CenterCrop(224)`.
pub fn imagenet_val(image: &RgbImage) -> RgbImage {
    center_crop(&resize_shorter_side(image, 256), 224)
}
