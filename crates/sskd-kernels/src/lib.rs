//! # sskd-kernels
//!
//! CPU kernels for training convolutional networks on Burn 0.21's CPU backend (`Flex`), and the
//! operations that take them from backend-generic code.
//!
//! Burn 0.21's `Flex` computes a convolution's input gradient as a transposed convolution (a
//! serial loop over the batch) and its weight gradient through four permuting copies, and has no
//! batch-norm operation at all (a batch norm is about ten passes over each activation). This
//! crate holds faster kernels on burn-flex's public tensor type ([`conv2d_kernels`],
//! [`batch_norm_kernels`]) and two operations that use them:
//!
//! - [`conv2d`]: a drop-in for `burn::tensor::module::conv2d`. On `Autodiff<Flex>` it is one
//!   autodiff operation whose forward pass and input, weight and bias gradients run these
//!   kernels; on `Flex` the forward pass runs them; on every other backend it calls Burn's.
//! - [`batch_norm_train`]: training-mode batch norm as one autodiff operation on
//!   `Autodiff<Flex>` (`None` elsewhere, where the caller runs its composite of generic ops);
//!   [`batch_norm_inference`]: inference mode in one parallel pass on `Flex`.
//! - [`channel_shuffle`], [`cat_channels`], [`cat_channels_shuffled`] and [`narrow_channels`]:
//!   ShuffleNet's channel shuffle, a channel concatenation (shuffled or not) and a channel
//!   slice, as copies of whole planes ([`channel_kernels`]), with contiguous gradients; Burn's
//!   composites walk strided views element by element on `Flex`.
//! - [`relu`], [`leaky_relu`] and [`add`] (the rectifiers and a residual sum) on all cores, in
//!   place where a buffer is free ([`elementwise_kernels`]); burn-flex runs its element-wise
//!   operations on one thread.
//! - [`gram`]: Gram matrices `x · xᵀ` of row sets with a one-product gradient
//!   ([`gram_kernels`]), for the distillation losses that compare similarities.
//! - [`unit_differences`]: the unit vectors between every pair of rows ([`pairwise_kernels`]),
//!   RKD's angle term, in one pass forward and two backward.
//! - [`channel_mean_of_powers`]: `mean_C(f^p)` at every pixel ([`channel_mean_kernels`]), the
//!   attention maps of AT and FT, in one pass over the map each way.
//! - [`max_pool2d`]: 2D max pooling with its gradient, the planes on all cores
//!   ([`max_pool_kernels`]).
//! - [`mse`] and [`smooth_l1`]: the mean squared and smooth-L1 distances of two tensors
//!   ([`mean_distance_kernels`]) in one pass, their gradients in one more.
//! - [`kl_batchmean`]: knowledge distillation's softened KL divergence of two logit matrices
//!   ([`kl_kernels`]), one pass over the rows each way.
//! - [`sgd_step`]: one step of SGD with momentum and weight decay on a parameter
//!   ([`sgd_kernels`]) in one pass on all cores; burn-flex runs the composite's five passes on
//!   one thread.
//! - [`adopt_main_thread`]: rayon's global pool with the main thread as its first worker, so
//!   that each operation runs on all cores without waking the pool and its caller
//!   ([`main_thread_pool`]), and [`keep_freed_memory`]: the allocator keeps freed memory for the
//!   next step's buffers instead of faulting fresh pages in ([`freed_memory`]); call both first
//!   in `main`.
//!
//! The tensor operations check the backend type at run time, so generic code (`B: Backend`, no
//! extra bound) gets the kernels when `B` is `Autodiff<burn::backend::Flex>` or
//! `burn::backend::Flex`, the types
//! Burn's book teaches, with no `[patch]` in anyone's `Cargo.toml`. [`set_enabled`]`(false)`
//! switches the process back to Burn's own path, so a benchmark can compare both in one run.
//!
//! Every kernel is checked against naive sums in `f64` (the unit tests here) and, through the
//! models of sskd, against PyTorch.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::{ops::ConvOptions, Distribution, Tensor};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let x = Tensor::<B, 4>::random([2, 3, 8, 8], Distribution::Default, &device).require_grad();
//! let weight = Tensor::<B, 4>::random([4, 3, 3, 3], Distribution::Default, &device).require_grad();
//! let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
//!
//! let ours = sskd_kernels::conv2d(x.clone(), weight.clone(), None, options.clone());
//! let burns = burn::tensor::module::conv2d(x.clone(), weight.clone(), None, options);
//! ours.clone().into_data().assert_approx_eq::<f32>(&burns.into_data(), Default::default());
//!
//! let grads = ours.sum().backward();
//! assert_eq!(x.grad(&grads).unwrap().dims(), [2, 3, 8, 8]);
//! ```
#![warn(missing_docs)]

/// Runs the `f32` or `f64` form of a kernel, `$typed::<T>(args)`, by `$dtype`; panics naming
/// `$what` for any other type.
macro_rules! per_float {
    ($what:expr, $dtype:expr, $typed:ident($($arg:expr),*)) => {
        match $dtype {
            burn_backend::DType::F32 => $typed::<f32>($($arg),*),
            burn_backend::DType::F64 => $typed::<f64>($($arg),*),
            dtype => panic!("{}: unsupported dtype {dtype:?}", $what),
        }
    };
}

mod backend_type;
mod batch_norm;
pub mod batch_norm_kernels;
pub mod channel_kernels;
pub mod channel_mean_kernels;
mod channel_mean_ops;
mod channel_ops;
mod conv2d;
pub mod conv2d_kernels;
mod conv_geometry;
mod depthwise_kernels;
mod direct_kernels;
mod direct_weight_kernels;
pub mod elementwise_kernels;
mod elementwise_ops;
mod flex_storage;
mod float_cast;
pub mod freed_memory;
mod gemm_product;
pub mod gram_kernels;
mod gram_ops;
pub mod kl_kernels;
mod kl_ops;
pub mod main_thread_pool;
pub mod max_pool_kernels;
mod max_pool_ops;
pub mod mean_distance_kernels;
mod mean_distance_ops;
mod nt_product;
pub mod pairwise_kernels;
mod pairwise_ops;
mod parallel_chunks;
mod pointwise_kernels;
mod reused_buffers;
pub mod sgd_kernels;
mod sgd_ops;
mod small_map_kernels;
#[cfg(test)]
mod test_values;
mod transpose;
mod wide_vectors;

pub use batch_norm::{batch_norm_inference, batch_norm_train, TrainNormalised};
pub use batch_norm_kernels::Activation;
pub use channel_mean_ops::channel_mean_of_powers;
pub use channel_ops::{cat_channels, cat_channels_shuffled, channel_shuffle, narrow_channels};
pub use conv2d::conv2d;
pub use elementwise_ops::{add, leaky_relu, relu};
pub use freed_memory::{freed_memory_kept, keep_freed_memory};
pub use gram_ops::gram;
pub use kl_ops::kl_batchmean;
pub use main_thread_pool::{adopt_main_thread, MainThreadPoolError};
pub use max_pool_ops::max_pool2d;
pub use mean_distance_ops::{mse, smooth_l1};
pub use pairwise_ops::unit_differences;
pub use sgd_kernels::SgdScalars;
pub use sgd_ops::{sgd_step, sgd_step_applies};

use core::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether [`conv2d`] and [`batch_norm_train`] use this crate's kernels (the default).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Uses this crate's kernels (`true`, the default) or Burn's own path (`false`) for every
/// operation that starts after the call, in the whole process.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}
