//! sskd's CPU kernels for `Flex` (an sskd addition; see `SSKD-PATCH.md`).
//!
//! Which 2D convolution kernels `Flex` runs:
//! By default, sskd's NCHW im2col/GEMM kernels run the forward pass and the input, weight and
//! bias gradients. [`set_enabled`]`(false)` switches the whole process back to burn-flex
//! 0.21.0's own forward and burn-backend 0.21.0's default gradients, so that a benchmark can
//! measure both in one run. Results agree to rounding either way.

//!
//! The fused batch-norm training kernels ([`batch_norm_train_forward`],
//! [`batch_norm_train_backward`]) are not a `ModuleOps` method in Burn 0.21; `sskd-models`
//! calls them from its own autodiff operation on `Autodiff<Flex>`.

pub use crate::ops::batch_norm::{
    batch_norm_train_backward, batch_norm_train_forward, supports as batch_norm_supports,
    BatchNormForward, BatchNormGrads,
};

use core::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether sskd's convolution kernels are in use (the default).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Uses sskd's convolution kernels (`true`, the default) or burn-flex's own path (`false`)
/// for every convolution that starts after the call.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}
