//! # sskd-data
//!
//! Readers for the datasets of the SSKD experiments, offline, from the files users have:
//! CIFAR-100 (binary and python pickle), CIFAR-10 (binary), STL-10 (binary, folds,
//! unlabeled), Tiny-ImageNet-200, ImageNet-style class folders and (Fashion-)MNIST IDX files.
//! Every reader validates what it reads (sizes, labels, missing files, undecodable images) and
//! fails with a [`DataError`] naming the file and the record. In-memory sets are
//! [`PlanarImages`]; file sets are [`ImageFiles`]; both implement Burn's `Dataset` trait with
//! [`LabeledImage`] items. [`window::decode_rgb_window`] decodes a JPEG only as far as a crop
//! window reaches, for `RandomResizedCrop`-style training.
//!
//! ## Example
//!
//! ```
//! use burn::data::dataset::Dataset;
//! use sskd_data::PlanarImages;
//!
//! // Two 28×28 images (planar R, G, B bytes), as the IDX and CIFAR readers return them.
//! let (height, width) = (28, 28);
//! let pixels = vec![0; 2 * 3 * height * width];
//! let images = PlanarImages { pixels, labels: vec![3, 7], height, width, classes: 10 };
//! let padded = images.padded(2); // a black border: 32×32
//! assert_eq!((padded.height, padded.len()), (32, 2));
//! assert_eq!(padded.get(1).unwrap().label, 7);
//! ```
//!
//! ## Feature flags
//! None.
#![warn(missing_docs)]

pub mod cifar;
mod error;
pub mod folders;
pub mod idx;
mod item;
pub mod pickle;
pub mod stl10;
pub mod window;

pub use error::DataError;
pub use folders::ImageFiles;
pub use item::{ClassLabels, LabeledImage, PlanarImages};
