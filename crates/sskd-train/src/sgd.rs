//! `torch.optim.SGD` with momentum and coupled weight decay, exact in any float type.
//!
//! Burn 0.21's `Sgd` keeps the weight-decay penalty as `f32` and the momentum as the
//! backend's default float element (`f32` on every backend we use), so in an `f64` run its
//! updates are off by ~1e-8 relative (0.9 becomes 0.899999976). This optimizer keeps both as
//! `f64`; scalars reach the kernels in the tensor's own type. Its state record has the same
//! layout as Burn's (`momentum.velocity`), so optimizer states saved before still load.
//!
//! The update, as `torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov=False)`:
//! `d = g + λ·w`; `v = d` at the first step, else `v = μ·v + d`; `w ← w − lr·v`. With feature
//! `flex`, on the CPU backend it is one pass on all cores (`sskd_kernels::sgd_step`, the same
//! values as the tensor operations below, which every other backend runs).

use std::marker::PhantomData;

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{LearningRate, SimpleOptimizer};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// Configuration of [`Sgd`].
#[derive(Config, Debug)]
pub struct SgdConfig {
    /// Momentum μ (0: plain SGD, no velocity kept).
    pub momentum: f64,
    /// Coupled L2 weight decay λ, added to the gradient of every parameter.
    pub weight_decay: f64,
}

impl SgdConfig {
    /// The optimizer for a module `M` on the autodiff backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<Sgd<B::InnerBackend>, M, B> {
        OptimizerAdaptor::from(Sgd {
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            backend: PhantomData,
        })
    }
}

/// SGD with momentum and weight decay (see the module documentation).
#[derive(Clone, Debug)]
pub struct Sgd<B: Backend> {
    momentum: f64,
    weight_decay: f64,
    backend: PhantomData<B>,
}

/// The velocity of one parameter.
#[derive(Record, Clone, Debug)]
pub struct MomentumState<B: Backend, const D: usize> {
    /// `v`, the parameter's shape.
    pub velocity: Tensor<B, D>,
}

/// The state of one parameter (Burn's `SgdState` layout).
#[derive(Record, Clone, Debug)]
pub struct SgdState<B: Backend, const D: usize> {
    /// The velocity, absent when μ = 0.
    pub momentum: Option<MomentumState<B, D>>,
}

/// The state that keeps `velocity` (none when μ = 0).
fn state_of<B: Backend, const D: usize>(velocity: Option<Tensor<B, D>>) -> SgdState<B, D> {
    SgdState {
        momentum: velocity.map(|velocity| MomentumState { velocity }),
    }
}

impl<B: Backend> SimpleOptimizer<B> for Sgd<B> {
    type State<const D: usize> = SgdState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        weight: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let previous = state.and_then(|state| state.momentum);
        #[cfg(feature = "flex")]
        if sskd_kernels::sgd_step_applies::<B>(weight.dtype()) {
            let scalars = sskd_kernels::SgdScalars {
                lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            };
            let velocity = previous.map(|state| state.velocity);
            let (weight, velocity) = sskd_kernels::sgd_step(weight, grad, velocity, scalars);
            return (weight, Some(state_of(velocity)));
        }
        let direction = match self.weight_decay {
            0.0 => grad,
            decay => grad.add(weight.clone().mul_scalar(decay)),
        };
        let (direction, momentum) = match (self.momentum, previous) {
            (0.0, _) => (direction, None),
            (_, None) => (direction.clone(), Some(direction)),
            (momentum, Some(previous)) => {
                let velocity = previous.velocity.mul_scalar(momentum).add(direction);
                (velocity.clone(), Some(velocity))
            }
        };
        (
            weight.sub(direction.mul_scalar(lr)),
            Some(state_of(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        SgdState {
            momentum: state.momentum.map(|m| MomentumState {
                velocity: m.velocity.to_device(device),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::DType;

    type B = Autodiff<Flex>;

    /// Two steps on loss = 3·w² from w = 1, in `dtype`; the final weight as `f64`.
    fn two_steps(dtype: DType) -> f64 {
        let device = Default::default();
        let mut layer = LinearConfig::new(1, 1).with_bias(false).init::<B>(&device);
        layer.weight = Param::from_tensor(Tensor::<B, 2>::ones([1, 1], &device).cast(dtype));
        let mut optimizer = SgdConfig::new(0.9, 0.01).init::<B, Linear<B>>();
        for _ in 0..2 {
            let loss = layer.weight.val().powf_scalar(2.0).mul_scalar(3.0).sum();
            let gradients = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optimizer.step(0.1, layer, gradients);
        }
        let weight = layer.weight.val();
        assert_eq!(
            weight.dtype(),
            dtype,
            "the update keeps the parameter's type"
        );
        weight.into_data().convert::<f64>().to_vec::<f64>().unwrap()[0]
    }

    /// torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01) on loss = 3·w², from w = 1:
    /// step 1 d = 6 + 0.01 = 6.01, v = 6.01, w = 0.399; step 2 d = 6·0.399 + 0.00399 = 2.39799,
    /// v = 0.9·6.01 + 2.39799 = 7.80699, w = 0.399 − 0.780699 = −0.381699.
    const TORCH_WEIGHT: f64 = -0.381699;

    #[test]
    fn matches_torch_optim_sgd_in_f32() {
        let weight = two_steps(DType::F32);
        assert!((weight - TORCH_WEIGHT).abs() < 1e-6, "{weight}");
    }

    /// In `f64` to rounding: momentum and weight decay are not passed through `f32` (with μ
    /// rounded to `f32`, 0.899999976, the weight would be 0.1 · 6.01 · 2.4e-8 ≈ 1.4e-8 off).
    #[test]
    fn matches_torch_optim_sgd_in_f64_to_rounding() {
        let weight = two_steps(DType::F64);
        assert!((weight - TORCH_WEIGHT).abs() < 1e-14, "{weight}");
    }
}
