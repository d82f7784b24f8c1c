//! Building blocks shared by the architectures of the zoo: convolution factories with the
//! reference initialisations, a convolution followed by batch norm, pooling and channel shuffle.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};

pub use crate::batch_norm::{BatchNorm, BatchNormConfig};
use crate::conv2d::conv2d;
pub use crate::conv2d::Conv2d;
pub use crate::elementwise::{add, leaky_relu, max_pool2d, relu};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{backend::Backend, s, Tensor};
use std::ops::Range;

/// How the weights of a convolution are drawn, following the reference zoo.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum ConvInit {
    /// `N(0, sqrt(2 / (k·k·out_channels)))`: Kaiming-normal with `mode="fan_out"` and ReLU gain
    /// (ResNets), which is also the `normal_(0, sqrt(2/n))` rule of WRN, VGG and MobileNetV2.
    /// A bias, if any, starts at zero.
    FanOutNormal,
    /// PyTorch's default: Kaiming-uniform with `a = sqrt(5)`, i.e. `U(±1/sqrt(fan_in))` for the
    /// weight and the bias (ShuffleNets).
    PyTorchDefault,
}

impl ConvInit {
    fn weight_initializer(self, channels_out: usize, kernel: usize) -> Initializer {
        match self {
            ConvInit::FanOutNormal => Initializer::Normal {
                mean: 0.0,
                std: (2.0 / (kernel * kernel * channels_out) as f64).sqrt(),
            },
            ConvInit::PyTorchDefault => Initializer::KaimingUniform {
                gain: 1.0 / 3.0f64.sqrt(),
                fan_out_only: false,
            },
        }
    }
}

/// How the classifier `Linear` is initialised, following the reference zoo.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum LinearInit {
    /// PyTorch's default `U(±1/sqrt(in))` for weight and bias (ResNets, ShuffleNets).
    PyTorchDefault,
    /// PyTorch's default weight, zero bias (WRN).
    ZeroBias,
    /// `N(0, 0.01)` weight, zero bias (VGG, MobileNetV2).
    Normal001,
}

/// A square convolution as the reference zoo writes it: `k×k`, `padding = k / 2`, weights
/// drawn as `init` says, by default stride 1, one group and no bias. What a PyTorch reader
/// would read positionally (`nn.Conv2d(in, out, k, stride, padding, groups=…)`) is named:
/// `SquareConvConfig::new([in, out], 3, init).with_stride(2).with_groups(in)`.
#[derive(Config, Debug)]
pub struct SquareConvConfig {
    /// `[channels_in, channels_out]`.
    pub channels: [usize; 2],
    /// The kernel's side `k`.
    pub kernel: usize,
    /// How the weights (and a bias) are drawn.
    pub init: ConvInit,
    /// The stride, the same along both sides.
    #[config(default = 1)]
    pub stride: usize,
    /// The groups (`channels_in` for a depthwise convolution).
    #[config(default = 1)]
    pub groups: usize,
    /// Whether the convolution adds a bias (zero at first for [`ConvInit::FanOutNormal`]).
    #[config(default = false)]
    pub bias: bool,
}

impl SquareConvConfig {
    /// The convolution.
    ///
    /// # Shapes
    /// - input `[batch, channels_in, h, w]`
    /// - output `[batch, channels_out, (h + 2·(k/2) − k) / stride + 1, …]`
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv2d<B> {
        let [_, channels_out] = self.channels;
        let pad = self.kernel / 2;
        let mut layer: Conv2d<B> = Conv2dConfig::new(self.channels, [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_initializer(self.init.weight_initializer(channels_out, self.kernel))
            .with_groups(self.groups)
            .with_bias(self.bias)
            .init(device)
            .into();
        if self.bias && self.init == ConvInit::FanOutNormal {
            layer.bias = Some(Initializer::Zeros.init([channels_out], device));
        }
        layer
    }

    /// The convolution followed by its batch norm.
    pub fn init_with_bn<B: Backend>(&self, device: &B::Device) -> ConvBn<B> {
        ConvBn {
            conv: self.init(device),
            bn: batch_norm(self.channels[1], device),
        }
    }
}

/// Batch norm with PyTorch's defaults (eps 1e-5, momentum 0.1, γ = 1, β = 0).
pub fn batch_norm<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(channels).init(device)
}

/// The classifier `Linear(d_input → d_output)` initialised as `init` says.
pub fn classifier<B: Backend>(
    d_input: usize,
    d_output: usize,
    init: LinearInit,
    device: &B::Device,
) -> Linear<B> {
    let config = LinearConfig::new(d_input, d_output);
    let mut layer = match init {
        LinearInit::Normal001 => config
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device),
        LinearInit::PyTorchDefault | LinearInit::ZeroBias => config.init(device),
    };
    if init != LinearInit::PyTorchDefault {
        layer.bias = Some(Initializer::Zeros.init([d_output], device));
    }
    layer
}

