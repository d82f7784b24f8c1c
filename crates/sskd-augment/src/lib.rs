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
//! - [`color`], [`geometry`], [`resize`]: the operations they are made of.
//!
//! The [`loader`] sits here rather than beside the datasets: it runs these transforms with the
//! per-sample generators of [`rng`], and the datasets crate stays free of them.
//!
//! ## Feature flags
//! None.
#![warn(missing_docs)]

pub mod color;
pub mod geometry;
pub mod loader;
pub mod normalize;
pub mod recipes;
pub mod resize;
pub mod rng;
pub mod ss_tasks;
