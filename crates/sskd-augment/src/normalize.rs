//! `ToTensor` + `Normalize` and the datasets' channel statistics.

use image::RgbImage;

/// CIFAR-100 channel means (SSKD's `cifar.py`).
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4866, 0.4409];
/// CIFAR-100 channel standard deviations.
pub const CIFAR100_STD: [f32; 3] = [0.2675, 0.2565, 0.2761];
/// ImageNet channel means.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `ToTensor` + `Normalize`: planar `C×H×W` floats `(x / 255 − mean) / std`.
pub fn normalize(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (width, height) = image.dimensions();
    let plane = (width * height) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (position, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            out[channel * plane + position] =
                (pixel.0[channel] as f32 / 255.0 - mean[channel]) / std[channel];
        }
    }
    out
}
