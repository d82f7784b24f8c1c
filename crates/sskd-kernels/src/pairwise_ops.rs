//! The unit vectors between every pair of rows through
//! [`pairwise_kernels`](crate::pairwise_kernels) on the CPU backend; `None` elsewhere, where the
//! caller runs its composite of Burn's operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::pairwise_kernels;

/// The unit vectors between every pair of rows of `x`: `u[i, j] = (x_j − x_i) / max(‖x_j −
/// x_i‖, eps)`, as PyTorch's `F.normalize(x.unsqueeze(0) − x.unsqueeze(1), p=2, dim=2,
/// eps=eps)` (RKD's angle term).
///
/// On `Autodiff<Flex>` and `Flex` one pass forward and two backward, on all cores; burn-flex
/// runs the composite's broadcast subtraction, norm and division, and their gradients, each as
/// a pass on one thread. `None` on every other backend (and with the kernels switched off),
/// where the caller runs its composite.
///
/// # Shapes
/// - x `[rows, columns]`, output `[rows, rows, columns]`
pub fn unit_differences<B: Backend>(x: Tensor<B, 2>, eps: f64) -> Option<Tensor<B, 3>> {
    match kernel_path::<B>(pairwise_kernels::supports(x.dtype())) {
        KernelPath::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, 2>(x);
            Some(tensor_of::<B, CpuAutodiff, 3>(unit_differences_tracked(
                x, eps,
            )))
        }
        KernelPath::Flex => {
            let x = primitive_of::<Flex, _, 2>(x);
            let [units, _] = pairwise_kernels::unit_differences(&x, eps);
            Some(tensor_of::<B, Flex, 3>(units))
        }
        KernelPath::Burn => None,
    }
}

/// The operation's autodiff record; its state is the units, their norms and `eps`.
#[derive(Debug)]
struct UnitDifferencesBackward;

impl Backward<Flex, 1> for UnitDifferencesBackward {
    type State = (FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (units, norms, eps) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            pairwise_kernels::unit_differences_backward(&units, &norms, &grad, eps)
        });
    }
}

fn unit_differences_tracked(x: FloatTensor<CpuAutodiff>, eps: f64) -> FloatTensor<CpuAutodiff> {
    let [units, norms] = pairwise_kernels::unit_differences(&x.primitive, eps);
    let prep = UnitDifferencesBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), (units.clone(), norms, eps), units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, Tolerance};

    type Ad = Autodiff<Flex>;

    /// Burn's composite, as RKD's angle term writes it in PyTorch.
    fn composite<B: Backend>(x: Tensor<B, 2>, eps: f64) -> Tensor<B, 3> {
        let differences = x.clone().unsqueeze_dim::<3>(0) - x.unsqueeze_dim::<3>(1);
        let norms = differences
            .clone()
            .powf_scalar(2.0)
            .sum_dim(2)
            .clamp_min(eps * eps)
            .sqrt();
        differences / norms
    }

    /// The units of a `[6, 5]` input in `f64` (rows 2 and 4 equal), weighted and summed, and
    /// the gradient of the input, by the given function.
    fn run(units: impl Fn(Tensor<Ad, 2>) -> Tensor<Ad, 3>) -> [burn::tensor::TensorData; 2] {
        let device = Default::default();
        let mut values: Vec<f64> = (0..30)
            .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let row_two = values[10..15].to_vec();
        values[20..25].copy_from_slice(&row_two);
        let x = Tensor::<Ad, 1>::from_floats(values.as_slice(), &device)
            .cast(burn::tensor::DType::F64)
            .reshape([6, 5])
            .require_grad();
        let weights: Vec<f64> = (0..180)
            .map(|i| ((i * 53) % 97) as f64 / 40.0 - 1.2)
            .collect();
        let weights = Tensor::<Ad, 1>::from_floats(weights.as_slice(), &device)
            .cast(burn::tensor::DType::F64)
            .reshape([6, 6, 5]);
        let out = units(x.clone());
        let grads = (out.clone() * weights).sum().backward();
        [out.into_data(), x.grad(&grads).unwrap().into_data()]
    }

    #[test]
    fn matches_burns_composite_with_its_gradient() {
        // eps 1e-3 keeps the clamped pairs' ū / eps small enough to compare at 1e-12.
        let eps = 1e-3;
        let ours = run(|x| unit_differences(x, eps).expect("the CPU backend takes the kernel"));
        let burns = run(|x| composite(x, eps));
        for (ours, burns) in ours.iter().zip(&burns) {
            ours.assert_approx_eq::<f64>(burns, Tolerance::absolute(1e-12));
        }
    }

    #[test]
    fn flex_without_autodiff_takes_the_kernel() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([7, 4], Distribution::Default, &device);
        let ours = unit_differences(x.clone(), 1e-12).expect("the CPU backend takes the kernel");
        ours.into_data()
            .assert_approx_eq::<f32>(&composite(x, 1e-12).into_data(), Tolerance::default());
    }
}
