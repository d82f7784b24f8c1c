//! The mean over channels of a power of a feature map through
//! [`channel_mean_kernels`](crate::channel_mean_kernels) on the CPU backend; `None` elsewhere,
//! where the caller runs its composite of Burn's operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::channel_mean_kernels;

/// `mean_C(f^p)` at every pixel, flattened, as PyTorch's `f.pow(p).mean(1).view(b, -1)` (AT's
/// and FT's attention maps before their normalisation).
///
/// On `Autodiff<Flex>` and `Flex` one pass over the map forward and one backward, the images on
/// all cores; burn-flex runs the composite's power, reduction and their gradients as passes on
/// one thread. `None` on every other backend (and with the kernels switched off), where the
/// caller runs its composite.
///
/// # Shapes
/// - features `[b, c, h, w]`, output `[b, h·w]`
pub fn channel_mean_of_powers<B: Backend>(features: Tensor<B, 4>, p: f64) -> Option<Tensor<B, 2>> {
    match kernel_path::<B>(channel_mean_kernels::supports(features.dtype())) {
        KernelPath::Autodiff => {
            let features = primitive_of::<CpuAutodiff, _, 4>(features);
            Some(tensor_of::<B, CpuAutodiff, 2>(tracked(features, p)))
        }
        KernelPath::Flex => {
            let features = primitive_of::<Flex, _, 4>(features);
            let means = channel_mean_kernels::channel_mean_of_powers(&features, p);
            Some(tensor_of::<B, Flex, 2>(means))
        }
        KernelPath::Burn => None,
    }
}

/// The operation's autodiff record; its state is the map and the exponent.
#[derive(Debug)]
struct ChannelMeanBackward;

impl Backward<Flex, 1> for ChannelMeanBackward {
    type State = (FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (features, p) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            channel_mean_kernels::channel_mean_of_powers_backward(&features, p, &grad)
        });
    }
}

fn tracked(features: FloatTensor<CpuAutodiff>, p: f64) -> FloatTensor<CpuAutodiff> {
    let means = channel_mean_kernels::channel_mean_of_powers(&features.primitive, p);
    let prep = ChannelMeanBackward.prepare::<NoCheckpointing>([features.node]);
    finish(prep.compute_bound(), (features.primitive, p), means)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Tolerance;

    type Ad = Autodiff<Flex>;

    /// Burn's operations: the power, the mean over channels, flattened.
    fn composite<B: Backend>(features: Tensor<B, 4>, p: f64) -> Tensor<B, 2> {
        let [batch, _, height, width] = features.dims();
        features
            .powf_scalar(p)
            .mean_dim(1)
            .reshape([batch, height * width])
    }

    /// The weighted sum of the means of a `[2, 3, 4, 5]` map in `f64`, and the map's gradient.
    fn run(means: impl Fn(Tensor<Ad, 4>) -> Tensor<Ad, 2>) -> [burn::tensor::TensorData; 2] {
        let device = Default::default();
        let values: Vec<f64> = (0..120)
            .map(|i| ((i * 37) % 101) as f64 / 25.0 - 2.0)
            .collect();
        let features = Tensor::<Ad, 1>::from_floats(values.as_slice(), &device)
            .cast(burn::tensor::DType::F64)
            .reshape([2, 3, 4, 5])
            .require_grad();
        let weights: Vec<f64> = (0..40)
            .map(|i| ((i * 53) % 97) as f64 / 40.0 - 1.2)
            .collect();
        let weights = Tensor::<Ad, 1>::from_floats(weights.as_slice(), &device)
            .cast(burn::tensor::DType::F64)
            .reshape([2, 20]);
        let out = means(features.clone());
        let grads = (out.clone() * weights).sum().backward();
        [out.into_data(), features.grad(&grads).unwrap().into_data()]
    }

    #[test]
    fn matches_burns_composite_with_its_gradient() {
        let kernel = |f| channel_mean_of_powers(f, 2.0).expect("the CPU backend takes the kernel");
        let ours = run(kernel);
        let burns = run(|f| composite(f, 2.0));
        for (ours, burns) in ours.iter().zip(&burns) {
            ours.assert_approx_eq::<f64>(burns, Tolerance::absolute(1e-13));
        }
    }
}
