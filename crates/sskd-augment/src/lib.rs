//! # sskd-augment
//!
//! The augmentations of SSKD and its comparisons on RGB images (`image::RgbImage`), with the
//! semantics of torchvision on PIL images (Pillow's bilinear resize and colour enhancers are
//! reproduced bit for bit), all randomness from a generator passed in ([`rng::sample_rng`]
//! derives one per sample), and a prefetching multi-threaded [`loader`].
//!
//! - [`pipeline::cifar_train`], [`pipeline::sskd_rotations`] (the four-rotation sample),
//!   [`pipeline::imagenet_train`], [`pipeline::imagenet_val`];
//! - the supplementary's pool ([`pipeline::PoolTransform`]: colour drop, rotation,
//!   crop + resize, colour jitter) and its policy [`pipeline::sskd_pool`];
//! - the SS-task ablation: [`pipeline::jigsaw_task`], [`pipeline::rotation_task`],
//!   [`pipeline::exemplar`].
//!
//! ## Feature flags
//! None.
#![warn(missing_docs)]

pub mod color;
pub mod geometry;
pub mod loader;
pub mod pipeline;
pub mod resize;
pub mod rng;
