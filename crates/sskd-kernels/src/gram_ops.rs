//! Gram matrices through [`gram_kernels`](crate::gram_kernels) on the CPU backend, and through
//! Burn's `matmul` on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::gram_kernels;

/// The Gram matrix of each row set: `G [batch, rows, rows] = x · xᵀ` for `x [batch, rows,
/// columns]`, as `x.clone().matmul(x.swap_dims(1, 2))`.
///
/// On `Autodiff<Flex>` and `Flex` one product per row set (row sets on all cores), and the
/// gradient `(Ḡ + Ḡᵀ) · x` in one product more: Burn's composite takes `x` twice, and
/// burn-flex adds the transposed half of its gradient element by element on one thread.
/// Elsewhere Burn's `matmul`.
///
/// # Shapes
/// - x `[batch, rows, columns]`, output `[batch, rows, rows]`
pub fn gram<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    match kernel_path::<B>(gram_kernels::supports(x.dtype())) {
        KernelPath::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, 3>(x);
            tensor_of::<B, CpuAutodiff, 3>(gram_tracked(x))
        }
        KernelPath::Flex => {
            let x = primitive_of::<Flex, _, 3>(x);
            tensor_of::<B, Flex, 3>(gram_kernels::gram(&x))
        }
        KernelPath::Burn => x.clone().matmul(x.swap_dims(1, 2)),
    }
}

/// The Gram matrix's autodiff operation; its state is the input.
#[derive(Debug)]
struct GramBackward;

impl Backward<Flex, 1> for GramBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            gram_kernels::gram_backward(&x, &grad)
        });
    }
}

fn gram_tracked(x: FloatTensor<CpuAutodiff>) -> FloatTensor<CpuAutodiff> {
    let output = gram_kernels::gram(&x.primitive);
    let prep = GramBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), x.primitive, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, Tolerance};

    type Ad = Autodiff<Flex>;

    /// `Σ gram(x) · w` and the gradient of `x`, by the given Gram function, in `f64`.
    fn run(gram: fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>) -> [burn::tensor::TensorData; 2] {
        let device = Default::default();
        let seeded = |shape: [usize; 3], offset: f64| {
            let len: usize = shape.iter().product();
            let values: Vec<f64> = (0..len)
                .map(|i| ((i * 37) % 101) as f64 / 50.0 - offset)
                .collect();
            Tensor::<Ad, 1>::from_floats(values.as_slice(), &device)
                .cast(burn::tensor::DType::F64)
                .reshape(shape)
        };
        let x = seeded([3, 5, 4], 1.0).require_grad();
        // An asymmetric weighting, so that both halves of the gradient count.
        let weights = seeded([3, 5, 5], 0.3);
        let out = gram(x.clone());
        let grads = (out.clone() * weights).sum().backward();
        [out.into_data(), x.grad(&grads).unwrap().into_data()]
    }

    #[test]
    fn matches_burns_matmul_with_its_gradient() {
        let ours = run(gram);
        let burns = run(|x| x.clone().matmul(x.swap_dims(1, 2)));
        for (ours, burns) in ours.iter().zip(&burns) {
            ours.assert_approx_eq::<f64>(burns, Tolerance::absolute(1e-12));
        }
    }

    #[test]
    fn flex_without_autodiff_takes_the_kernel() {
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random([2, 3, 4], Distribution::Default, &device);
        gram(x.clone()).into_data().assert_approx_eq::<f32>(
            &x.clone().matmul(x.swap_dims(1, 2)).into_data(),
            Tolerance::default(),
        );
    }
}
