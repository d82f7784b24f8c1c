//! The element-wise operations of the zoo's forward passes and of the losses' modules: ReLU,
//! leaky ReLU and the residual sum. With feature `flex` they run on all cores on the CPU
//! backend (`sskd_kernels::relu`, `sskd_kernels::leaky_relu`, `sskd_kernels::add`; burn-flex
//! runs its own on one thread) and as Burn's operations everywhere else; without it, as
//! Burn's.

use burn::tensor::{backend::Backend, Tensor};

/// The rectified linear unit `max(x, 0)`.
///
/// # Shapes
/// - input: any, output the same
#[cfg(feature = "flex")]
pub fn relu<B: Backend, const D: usize>(input: Tensor<B, D>) -> Tensor<B, D> {
    sskd_kernels::relu(input)
}

/// The rectified linear unit `max(x, 0)`.
///
/// # Shapes
/// - input: any, output the same
#[cfg(not(feature = "flex"))]
pub fn relu<B: Backend, const D: usize>(input: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::relu(input)
}

/// `a + b` for tensors of one shape (a residual connection).
///
/// # Shapes
/// - a, b: the same shape (or shapes Burn broadcasts), output that shape
#[cfg(feature = "flex")]
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    sskd_kernels::add(a, b)
}

/// `a + b` for tensors of one shape (a residual connection).
///
/// # Shapes
/// - a, b: the same shape (or shapes Burn broadcasts), output that shape
#[cfg(not(feature = "flex"))]
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    a + b
}

/// Leaky ReLU: `x` where `x ≥ 0`, `negative_slope · x` elsewhere (PyTorch's gradient at 0,
/// `negative_slope · dy`, on the CPU backend: `sskd_kernels::leaky_relu`).
///
/// # Shapes
/// - input: any, output the same
#[cfg(feature = "flex")]
pub fn leaky_relu<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    negative_slope: f64,
) -> Tensor<B, D> {
    sskd_kernels::leaky_relu(input, negative_slope)
}

/// Leaky ReLU: `x` where `x ≥ 0`, `negative_slope · x` elsewhere.
///
/// # Shapes
/// - input: any, output the same
#[cfg(not(feature = "flex"))]
pub fn leaky_relu<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    negative_slope: f64,
) -> Tensor<B, D> {
    burn::tensor::activation::leaky_relu(input, negative_slope)
}
