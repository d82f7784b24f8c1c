//! The softened KL divergence of knowledge distillation through
//! [`kl_kernels`](crate::kl_kernels) on the CPU backend; `None` elsewhere, where the caller
//! runs its composite of Burn's operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::kl_kernels::{self, Logits};

/// `(1/R) Σ_i KL(softmax(teacher_i / T) ‖ softmax(student_i / T))` over the `R` rows of two
/// logit matrices, as the CRD and SSKD codebases' `F.kl_div(F.log_softmax(s / T, 1),
/// F.softmax(t / T, 1), size_average=False) / R` (before their `T²`).
///
/// On `Autodiff<Flex>` and `Flex` one pass over the rows for the loss and one for each
/// gradient (the teacher's only where its logits track gradients); Burn's composite is some
/// twenty operations each way. `None` on every other backend (and with the kernels switched
/// off, or for logits of two shapes or types), where the caller runs its composite.
///
/// # Shapes
/// - teacher, student: `[rows, classes]`; output `[1]`
pub fn kl_batchmean<B: Backend>(
    teacher: Tensor<B, 2>,
    student: Tensor<B, 2>,
    temperature: f64,
) -> Option<Tensor<B, 1>> {
    let same = teacher.dims() == student.dims() && teacher.dtype() == student.dtype();
    match kernel_path::<B>(same && kl_kernels::supports(student.dtype())) {
        KernelPath::Autodiff => {
            let teacher = primitive_of::<CpuAutodiff, _, 2>(teacher);
            let student = primitive_of::<CpuAutodiff, _, 2>(student);
            let loss = kl_tracked(teacher, student, temperature);
            Some(tensor_of::<B, CpuAutodiff, 1>(loss))
        }
        KernelPath::Flex => {
            let teacher = primitive_of::<Flex, _, 2>(teacher);
            let student = primitive_of::<Flex, _, 2>(student);
            let loss = kl_kernels::kl_batchmean(&teacher, &student, temperature).loss;
            Some(tensor_of::<B, Flex, 1>(loss))
        }
        KernelPath::Burn => None,
    }
}

/// The divergence's autodiff record; its state is both logit matrices, the forward pass's
/// saved rows and the temperature.
#[derive(Debug)]
struct KlBackward;

impl Backward<Flex, 2> for KlBackward {
    type State = ([FlexTensor; 3], f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([teacher, student, saved], temperature) = ops.state;
        let grad_of = |side| {
            let (logits, saved) = ((&teacher, &student), &saved);
            move |grad: FlexTensor| {
                kl_kernels::kl_batchmean_backward(logits, saved, temperature, &grad, side)
            }
        };
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            grad_of(Logits::Teacher),
            grad_of(Logits::Student),
        );
    }
}

fn kl_tracked(
    teacher: FloatTensor<CpuAutodiff>,
    student: FloatTensor<CpuAutodiff>,
    temperature: f64,
) -> FloatTensor<CpuAutodiff> {
    let forward = kl_kernels::kl_batchmean(&teacher.primitive, &student.primitive, temperature);
    let prep = KlBackward.prepare::<NoCheckpointing>([teacher.node, student.node]);
    let state = (
        [teacher.primitive, student.primitive, forward.saved],
        temperature,
    );
    finish(prep.compute_bound(), state, forward.loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::activation::log_softmax;

    type Ad = Autodiff<Flex>;

    /// Burn's composite, as `sskd_losses::functional` writes it (its divisions by one-element
    /// tensors: Burn's `div_scalar` rounds the gradient's reciprocal to `f32`).
    fn composite<B: Backend>(teacher: Tensor<B, 2>, student: Tensor<B, 2>, t: f64) -> Tensor<B, 1> {
        let rows = student.dims()[0] as f64;
        let scalar = |value: f64| Tensor::full([1, 1], value, (&student.device(), student.dtype()));
        let (p, q) = (
            log_softmax(teacher / scalar(t), 1),
            log_softmax(student.clone() / scalar(t), 1),
        );
        (p.clone().exp() * (p - q)).sum() / scalar(rows).reshape([1])
    }

    /// `[5, 7]` logits in `f64`, both tracking gradients.
    fn logits(seed: usize) -> Tensor<Ad, 2> {
        let values: Vec<f64> = (0..35)
            .map(|i| ((i * 37 + seed * 11) % 101) as f64 / 9.0 - 5.0)
            .collect();
        Tensor::<Ad, 1>::from_floats(values.as_slice(), &Default::default())
            .cast(burn::tensor::DType::F64)
            .reshape([5, 7])
            .require_grad()
    }

    #[test]
    fn matches_burns_composite_with_both_gradients() {
        let run = |loss: &dyn Fn(Tensor<Ad, 2>, Tensor<Ad, 2>) -> Tensor<Ad, 1>| {
            let (teacher, student) = (logits(1), logits(2));
            let value = loss(teacher.clone(), student.clone()).mul_scalar(3.0);
            let grads = value.backward();
            let grad_of = |x: &Tensor<Ad, 2>| x.grad(&grads).unwrap().into_data();
            (value.into_data(), grad_of(&teacher), grad_of(&student))
        };
        let ours = run(&|t, s| kl_batchmean(t, s, 4.0).expect("the CPU kernels"));
        let burns = run(&|t, s| composite(t, s, 4.0));
        let tolerance = burn::tensor::Tolerance::<f64>::absolute(1e-13);
        ours.0.assert_approx_eq::<f64>(&burns.0, tolerance);
        ours.1.assert_approx_eq::<f64>(&burns.1, tolerance);
        ours.2.assert_approx_eq::<f64>(&burns.2, tolerance);
    }

    #[test]
    fn a_constant_teacher_gets_no_gradient() {
        let teacher =
            Tensor::<Ad, 2>::ones([5, 7], &Default::default()).cast(burn::tensor::DType::F64);
        let student = logits(4);
        let grads = kl_batchmean(teacher.clone(), student.clone(), 2.0)
            .expect("the CPU kernels")
            .backward();
        assert!(teacher.grad(&grads).is_none());
        assert_eq!(student.grad(&grads).unwrap().dims(), [5, 7]);
    }
}
