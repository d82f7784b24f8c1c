//! 2D max pooling through [`max_pool_kernels`](crate::max_pool_kernels) on the CPU backend, and
//! through Burn's own operation on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::max_pool_kernels::{self, MaxPool2dOptions};

/// `max_pool2d(x)` in floor mode, as `burn::tensor::module::max_pool2d(x, kernel_size, stride,
/// padding, dilation, false)` and PyTorch's `F.max_pool2d`.
///
/// On `Autodiff<Flex>` and `Flex` the planes run on all cores, each window clipped to the image
/// once and its argmax kept as a `u32` for the gradient (burn-flex 0.21 runs it as a 3D pooling
/// with bound checks at every tap and `i64` indices); ties and NaN as PyTorch's CPU kernel
/// takes them. Burn's operation on every other backend.
///
/// # Shapes
/// - x `[batch, channels, h, w]`, output `[batch, channels, oh, ow]`
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Tensor<B, 4> {
    let options = MaxPool2dOptions {
        kernel_size,
        stride,
        padding,
        dilation,
    };
    match kernel_path::<B>(max_pool_kernels::supports(x.dtype())) {
        KernelPath::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, 4>(x);
            tensor_of::<B, CpuAutodiff, 4>(max_pool_tracked(x, options))
        }
        KernelPath::Flex => {
            let x = primitive_of::<Flex, _, 4>(x);
            let (output, _) = max_pool_kernels::max_pool2d_with_indices(&x, options);
            tensor_of::<B, Flex, 4>(output)
        }
        KernelPath::Burn => {
            burn::tensor::module::max_pool2d(x, kernel_size, stride, padding, dilation, false)
        }
    }
}

/// The pooling's autodiff operation; its state is the input's shape and the argmax indices.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = ([usize; 4], Vec<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (shape, indices) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |output_grad| {
            max_pool_kernels::max_pool2d_backward(shape, &output_grad, &indices)
        });
    }
}

fn max_pool_tracked(
    x: FloatTensor<CpuAutodiff>,
    options: MaxPool2dOptions,
) -> FloatTensor<CpuAutodiff> {
    let shape: [usize; 4] = x
        .primitive
        .layout()
        .shape()
        .to_vec()
        .try_into()
        .expect("max_pool2d: a [N, C, H, W] tensor");
    let (output, indices) = max_pool_kernels::max_pool2d_with_indices(&x.primitive, options);
    let prep = MaxPoolBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), (shape, indices), output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Tolerance;

    type Ad = Autodiff<Flex>;

    /// Burn's pooling and ours on distinct values in `f64`, with the gradient of a weighted
    /// sum (the weights make each output's gradient distinct).
    #[test]
    fn matches_burns_pooling_with_its_gradient() {
        let device = Default::default();
        let shape = [2, 3, 9, 8];
        let len: usize = shape.iter().product();
        let values: Vec<f64> = (0..len)
            .map(|i| ((i * 7919) % 1009) as f64 / 97.0)
            .collect();
        let x = Tensor::<Ad, 1>::from_floats(values.as_slice(), &device)
            .cast(burn::tensor::DType::F64)
            .reshape(shape)
            .require_grad();
        for (kernel, stride, padding) in [([2, 2], [2, 2], [0, 0]), ([3, 3], [2, 2], [1, 1])] {
            let run = |ours: bool| {
                let out = match ours {
                    true => max_pool2d(x.clone(), kernel, stride, padding, [1, 1]),
                    false => burn::tensor::module::max_pool2d(
                        x.clone(),
                        kernel,
                        stride,
                        padding,
                        [1, 1],
                        false,
                    ),
                };
                let count = out.shape().num_elements();
                let weights: Vec<f64> = (0..count).map(|i| i as f64 + 1.0).collect();
                let weights = Tensor::<Ad, 1>::from_floats(weights.as_slice(), &device)
                    .cast(burn::tensor::DType::F64)
                    .reshape(out.shape());
                let grads = (out.clone() * weights).sum().backward();
                (out.into_data(), x.grad(&grads).unwrap().into_data())
            };
            let (ours, burns) = (run(true), run(false));
            ours.0
                .assert_approx_eq::<f64>(&burns.0, Tolerance::absolute(0.0));
            ours.1
                .assert_approx_eq::<f64>(&burns.1, Tolerance::absolute(0.0));
        }
    }
}
