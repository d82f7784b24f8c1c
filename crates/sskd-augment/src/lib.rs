//! # sskd-augment
//!
//! The augmentations of SSKD and its comparisons on RGB images (`image::RgbImage`), with the
//! semantics of torchvision on PIL images (Pillow's bilinear resize and colour enhancers are
//! reproduced bit for bit), all randomness from a generator passed in ([`rng::sample_rng`]
//! derives one per sample), and a prefetching multi-threaded [`loader`].
//!
//! - [`recipes`]: [`recipes::cifar_train`] (and [`recipes::crop_and_flip`] at any size),
//!   [`recipes::imagenet_train`], [`recipes::imagenet_val`]; [`normalize`] with the datasets'
//!   channel statistics;
//! - [`ss_tasks`]: [`ss_tasks::sskd_rotations`] (the four-rotation sample), the supplementary's
//!   pool ([`ss_tasks::PoolTransform`]: colour drop, rotation, crop + resize, colour jitter) and
//!   its policy [`ss_tasks::sskd_pool`], and the SS-task ablation: [`ss_tasks::jigsaw_task`],
//!   [`ss_tasks::rotation_task`], [`ss_tasks::exemplar`];
//! - [`color`], [`geometry`], [`resize`]: the operations they are made of; [`memory`]: batch
//!   buffers on huge pages.
//!
//! The [`loader`] sits here rather than beside the datasets: it runs these transforms with the
//! per-sample generators of [`rng`], and the datasets crate stays free of them.
//!
//! ## Example
//!
//! ```
//! use image::{Rgb, RgbImage};
//! use sskd_augment::geometry::rotate90;
//!
//! // SSKD's self-supervised views: the image turned by 0, 90, 180 and 270 degrees.
//! let image = RgbImage::from_fn(4, 2, |x, _| Rgb([x as u8, 0, 0]));
//! let turned: Vec<RgbImage> = (0..4).map(|k| rotate90(&image, k)).collect();
//! assert_eq!(turned[1].dimensions(), (2, 4));
//! assert_eq!(turned[2].get_pixel(0, 0), image.get_pixel(3, 1));
//! ```
//!
//! ## Feature flags
//! None.
#![warn(missing_docs)]

pub mod color;
pub mod geometry;
pub mod loader;
pub mod memory;
pub mod normalize;
pub mod recipes;
pub mod resize;
pub mod rng;
pub mod ss_tasks;
