//! The mean squared and smooth-L1 distances through
//! [`mean_distance_kernels`](crate::mean_distance_kernels) on the CPU backend; `None` elsewhere,
//! where the caller runs its composite of Burn's operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::mean_distance_kernels::{self, Distance};

/// `mean((input − target)²)`, as PyTorch's `F.mse_loss(input, target)`.
///
/// On `Autodiff<Flex>` and `Flex` one pass for the loss and one for a gradient, on all cores;
/// burn-flex runs the composite's subtraction, `powf` and mean, and its gradient's `powf`, on
/// one thread each. `None` on every other backend (and with the kernels switched off, or for
/// tensors of two shapes), where the caller runs its composite.
///
/// # Shapes
/// - input, target: the same shape; output `[1]`
pub fn mse<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    target: Tensor<B, D>,
) -> Option<Tensor<B, 1>> {
    mean_distance(input, target, Distance::Squared)
}

/// `mean(smooth_l1(input − target))` with β = 1, as PyTorch's `F.smooth_l1_loss(input,
/// target)`: `0.5 d²` where `|d| < 1`, else `|d| − 0.5`, averaged over every element.
///
/// On `Autodiff<Flex>` and `Flex` one pass for the loss and one for a gradient, on all cores;
/// burn-flex runs the composite's six passes, and as many for the gradient, on one thread each.
/// `None` on every other backend (and with the kernels switched off, or for tensors of two
/// shapes), where the caller runs its composite.
///
/// # Shapes
/// - input, target: the same shape; output `[1]`
pub fn smooth_l1<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    target: Tensor<B, D>,
) -> Option<Tensor<B, 1>> {
    mean_distance(input, target, Distance::SmoothL1)
}

/// [`mse`] or [`smooth_l1`] by `distance`.
fn mean_distance<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    target: Tensor<B, D>,
    distance: Distance,
) -> Option<Tensor<B, 1>> {
    let same = input.dims() == target.dims() && input.dtype() == target.dtype();
    match kernel_path::<B>(same && mean_distance_kernels::supports(input.dtype())) {
        KernelPath::Autodiff => {
            let input = primitive_of::<CpuAutodiff, _, D>(input);
            let target = primitive_of::<CpuAutodiff, _, D>(target);
            let loss = mean_distance_tracked(input, target, distance);
            Some(tensor_of::<B, CpuAutodiff, 1>(loss))
        }
        KernelPath::Flex => {
            let input = primitive_of::<Flex, _, D>(input);
            let target = primitive_of::<Flex, _, D>(target);
            let loss = mean_distance_kernels::mean_distance(&input, &target, distance);
            Some(tensor_of::<B, Flex, 1>(loss))
        }
        KernelPath::Burn => None,
    }
}

/// The loss's autodiff record; its state is both operands.
#[derive(Debug)]
struct MeanDistanceBackward(Distance);

impl Backward<Flex, 2> for MeanDistanceBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (input, target) = ops.state;
        let input_grad = |grad: FlexTensor| {
            mean_distance_kernels::mean_distance_backward(&input, &target, &grad, self.0)
        };
        binary::<Flex, _, _>(ops.parents, ops.node, grads, input_grad, |grad| {
            Flex::float_neg(input_grad(grad))
        });
    }
}

fn mean_distance_tracked(
    input: FloatTensor<CpuAutodiff>,
    target: FloatTensor<CpuAutodiff>,
    distance: Distance,
) -> FloatTensor<CpuAutodiff> {
    let loss = mean_distance_kernels::mean_distance(&input.primitive, &target.primitive, distance);
    let prep = MeanDistanceBackward(distance).prepare::<NoCheckpointing>([input.node, target.node]);
    finish(
        prep.compute_bound(),
        (input.primitive, target.primitive),
        loss,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Tolerance;

    type Ad = Autodiff<Flex>;

    /// Burn's operations in the Huber form `c · (|d| − c / 2)` with `c = min(|d|, 1)`, which
    /// is `d² / 2` inside the unit interval and `|d| − 1/2` outside, with the same gradient.
    fn smooth_l1_composite<B: Backend>(input: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 1> {
        let size = (input - target).abs();
        let clipped = size.clone().clamp_max(1.0);
        (clipped.clone() * (size - clipped.div_scalar(2.0))).mean()
    }

    /// Burn's operations for the squared distance.
    fn mse_composite<B: Backend>(input: Tensor<B, 2>, target: Tensor<B, 2>) -> Tensor<B, 1> {
        let difference = input - target;
        (difference.clone() * difference).mean()
    }

    /// The loss of two `[6, 7]` tensors in `f64` (differences on both sides of ±1), both
    /// tracking gradients, by the given function, with both gradients.
    fn run(
        loss: impl Fn(Tensor<Ad, 2>, Tensor<Ad, 2>) -> Tensor<Ad, 1>,
    ) -> [burn::tensor::TensorData; 3] {
        let device = Default::default();
        let tensor = |seed: usize| {
            let values: Vec<f64> = (0..42)
                .map(|i| ((i * 37 + seed * 11) % 101) as f64 / 25.0 - 2.0)
                .collect();
            Tensor::<Ad, 1>::from_floats(values.as_slice(), &device)
                .cast(burn::tensor::DType::F64)
                .reshape([6, 7])
                .require_grad()
        };
        let (input, target) = (tensor(1), tensor(2));
        let out = loss(input.clone(), target.clone());
        let grads = out.clone().mul_scalar(3.0).backward();
        [
            out.into_data(),
            input.grad(&grads).unwrap().into_data(),
            target.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn matches_burns_composite_with_both_gradients() {
        type Loss = fn(Tensor<Ad, 2>, Tensor<Ad, 2>) -> Tensor<Ad, 1>;
        let cases: [(Loss, Loss); 2] = [
            (
                |a, b| smooth_l1(a, b).expect("the kernel"),
                smooth_l1_composite,
            ),
            (|a, b| mse(a, b).expect("the kernel"), mse_composite),
        ];
        for (ours, burns) in cases {
            for (ours, burns) in run(ours).iter().zip(&run(burns)) {
                ours.assert_approx_eq::<f64>(burns, Tolerance::absolute(1e-14));
            }
        }
    }

    #[test]
    fn a_detached_target_gets_no_gradient() {
        let device = Default::default();
        let input = Tensor::<Ad, 2>::from_floats([[0.5, 3.0], [-2.0, 0.1]], &device).require_grad();
        let target = Tensor::<Ad, 2>::from_floats([[0.0, 0.0], [0.0, 1.0]], &device);
        let loss = smooth_l1(input.clone(), target).expect("the CPU backend takes the kernel");
        let grads = loss.backward();
        input
            .grad(&grads)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(
                &burn::tensor::TensorData::from([[0.125, 0.25], [-0.25, -0.225]]),
                Tolerance::default(),
            );
    }
}
