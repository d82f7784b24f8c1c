//! The zoo's 2D convolution layer: burn-nn's `Conv2d` (same fields, so the same records and
//! checkpoint keys), whose forward pass runs sskd-kernels' CPU kernels on `Flex` and
//! `Autodiff<Flex>` (feature `flex`) and Burn's convolution on every other backend.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::PaddedConvOptions;
use burn::tensor::{backend::Backend, Tensor};

/// A 2D convolution `y = conv2d(x, weight) + bias`.
///
/// Built from burn-nn's `Conv2dConfig` (`Conv2dConfig::new(..).init(device).into()`); its
/// record is burn-nn's `Conv2d` record, field for field.
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// `[channels_out, channels_in / groups, kernel_h, kernel_w]`.
    pub weight: Param<Tensor<B, 4>>,
    /// `[channels_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Groups of input and output channels.
    pub groups: usize,
    /// The padding.
    pub padding: PaddingConfig2d,
}

impl<B: Backend> From<burn::nn::conv::Conv2d<B>> for Conv2d<B> {
    fn from(conv: burn::nn::conv::Conv2d<B>) -> Self {
        Self {
            weight: conv.weight,
            bias: conv.bias,
            stride: conv.stride,
            kernel_size: conv.kernel_size,
            dilation: conv.dilation,
            groups: conv.groups,
            padding: conv.padding,
        }
    }
}

impl<B: Backend> Conv2d<B> {
    /// Applies the convolution, as burn-nn's `Conv2d::forward` does.
    ///
    /// # Shapes
    /// - input `[batch, channels_in, h, w]`
    /// - output `[batch, channels_out, h_out, w_out]`
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, height, width] = input.dims();
        let (top, bottom) = padding_pair(&self.padding, 0, height, self.kernel_size, self.stride);
        let (left, right) = padding_pair(&self.padding, 1, width, self.kernel_size, self.stride);
        let options = PaddedConvOptions::asymmetric(
            self.stride,
            [top, left],
            [bottom, right],
            self.dilation,
            self.groups,
        );
        conv2d(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|bias| bias.val()),
            options,
        )
    }
}

/// The padding `(before, after)` along `axis` (0: height, 1: width) of an input `size` long, as
/// burn-nn computes it: `Same` pads so that the output is `ceil(size / stride)` long, the odd
/// pixel after.
fn padding_pair(
    padding: &PaddingConfig2d,
    axis: usize,
    size: usize,
    kernel_size: [usize; 2],
    stride: [usize; 2],
) -> (usize, usize) {
    match *padding {
        PaddingConfig2d::Valid => (0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => match axis {
            0 => (top, bottom),
            _ => (left, right),
        },
        PaddingConfig2d::Same => {
            let (kernel, stride) = (kernel_size[axis], stride[axis]);
            let out = size.div_ceil(stride);
            let total = match out {
                0 => 0,
                _ => ((out - 1) * stride + kernel).saturating_sub(size),
            };
            (total / 2, total - total / 2)
        }
    }
}

/// `conv2d(x, weight) + bias` through sskd-kernels (its CPU kernels where `B` is `Flex` or
/// `Autodiff<Flex>`).
#[cfg(feature = "flex")]
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
) -> Tensor<B, 4> {
    sskd_kernels::conv2d(x, weight, bias, options)
}

/// `conv2d(x, weight) + bias` through Burn (the crate is built without `flex`).
#[cfg(not(feature = "flex"))]
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
) -> Tensor<B, 4> {
    burn::tensor::module::conv2d(x, weight, bias, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::conv::Conv2dConfig;
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::{Distribution, Tolerance};

    type B = Autodiff<Flex>;

    /// Same output and gradients as burn-nn's layer, padding of every kind.
    #[test]
    fn matches_burn_nn() {
        let device = Default::default();
        for padding in [
            PaddingConfig2d::Valid,
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            PaddingConfig2d::Explicit(0, 1, 2, 1),
            PaddingConfig2d::Same,
        ] {
            let theirs = Conv2dConfig::new([4, 6], [3, 3])
                .with_groups(2)
                .with_padding(padding)
                .init::<B>(&device);
            // Parameters are drawn lazily, at their first use: draw them before the copy.
            let _ = (theirs.weight.val(), theirs.bias.as_ref().map(|b| b.val()));
            let ours = Conv2d::from(theirs.clone());
            let input =
                Tensor::<B, 4>::random([2, 4, 7, 9], Distribution::Default, &device).require_grad();
            let [mine, burns] = [ours.forward(input.clone()), theirs.forward(input.clone())];
            let tolerance = Tolerance::<f32>::rel_abs(1e-5, 1e-5);
            mine.to_data().assert_approx_eq(&burns.to_data(), tolerance);
            let [my_grads, burn_grads] = [mine.sum().backward(), burns.sum().backward()];
            for (a, b) in [
                (input.grad(&my_grads), input.grad(&burn_grads)),
                (
                    ours.weight.val().grad(&my_grads),
                    theirs.weight.val().grad(&burn_grads),
                ),
            ] {
                a.unwrap()
                    .into_data()
                    .assert_approx_eq(&b.unwrap().into_data(), tolerance);
            }
        }
    }

    /// A record of burn-nn's `Conv2d` loads into ours: checkpoints written before stay usable.
    #[test]
    fn reads_burn_nn_records() {
        let device = Default::default();
        let theirs = Conv2dConfig::new([3, 5], [3, 3]).init::<Flex>(&device);
        let _ = theirs.weight.val(); // drawn lazily: draw it before the record is taken
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder.record(theirs.clone().into_record(), ()).unwrap();
        let record = recorder.load(bytes, &device).unwrap();
        let ours = Conv2d::from(Conv2dConfig::new([3, 5], [3, 3]).init::<Flex>(&device))
            .load_record(record);
        ours.weight
            .val()
            .into_data()
            .assert_eq(&theirs.weight.val().into_data(), true);
    }
}
