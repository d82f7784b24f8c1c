//! # sskd
//!
//! Knowledge distillation meets self-supervision (Xu, Liu, Li, Loy; ECCV 2020) and the
//! CRD-codebase baselines, in pure Rust on [Burn](https://burn.dev).
//!
//! This crate re-exports the workspace crates and owns the examples, benches and integration
//! tests:
//! - [`models`]: the CIFAR-100 / ImageNet model zoo, the SS head, PyTorch weight import;
//! - [`data`], [`augment`], [`losses`], [`train`]: data readers, augmentations, distillation
//!   losses and the training pipeline;
//! - `kernels` (feature `flex`): the CPU kernels the models take on `Flex` and
//!   `Autodiff<Flex>`.
//!
//! ## Example
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use sskd::models::{create_model, BackboneWithHead};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! // A student with SSKD's self-supervision head, on the CPU backend and its kernels.
//! let student = BackboneWithHead::new(create_model::<B>("resnet8", 100, &device).unwrap(), &device);
//! let (output, head) = student.forward(Tensor::zeros([4, 3, 32, 32], &device), true);
//! assert_eq!(output.logits.dims(), [4, 100]);
//! let sskd = sskd::losses::SskdConfig::new().init().unwrap();
//! # let _ = (head, sskd);
//! ```
//!
//! ## Feature flags
//! - `flex` (default): the CPU backend `burn-flex` and sskd-kernels' convolution and batch-norm
//!   kernels for it, used by the tests;
//! - `cuda`: NVIDIA GPUs through `burn-cuda`;
//! - `wgpu`: Vulkan / Metal / DX12 GPUs through `burn-wgpu`;
//! - `fusion`, `autotune`: kernel fusion and autotuning of the cubecl backends;
//! - `wgpu-test`, `cuda-test`: the integration test that runs a model on wgpu or CUDA and
//!   compares it with the CPU.
#![warn(missing_docs)]

pub use sskd_augment as augment;
pub use sskd_data as data;
#[cfg(feature = "flex")]
pub use sskd_kernels as kernels;
pub use sskd_losses as losses;
pub use sskd_models as models;
pub use sskd_train as train;

pub mod cli;
pub mod config;
pub mod experiment;
pub mod imagenet;
pub mod provenance;
pub mod recipe;
#[cfg(feature = "flex")]
pub mod step;

/// README.md's Rust blocks, compiled as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
