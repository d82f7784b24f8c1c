//! burn-flex 0.21.0's own 2D convolution path, kept callable so that benchmarks can compare
//! sskd's kernels (`conv2d_nchw.rs`) with it in the same run (see [`crate::sskd_kernels`]):
//! burn-flex's forward, and burn-backend 0.21.0's default gradients (the input gradient as a
//! transposed convolution, the weight gradient as a convolution over swapped batch and channel
//! dimensions, group by group, the bias gradient as a sum).

use alloc::vec;
use burn_backend::ops::conv::calculate_padding_out;
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, FloatTensorOps, ModuleOps};
use burn_backend::{DType, Slice, TensorMetadata};
use burn_std::Shape;

use super::conv;
use crate::{Flex, FlexTensor};

/// burn-flex's `conv2d`.
pub(crate) fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => conv::conv2d_f32(x, weight, bias, options),
        DType::F64 => conv::conv2d_f64(x, weight, bias, options),
        DType::F16 => conv::conv2d_f16(x, weight, bias, options),
        DType::BF16 => conv::conv2d_bf16(x, weight, bias, options),
        dtype => panic!("conv2d: unsupported dtype {dtype:?}"),
    }
}

fn dims4(shape: Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// burn-backend's default input gradient: a transposed convolution of the output gradient.
pub(crate) fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let [_, _, in_h, in_w] = dims4(x.shape());
    let [_, _, out_h, out_w] = dims4(output_grad.shape());
    let [_, _, k_h, k_w] = dims4(weight.shape());
    let padding_out = |axis: usize, k: usize, size_in: usize, size_out: usize| {
        calculate_padding_out(
            k,
            options.stride[axis],
            options.padding[axis],
            options.dilation[axis],
            size_in,
            size_out,
        )
    };
    Flex::conv_transpose2d(
        output_grad,
        weight,
        None,
        ConvTransposeOptions::new(
            options.stride,
            options.padding,
            [padding_out(0, k_h, in_h, out_h), padding_out(1, k_w, in_w, out_w)],
            options.dilation,
            options.groups,
        ),
    )
}

/// burn-backend's default weight gradient: for each group, burn-flex's convolution of the input
/// by the output gradient with batch and channel dimensions swapped.
pub(crate) fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let weight_shape = weight.shape();
    let [c_out, in_per_group, k_h, k_w] = dims4(weight_shape.clone());
    let out_per_group = c_out / options.groups;
    let x_swapped = Flex::float_swap_dims(x, 0, 1);
    let dy_swapped = Flex::float_swap_dims(output_grad, 0, 1);
    let swapped_options = ConvOptions::new(options.dilation, options.padding, options.stride, 1);
    let mut weight_grad = FlexTensor::zeros(weight_shape, weight.dtype());
    for g in 0..options.groups {
        let x_group = Flex::float_slice(
            x_swapped.clone(),
            &[Slice::from(g * in_per_group..(g + 1) * in_per_group)],
        );
        let dy_group = Flex::float_slice(
            dy_swapped.clone(),
            &[Slice::from(g * out_per_group..(g + 1) * out_per_group)],
        );
        let grad = conv2d(x_group, dy_group, None, &swapped_options);
        let grad = Flex::float_swap_dims(grad, 0, 1);
        let grad = Flex::float_slice(
            grad,
            &[
                Slice::from(0..out_per_group),
                Slice::from(0..in_per_group),
                Slice::from(0..k_h),
                Slice::from(0..k_w),
            ],
        );
        weight_grad = Flex::float_slice_assign(
            weight_grad,
            &[
                Slice::from(g * out_per_group..(g + 1) * out_per_group),
                Slice::from(0..in_per_group),
                Slice::from(0..k_h),
                Slice::from(0..k_w),
            ],
            grad,
        );
    }
    weight_grad
}

/// burn-backend's default bias gradient: the output gradient summed over batch and space.
pub(crate) fn conv2d_bias_backward(bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    let [batch, c_out, out_h, out_w] = dims4(output_grad.shape());
    let grad = Flex::float_swap_dims(output_grad, 0, 1);
    let grad = Flex::float_reshape(grad, Shape::from(vec![c_out, batch * out_h * out_w]));
    let grad = Flex::float_sum_dim(grad, 1);
    Flex::float_reshape(grad, bias.shape())
}
