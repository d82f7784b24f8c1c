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

    /// The images with a black border of `border` pixels on every side, as LeNet took MNIST's
    /// 28×28 digits at 32×32: Fashion-MNIST padded by 2 fits the CIFAR networks, whose
    /// reference models take no less than 29×29.
    pub fn padded(self, border: usize) -> PlanarImages {
        let (height, width) = (self.height + 2 * border, self.width + 2 * border);
        let mut pixels = vec![0u8; self.len() * 3 * height * width];
        let source_rows = self.pixels.chunks_exact(self.width.max(1));
        let target_rows = pixels
            .chunks_exact_mut(width)
            .enumerate()
            .filter(|(row, _)| (border..border + self.height).contains(&(row % height)))
            .map(|(_, row)| row);
        for (target, source) in target_rows.zip(source_rows) {
            target[border..border + self.width].copy_from_slice(source);
        }
        PlanarImages {
            pixels,
            height,
            width,
            ..self
        }
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

/// A labelled dataset whose classes can be listed without reading its images: what a method
/// that draws samples by class (CRD's negatives) needs of the training set.
pub trait ClassLabels {
    /// The class of every sample, in dataset order.
    fn class_labels(&self) -> Vec<usize>;
}

impl ClassLabels for PlanarImages {
    fn class_labels(&self) -> Vec<usize> {
        self.labels.clone()
    }
}

impl<D: ClassLabels + ?Sized> ClassLabels for std::sync::Arc<D> {
    fn class_labels(&self) -> Vec<usize> {
        (**self).class_labels()
    }
}

/// A selection (`burn-dataset`'s subset or shuffle) of a labelled dataset.
impl<D> ClassLabels for burn::data::dataset::transform::SelectionDataset<D, LabeledImage>
where
    D: burn::data::dataset::Dataset<LabeledImage> + ClassLabels,
{
    fn class_labels(&self) -> Vec<usize> {
        let all = self.wrapped.class_labels();
        self.indices.iter().map(|&index| all[index]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_puts_each_plane_inside_a_black_border() {
        // Two 2×3 images: pixel value = 100·image + 10·channel + position.
        let pixels = (0..2)
            .flat_map(|i| {
                (0..3).flat_map(move |c| (0..6).map(move |p| (100 * i + 10 * c + p) as u8))
            })
            .collect();
        let images = PlanarImages {
            pixels,
            labels: vec![4, 7],
            height: 2,
            width: 3,
            classes: 10,
        };
        let padded = images.padded(1);
        assert_eq!((padded.height, padded.width, padded.len()), (4, 5, 2));
        let image = padded.image(1).unwrap();
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(1, 1).0, [100, 110, 120]);
        assert_eq!(image.get_pixel(3, 2).0, [105, 115, 125]);
        assert_eq!(image.get_pixel(4, 3).0, [0, 0, 0]);
        assert_eq!(padded.labels, [4, 7]);
    }
}