/// A convolution followed by batch norm (no activation): `bn(conv(x))`; built by
/// [`SquareConvConfig::init_with_bn`].
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`
/// - output `[batch, channels_out, h', w']`
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    /// The convolution.
    pub conv: Conv2d<B>,
    /// The batch norm over its output channels.
    pub bn: BatchNorm<B>,
}

impl<B: Backend> ConvBn<B> {
    /// Applies `bn(conv(x))`.
    ///
    /// # Shapes
    /// - input `[batch, channels_in, h, w]`
    /// - output `[batch, channels_out, h', w']` as the convolution gives
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.bn.forward(conv_forward(&self.conv, input))
    }

    /// Applies `relu(bn(conv(x)))`, the ReLU inside the batch norm's passes where the CPU
    /// kernels run ([`BatchNorm::forward_relu`]).
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    pub fn forward_relu(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.bn.forward_relu(conv_forward(&self.conv, input))
    }
}

/// Applies `conv` to `input`, as `conv.forward(input)` does.
///
/// A 1×1 convolution with stride `s > 1` and no padding (the projection shortcuts of ResNet and
/// WRN) is computed as sub-sampling (every `s`-th row and column) followed by the stride-1
/// convolution: the same values with 1/s² of the work, and it sidesteps a bug of Burn 0.21's
/// cubecl backends, whose input gradient of a strided 1×1 convolution is wrong (measured on
/// wgpu; `tests/gpu_matches_cpu.rs` checks it).
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h', w']` as `conv` gives
pub fn conv_forward<B: Backend>(conv: &Conv2d<B>, input: Tensor<B, 4>) -> Tensor<B, 4> {
    let unpadded = matches!(
        conv.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    let [stride_h, stride_w] = conv.stride;
    if conv.kernel_size != [1, 1] || conv.stride == [1, 1] || !unpadded || conv.dilation != [1, 1] {
        return conv.forward(input);
    }
    let subsampled = input.slice(s![.., .., ..;stride_h, ..;stride_w]);
    conv2d(
        subsampled,
        conv.weight.val(),
        conv.bias.as_ref().map(|bias| bias.val()),
        ConvOptions::new([1, 1], [0, 0], [1, 1], conv.groups),
    )
}

/// Global average pooling followed by flattening.
///
/// Equal to the reference's fixed-kernel `avg_pool2d(x, 8)` / `AvgPool2d(4)` / `AvgPool2d(2)` at
/// the input size each architecture was written for, and still defined at other sizes.
///
/// # Shapes
/// - input `[batch, channels, h, w]`
/// - output `[batch, channels]`
pub fn global_avg_pool<B: Backend>(input: Tensor<B, 4>) -> Tensor<B, 2> {
    let [batch, channels, height, width] = input.dims();
    input
        .reshape([batch, channels, height * width])
        .mean_dim(2)
        .reshape([batch, channels])
}

/// The channel shuffle of ShuffleNet: view `[N, g, C/g, H, W]`, swap the two group axes,
/// flatten back (with feature `flex`, one copy of whole planes on the CPU backend:
/// `sskd_kernels::channel_shuffle`).
///
/// # Shapes
/// - input and output `[batch, channels, h, w]`, `channels` divisible by `groups`
#[cfg(feature = "flex")]
pub fn channel_shuffle<B: Backend>(input: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    sskd_kernels::channel_shuffle(input, groups)
}

/// The channel shuffle of ShuffleNet: view `[N, g, C/g, H, W]`, swap the two group axes,
/// flatten back.
///
/// # Shapes
/// - input and output `[batch, channels, h, w]`, `channels` divisible by `groups`
#[cfg(not(feature = "flex"))]
pub fn channel_shuffle<B: Backend>(input: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    let [batch, channels, height, width] = input.dims();
    input
        .reshape([batch, groups, channels / groups, height, width])
        .swap_dims(1, 2)
        .reshape([batch, channels, height, width])
}

/// `cat([first, second], 1)` (with feature `flex`, one copy of whole planes with contiguous
/// gradients on the CPU backend: `sskd_kernels::cat_channels`).
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`
#[cfg(feature = "flex")]
pub fn cat_channels<B: Backend>(first: Tensor<B, 4>, second: Tensor<B, 4>) -> Tensor<B, 4> {
    sskd_kernels::cat_channels(first, second)
}

/// `cat([first, second], 1)`.
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`
#[cfg(not(feature = "flex"))]
pub fn cat_channels<B: Backend>(first: Tensor<B, 4>, second: Tensor<B, 4>) -> Tensor<B, 4> {
    Tensor::cat(vec![first, second], 1)
}

/// Channels `range` of `input` (with feature `flex`, a gradient in one pass on the CPU backend:
/// `sskd_kernels::narrow_channels`).
///
/// # Shapes
/// - input `[batch, channels, h, w]`, output `[batch, range.len(), h, w]`
#[cfg(feature = "flex")]
pub fn narrow_channels<B: Backend>(input: Tensor<B, 4>, range: Range<usize>) -> Tensor<B, 4> {
    sskd_kernels::narrow_channels(input, range)
}

/// Channels `range` of `input`.
///
/// # Shapes
/// - input `[batch, channels, h, w]`, output `[batch, range.len(), h, w]`
#[cfg(not(feature = "flex"))]
pub fn narrow_channels<B: Backend>(input: Tensor<B, 4>, range: Range<usize>) -> Tensor<B, 4> {
    let [batch, _, height, width] = input.dims();
    input.slice([0..batch, range, 0..height, 0..width])
}

/// `channel_shuffle(cat([first, second], 1), groups)`, how ShuffleNetV2's units end (with
/// feature `flex`, one copy of whole planes on the CPU backend:
/// `sskd_kernels::cat_channels_shuffled`).
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`,
///   `c1 + c2` divisible by `groups`
#[cfg(feature = "flex")]
pub fn cat_channels_shuffled<B: Backend>(
    first: Tensor<B, 4>,
    second: Tensor<B, 4>,
    groups: usize,
) -> Tensor<B, 4> {
    sskd_kernels::cat_channels_shuffled(first, second, groups)
}

/// `channel_shuffle(cat([first, second], 1), groups)`, how ShuffleNetV2's units end.
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`,
///   `c1 + c2` divisible by `groups`
#[cfg(not(feature = "flex"))]
pub fn cat_channels_shuffled<B: Backend>(
    first: Tensor<B, 4>,
    second: Tensor<B, 4>,
    groups: usize,
) -> Tensor<B, 4> {
    channel_shuffle(cat_channels(first, second), groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn channel_shuffle_interleaves_groups() {
        let device = Default::default();
        let input = Tensor::<Flex, 1>::from_floats([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], &device)
            .reshape([1, 6, 1, 1]);
        let shuffled = channel_shuffle(input, 2).reshape([6]);
        // [g0: 0 1 2 | g1: 3 4 5] → 0 3 1 4 2 5, as torch's view/permute/reshape does.
        shuffled
            .into_data()
            .assert_eq(&TensorData::from([0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0]), false);
    }

    #[test]
    fn global_avg_pool_means_each_channel() {
        let device = Default::default();
        let input =
            Tensor::<Flex, 1>::from_floats([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 30.0], &device)
                .reshape([1, 2, 2, 2]);
        global_avg_pool(input)
            .into_data()
            .assert_eq(&TensorData::from([[2.5f32, 15.0]]), false);
    }

    #[test]
    fn strided_pointwise_conv_equals_the_strided_convolution() {
        type A = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        for size in [8, 7] {
            let layer = SquareConvConfig::new([4, 6], 1, ConvInit::FanOutNormal)
                .with_stride(2)
                .init::<A>(&device);
            let input = Tensor::<A, 4>::random(
                [2, 4, size, size],
                burn::tensor::Distribution::Default,
                &device,
            )
            .require_grad();
            let expected = layer.forward(input.clone());
            let actual = conv_forward(&layer, input.clone());
            assert_eq!(actual.dims(), expected.dims());
            actual
                .clone()
                .into_data()
                .assert_approx_eq::<f32>(&expected.clone().into_data(), Default::default());
            let expected_grad = input
                .grad(&expected.powf_scalar(2.0).sum().backward())
                .unwrap();
            let actual_grad = input
                .grad(&actual.powf_scalar(2.0).sum().backward())
                .unwrap();
            actual_grad
                .into_data()
                .assert_approx_eq::<f32>(&expected_grad.into_data(), Default::default());
        }
    }

    #[test]
    fn fan_out_conv_has_zero_bias_and_reference_std() {
        let device = Default::default();
        let layer = SquareConvConfig::new([64, 256], 3, ConvInit::FanOutNormal)
            .with_bias(true)
            .init::<Flex>(&device);
        let bias_sum: f32 = layer.bias.unwrap().val().abs().sum().into_scalar();
        assert_eq!(bias_sum, 0.0);
        let weight = layer.weight.val();
        let std: f32 = weight.clone().powf_scalar(2.0).mean().sqrt().into_scalar();
        let expected = (2.0f32 / (9.0 * 256.0)).sqrt();
        assert!(
            (std - expected).abs() < 0.03 * expected,
            "std {std} vs {expected}"
        );
    }
}
