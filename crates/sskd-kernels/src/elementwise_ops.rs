//! ReLU and the sum of two tensors of one shape through
//! [`elementwise_kernels`](crate::elementwise_kernels) (all cores, in place where a buffer is
//! free) on the CPU backend, and through Burn's own operations on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::elementwise_kernels;

fn path_for<B: Backend, const D: usize>(x: &Tensor<B, D>) -> KernelPath {
    kernel_path::<B>(elementwise_kernels::supports(x.dtype()))
}

/// The rectified linear unit `max(x, 0)`, as `burn::tensor::activation::relu`, with PyTorch's
/// NaN handling on the CPU backend (NaN stays NaN; Burn's `Flex` turns it into 0).
///
/// On `Autodiff<Flex>` and `Flex` one pass on all cores, written over `x`'s buffer when
/// nothing else holds it; the gradient likewise. Elsewhere Burn's `relu`.
///
/// # Shapes
/// - x: any, output the same
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match path_for(&x) {
        KernelPath::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, D>(x);
            tensor_of::<B, CpuAutodiff, D>(relu_tracked(x))
        }
        KernelPath::Flex => {
            let x = primitive_of::<Flex, _, D>(x);
            tensor_of::<B, Flex, D>(elementwise_kernels::relu(x))
        }
        KernelPath::Burn => burn::tensor::activation::relu(x),
    }
}

/// `a + b` for tensors of one shape (a residual connection), as `a + b` by Burn's operator.
///
/// On `Autodiff<Flex>` and `Flex` one pass on all cores, written over an operand's buffer when
/// nothing else holds it. Elsewhere, and for operands of different shapes or types (Burn
/// broadcasts), Burn's `add`.
///
/// # Shapes
/// - a, b: the same shape (or shapes Burn broadcasts), output that shape
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return a + b;
    }
    match path_for(&a) {
        KernelPath::Autodiff => {
            let (a, b) = (
                primitive_of::<CpuAutodiff, _, D>(a),
                primitive_of::<CpuAutodiff, _, D>(b),
            );
            tensor_of::<B, CpuAutodiff, D>(add_tracked(a, b))
        }
        KernelPath::Flex => {
            let (a, b) = (primitive_of::<Flex, _, D>(a), primitive_of::<Flex, _, D>(b));
            tensor_of::<B, Flex, D>(elementwise_kernels::add(a, b))
        }
        KernelPath::Burn => a + b,
    }
}

/// ReLU's autodiff operation; its state is the output (the gradient's mask).
#[derive(Debug)]
struct ReluBackward;

impl Backward<Flex, 1> for ReluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            elementwise_kernels::relu_backward(&output, grad)
        });
    }
}

fn relu_tracked(x: FloatTensor<CpuAutodiff>) -> FloatTensor<CpuAutodiff> {
    let output = elementwise_kernels::relu(x.primitive);
    let prep = ReluBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), output.clone(), output)
}

/// The sum's autodiff operation: each operand's gradient is the output's.
#[derive(Debug)]
struct AddBackward;

impl Backward<Flex, 2> for AddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        binary::<Flex, _, _>(ops.parents, ops.node, grads, |grad| grad, |grad| grad);
    }
}

fn add_tracked(
    a: FloatTensor<CpuAutodiff>,
    b: FloatTensor<CpuAutodiff>,
) -> FloatTensor<CpuAutodiff> {
    let output = elementwise_kernels::add(a.primitive, b.primitive);
    AddBackward
        .prepare::<NoCheckpointing>([a.node, b.node])
        .compute_bound()
        .stateless(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Tolerance;

    type Ad = Autodiff<Flex>;

    /// Values of both signs, and zeros, in a `[2, 3, 5, 7]` tensor tracking its gradient.
    fn values(seed: u64) -> Tensor<Ad, 4> {
        let values: Vec<f64> = (0..210u64)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 101.0 - 5.0)
            .collect();
        Tensor::<Ad, 1>::from_floats(values.as_slice(), &Default::default())
            .reshape([2, 3, 5, 7])
            .require_grad()
    }

    /// `relu(a + b) · w`, summed, with the gradients of `a` and `b`, by the given ops.
    fn run(
        add: fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>,
        relu: fn(Tensor<Ad, 4>) -> Tensor<Ad, 4>,
    ) -> [burn::tensor::TensorData; 4] {
        let (a, b) = (values(1), values(2));
        let sum = add(a.clone(), b.clone());
        // `a` feeds the sum and, again, the loss: its gradient accumulates two terms.
        let out = relu(sum.clone()) * values(3).detach() + a.clone();
        let grads = out.clone().sum().backward();
        [
            out.into_data(),
            sum.into_data(),
            a.grad(&grads).unwrap().into_data(),
            b.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn match_burns_operations_with_their_gradients() {
        let ours = run(add, relu);
        let burns = run(|a, b| a + b, burn::tensor::activation::relu);
        for (ours, burns) in ours.iter().zip(&burns) {
            ours.assert_approx_eq::<f32>(burns, Tolerance::absolute(0.0));
        }
    }

    #[test]
    fn untracked_operands_get_no_gradient_and_shapes_broadcast_through_burn() {
        let tracked = values(4);
        let constant = Tensor::<Ad, 4>::ones([2, 3, 5, 7], &Default::default());
        let grads = relu(add(constant.clone(), tracked.clone()))
            .sum()
            .backward();
        assert!(constant.grad(&grads).is_none());
        assert_eq!(tracked.grad(&grads).unwrap().dims(), [2, 3, 5, 7]);
        let row = Tensor::<Ad, 4>::ones([1, 1, 1, 7], &Default::default());
        assert_eq!(add(values(5), row).dims(), [2, 3, 5, 7]);
    }

    #[test]
    fn flex_without_autodiff_takes_the_kernels() {
        let x = Tensor::<Flex, 1>::from_floats([-1.0, f32::NAN, 2.0], &Default::default());
        let y = relu(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert!(y[0] == 0.0 && y[1].is_nan() && y[2] == 2.0);
        let sum = add(x.clone(), x).into_data().to_vec::<f32>().unwrap();
        assert_eq!([sum[0], sum[2]], [-2.0, 4.0]);
    }
}
