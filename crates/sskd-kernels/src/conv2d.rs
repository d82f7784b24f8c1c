//! 2D convolution through [`conv2d_kernels`](crate::conv2d_kernels) on the CPU backend, and
//! through Burn's own operation on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::{ConvOptions, FloatTensor, PadMode, PaddedConvOptions};
use burn::tensor::{backend::Backend, DType, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, is, primitive_of, tensor_of, CpuAutodiff};
use crate::conv2d_kernels;

/// `conv2d(x, weight) + bias`, as `burn::tensor::module::conv2d` computes it.
///
/// On `Autodiff<Flex>` one autodiff operation whose forward pass and gradients run this crate's
/// kernels; on `Flex` the forward pass runs them; elsewhere (another backend, an integer or
/// quantized type, after [`set_enabled`](crate::set_enabled)`(false)`) Burn's `conv2d`.
///
/// # Shapes
/// - x `[batch, channels_in, h, w]`
/// - weight `[channels_out, channels_in / groups, kernel_h, kernel_w]`
/// - bias `[channels_out]`
/// - output `[batch, channels_out, h_out, w_out]`
///
/// # Panics
/// If the shapes disagree with each other or with `options.groups`, as Burn's does.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
) -> Tensor<B, 4> {
    let (x, options) = padded_symmetrically(x, options.into());
    let ours = crate::enabled() && supports(x.dtype());
    if ours && is::<B, CpuAutodiff>() {
        let output = forward_tracked(
            primitive_of::<CpuAutodiff, _, 4>(x),
            primitive_of::<CpuAutodiff, _, 4>(weight),
            bias.map(primitive_of::<CpuAutodiff, _, 1>),
            options,
        );
        return tensor_of::<B, CpuAutodiff, 4>(output);
    }
    if ours && is::<B, Flex>() {
        let output = conv2d_kernels::conv2d(
            primitive_of::<Flex, _, 4>(x),
            primitive_of::<Flex, _, 4>(weight),
            bias.map(primitive_of::<Flex, _, 1>),
            &options,
        );
        return tensor_of::<B, Flex, 4>(output);
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// `x` and the options of a convolution with symmetric padding that computes the same as
/// `options` on `x`: asymmetric padding becomes zeros around `x` (as Burn's `conv2d` does).
fn padded_symmetrically<B: Backend>(
    x: Tensor<B, 4>,
    options: PaddedConvOptions<2>,
) -> (Tensor<B, 4>, ConvOptions<2>) {
    let PaddedConvOptions {
        options,
        padding_end,
    } = options;
    let Some([bottom, right]) = padding_end else {
        return (x, options);
    };
    let [top, left] = options.padding;
    let padded = x.pad((left, right, top, bottom), PadMode::Constant(0.0));
    let unpadded = ConvOptions::new(options.stride, [0, 0], options.dilation, options.groups);
    (padded, unpadded)
}

/// Whether the kernels handle tensors of `dtype`.
fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// What the backward pass needs: the input, the weight, the bias (for its shape) and the
/// options.
#[derive(Clone, Debug)]
struct SavedForBackward {
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
}

/// The autodiff operation: parents `[x, weight]` or `[x, weight, bias]`.
#[derive(Debug)]
struct Conv2dBackward;

impl<const PARENTS: usize> Backward<Flex, PARENTS> for Conv2dBackward {
    type State = SavedForBackward;

    fn backward(self, ops: Ops<Self::State, PARENTS>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<Flex>(&ops.node);
        let saved = ops.state;
        for (index, parent) in ops.parents.into_iter().enumerate() {
            let Some(node) = parent else { continue };
            let (x, weight, dy) = (saved.x.clone(), saved.weight.clone(), output_grad.clone());
            let grad = match index {
                0 => conv2d_kernels::conv2d_x_backward(x, weight, dy, &saved.options),
                1 => conv2d_kernels::conv2d_weight_backward(x, weight, dy, &saved.options),
                _ => match &saved.bias {
                    Some(bias) => conv2d_kernels::conv2d_bias_backward(bias.clone(), dy),
                    None => unreachable!("a third parent is the bias"),
                },
            };
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// The forward pass on `Autodiff<Flex>`, recording [`Conv2dBackward`] where any input is
/// tracked.
fn forward_tracked(
    x: FloatTensor<CpuAutodiff>,
    weight: FloatTensor<CpuAutodiff>,
    bias: Option<FloatTensor<CpuAutodiff>>,
    options: ConvOptions<2>,
) -> FloatTensor<CpuAutodiff> {
    let bias_primitive = bias.as_ref().map(|b| b.primitive.clone());
    let output = conv2d_kernels::conv2d(
        x.primitive.clone(),
        weight.primitive.clone(),
        bias_primitive.clone(),
        &options,
    );
    let saved = SavedForBackward {
        x: x.primitive,
        weight: weight.primitive,
        bias: bias_primitive,
        options,
    };
    // Two arities of one operation: with and without a bias.
    match bias {
        Some(bias) => {
            let prep = Conv2dBackward.prepare::<NoCheckpointing>([x.node, weight.node, bias.node]);
            finish(prep.compute_bound(), saved, output)
        }
        None => {
            let prep = Conv2dBackward.prepare::<NoCheckpointing>([x.node, weight.node]);
            finish(prep.compute_bound(), saved, output)
        }
    }
}
