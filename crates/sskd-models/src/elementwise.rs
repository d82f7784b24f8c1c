//! The element-wise operations of the zoo's forward passes and of the losses' modules: ReLU,
//! leaky ReLU and the residual sum, and the zoo's max pooling. With feature `flex` they run on
//! all cores on the CPU backend (`sskd_kernels::relu`, `sskd_kernels::leaky_relu`,
//! `sskd_kernels::add`, `sskd_kernels::max_pool2d`; burn-flex runs its element-wise operations
//! on one thread, its pooling as a 3D one with bound checks at every tap) and as Burn's
//! operations everywhere else; without it, as Burn's.

use burn::nn::pool::MaxPool2d;
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

/// `pool.forward(input)`: on the CPU backend through `sskd_kernels::max_pool2d` when the pool's
/// padding is none or explicit and symmetric and it floors its output size (the zoo's pools:
/// VGG's 2×2 and the ImageNet ResNets' 3×3 stem pool), else Burn's module.
///
/// # Shapes
/// - input `[batch, channels, h, w]`, output `[batch, channels, oh, ow]`
#[cfg(feature = "flex")]
pub fn max_pool2d<B: Backend>(pool: &MaxPool2d, input: Tensor<B, 4>) -> Tensor<B, 4> {
    use burn::nn::PaddingConfig2d;
    let padding = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return pool.forward(input),
    };
    if pool.ceil_mode {
        return pool.forward(input);
    }
    sskd_kernels::max_pool2d(input, pool.kernel_size, pool.stride, padding, pool.dilation)
}

/// `pool.forward(input)`.
///
/// # Shapes
/// - input `[batch, channels, h, w]`, output `[batch, channels, oh, ow]`
#[cfg(not(feature = "flex"))]
pub fn max_pool2d<B: Backend>(pool: &MaxPool2d, input: Tensor<B, 4>) -> Tensor<B, 4> {
    pool.forward(input)
}
