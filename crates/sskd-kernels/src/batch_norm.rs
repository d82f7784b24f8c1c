//! The fused batch-norm training operation of the CPU backend (`Autodiff<Flex>`).
//!
//! Burn 0.21 has no batch-norm backend operation, so a batch norm (sskd-models' `BatchNorm`)
//! is a composite of generic tensor ops: about ten passes over each activation in the forward
//! and backward passes together. On `Autodiff<Flex>` this module replaces them with one
//! autodiff operation whose forward and backward are single kernels
//! ([`batch_norm_kernels`](crate::batch_norm_kernels): two reads and one write each way).
//! Models stay generic over `B: Backend`: [`batch_norm_train`] checks at run time whether `B`
//! is `Autodiff<Flex>` and answers `None` for every other backend (and for `f16` / `bf16`
//! tensors, and after [`set_enabled`](crate::set_enabled)`(false)`), where the caller runs the
//! composite.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, is, primitive_of, same_type, tensor_of, CpuAutodiff};
use crate::batch_norm_kernels::{self, Activation};

/// The training-mode batch norm of `x` `[N, C, ...]`, and the batch statistics the running
/// averages are updated with.
pub struct TrainNormalised<B: Backend, const D: usize> {
    /// The normalised input, its shape.
    pub output: Tensor<B, D>,
    /// Batch mean per channel, `[C]` (not tracked).
    pub mean: Tensor<B, 1>,
    /// Biased batch variance per channel, `[C]` (not tracked).
    pub variance: Tensor<B, 1>,
}

/// Training-mode batch norm, followed by `activation`, through the fused CPU kernels, or `None`
/// where they do not apply (another backend, a half-precision tensor, the kernels switched
/// off).
///
/// `input` is `[N, C, ...]`, `gamma` and `beta` `[C]`; statistics over every axis but `C`, as
/// `torch.nn.functional.batch_norm(training=True)` computes them.
pub fn batch_norm_train<B: Backend, const D: usize>(
    input: &Tensor<B, D>,
    gamma: &Tensor<B, 1>,
    beta: &Tensor<B, 1>,
    epsilon: f64,
    activation: Activation,
) -> Option<TrainNormalised<B, D>> {
    if !is::<B, CpuAutodiff>() || !crate::enabled() || !batch_norm_kernels::supports(input.dtype())
    {
        return None;
    }
    let result = forward::<D>(
        primitive_of::<CpuAutodiff, _, D>(input.clone()),
        primitive_of::<CpuAutodiff, _, 1>(gamma.clone()),
        primitive_of::<CpuAutodiff, _, 1>(beta.clone()),
        epsilon,
        activation,
    );
    Some(same_type(result))
}

/// Inference-mode batch norm `x · scale[c] + shift[c]` (`x` `[N, C, ...]`, `scale` and `shift`
/// `[C]`: the running statistics, γ and β folded), then `activation`, in one parallel pass on
/// `Flex`, or `None` elsewhere (another backend, autodiff, a half-precision tensor, the kernels
/// switched off), where the caller runs its composite. Same values as `x * scale + shift` by
/// tensor ops (and a ReLU).
pub fn batch_norm_inference<B: Backend, const D: usize>(
    input: &Tensor<B, D>,
    scale: &Tensor<B, 1>,
    shift: &Tensor<B, 1>,
    activation: Activation,
) -> Option<Tensor<B, D>> {
    if !is::<B, Flex>() || !crate::enabled() || !batch_norm_kernels::supports(input.dtype()) {
        return None;
    }
    let output = batch_norm_kernels::batch_norm_inference(
        &primitive_of::<Flex, _, D>(input.clone()),
        &primitive_of::<Flex, _, 1>(scale.clone()),
        &primitive_of::<Flex, _, 1>(shift.clone()),
        activation,
    );
    Some(tensor_of::<B, Flex, D>(output))
}

/// What the backward pass needs: the input, the forward's per-channel mean and `1/σ`, γ, and
/// the output when a ReLU was applied (its gradient's mask).
#[derive(Clone, Debug)]
struct SavedForBackward {
    input: FlexTensor,
    mean: FlexTensor,
    inv_std: FlexTensor,
    gamma: FlexTensor,
    relu_output: Option<FlexTensor>,
}

/// The autodiff operation: parents `[input, γ, β]`.
#[derive(Debug)]
struct BatchNormTrain;

impl Backward<Flex, 3> for BatchNormTrain {
    type State = SavedForBackward;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<Flex>(&ops.node);
        let saved = ops.state;
        let computed = batch_norm_kernels::batch_norm_train_backward(
            &saved.input,
            (&saved.mean, &saved.inv_std, &saved.gamma),
            output_grad,
            saved.relu_output.as_ref(),
        );
        let [input, gamma, beta] = ops.parents;
        for (parent, grad) in [
            (input, computed.input),
            (gamma, computed.gamma),
            (beta, computed.beta),
        ] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn untracked(tensor: FlexTensor) -> Tensor<CpuAutodiff, 1> {
    Tensor::from_primitive(TensorPrimitive::Float(FloatTensor::<CpuAutodiff>::new(
        tensor,
    )))
}

fn forward<const D: usize>(
    input: FloatTensor<CpuAutodiff>,
    gamma: FloatTensor<CpuAutodiff>,
    beta: FloatTensor<CpuAutodiff>,
    epsilon: f64,
    activation: Activation,
) -> TrainNormalised<CpuAutodiff, D> {
    let computed = batch_norm_kernels::batch_norm_train_forward(
        &input.primitive,
        &gamma.primitive,
        &beta.primitive,
        epsilon,
        activation,
    );
    let saved = SavedForBackward {
        input: input.primitive,
        mean: computed.mean.clone(),
        inv_std: computed.inv_std,
        gamma: gamma.primitive,
        relu_output: (activation == Activation::Relu).then(|| computed.output.clone()),
    };
    let prep = BatchNormTrain.prepare::<NoCheckpointing>([input.node, gamma.node, beta.node]);
    let output = finish(prep.compute_bound(), saved, computed.output);
    TrainNormalised {
        output: Tensor::from_primitive(TensorPrimitive::Float(output)),
        mean: untracked(computed.mean),
        variance: untracked(computed.variance),
    }
}
