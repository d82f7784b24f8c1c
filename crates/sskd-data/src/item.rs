//! The item every reader yields.

use image::RgbImage;

/// An RGB image (`H×W×3`, u8) and its class label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledImage {
    /// The pixels.
    pub image: RgbImage,
    /// The class index (0-based).
    pub label: usize,
}

/// An in-memory set of equally sized images stored as planar `C×H×W` bytes, the layout of the
/// CIFAR and STL-10 binaries.
#[derive(Debug, Clone)]
pub struct PlanarImages {
    /// `count × 3 × height × width` bytes, each image's R plane, then G, then B, row-major.
    pub pixels: Vec<u8>,
    /// Labels, one per image.
    pub labels: Vec<usize>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl PlanarImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The indices of the first `per_class` images of each class, in dataset order (a
    /// class-balanced subset; a class with fewer images contributes all it has).
    pub fn class_balanced(&self, per_class: usize) -> Vec<usize> {
        let classes = self
            .labels
            .iter()
            .max()
            .map_or(0, |&c| c + 1)
            .max(self.classes);
        let mut taken = vec![0usize; classes];
        (0..self.labels.len())
            .filter(|&index| {
                let slot = &mut taken[self.labels[index]];
                *slot += 1;
                *slot <= per_class
            })
            .collect()
    }

    /// Image `index` as an interleaved RGB image, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<RgbImage> {
        let plane = self.height * self.width;
        let start = index.checked_mul(3 * plane)?;
        let planes = self.pixels.get(start..start + 3 * plane)?;
        let mut interleaved = Vec::with_capacity(3 * plane);
        for position in 0..plane {
            interleaved.extend([
                planes[position],
                planes[plane + position],
                planes[2 * plane + position],
            ]);
        }
        RgbImage::from_raw(self.width as u32, self.height as u32, interleaved)
    }
}

impl burn::data::dataset::Dataset<LabeledImage> for PlanarImages {
    fn get(&self, index: usize) -> Option<LabeledImage> {
        Some(LabeledImage {
            image: self.image(index)?,
            label: *self.labels.get(index)?,
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}
