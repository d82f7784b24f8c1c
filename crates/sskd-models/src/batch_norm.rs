//! Batch normalisation with PyTorch's semantics, laid out for fast CPU kernels.
//!
//! A drop-in replacement for `burn::nn::BatchNorm` (same fields, same record, same name, so
//! PyTorch checkpoints map onto it the same way) with two differences:
//! - the running variance is updated with the *unbiased* batch variance, as
//!   `torch.nn.BatchNorm2d` does (Burn's uses the biased one); normalisation itself uses the
//!   biased variance in both;
//! - the normalisation is computed on the input viewed as `[batch·channels, spatial]` with
//!   per-row scale and shift. Burn's layer broadcasts `[1, C, 1, 1]` statistics over
//!   `[N, C, H, W]`, a pattern `burn-flex` runs through a scalar strided iterator; per-row
//!   operands take its SIMD path and the reductions run along contiguous rows. On the CPU
//!   backend this made a resnet8 training step about three times as fast (`docs/performance.md`).
//!
//! On `Autodiff<Flex>` the training forward and backward go further: one fused operation with
//! single-kernel forward and backward passes (`sskd_kernels::batch_norm_train`,
//! feature `flex`); the composite above runs on every other backend.
//! [`BatchNorm::forward_relu`] is `relu(forward(x))` with the ReLU inside those passes (and
//! inside the one pass of inference mode on `Flex`).

use burn::config::Config;
use burn::module::{Initializer, Module, Param, RunningState};
use burn::tensor::{backend::Backend, Tensor};

use crate::elementwise::relu;

/// What follows the normalisation: nothing, or a ReLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Identity,
    Relu,
}

impl Then {
    /// `output`, or its ReLU, on the composite path.
    fn apply<B: Backend, const D: usize>(self, output: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Then::Identity => output,
            Then::Relu => relu(output),
        }
    }

    /// The same for the CPU kernels.
    #[cfg(feature = "flex")]
    fn kernel(self) -> sskd_kernels::Activation {
        match self {
            Then::Identity => sskd_kernels::Activation::Identity,
            Then::Relu => sskd_kernels::Activation::Relu,
        }
    }
}

/// Configuration of a [`BatchNorm`] layer.
#[derive(Config, Debug)]
pub struct BatchNormConfig {
    /// Number of channels `C`.
    pub num_features: usize,
    /// Added to the variance before the square root. Default: 1e-5, as PyTorch.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the new batch statistic in the running averages. Default: 0.1, as PyTorch.
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// Batch normalisation over `[batch, channels, ...]`: `y = (x − E[x]) / √(Var[x] + ε) · γ + β`,
/// with batch statistics on an autodiff backend (and the running averages updated) and the
/// running statistics otherwise.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// Scale γ, `[C]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift β, `[C]`.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean, `[C]`.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance, `[C]`.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the new batch statistic in the running averages.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub epsilon: f64,
}

impl BatchNormConfig {
    /// A layer with γ = 1, β = 0, running mean 0 and running variance 1.
    pub fn init<B: Backend>(&self, device: &B::Device) -> BatchNorm<B> {
        BatchNorm {
            gamma: Initializer::Ones.init([self.num_features], device),
            beta: Initializer::Zeros.init([self.num_features], device),
            running_mean: RunningState::new(Tensor::zeros([self.num_features], device)),
            running_var: RunningState::new(Tensor::ones([self.num_features], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

/// A `[1, C]` per-channel value repeated for each sample as a `[batch·C, 1]` column, the
/// operand shape `burn-flex` applies with SIMD.
fn per_row<B: Backend>(channel_values: Tensor<B, 2>, batch: usize) -> Tensor<B, 2> {
    let channels = channel_values.dims()[1];
    channel_values
        .repeat_dim(0, batch)
        .reshape([batch * channels, 1])
}

/// `rows · scale + shift` for rows `[batch·C, len]` and per-channel `scale`, `shift` `[C]`.
fn scale_shift_rows<B: Backend>(
    rows: Tensor<B, 2>,
    batch: usize,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let channels = scale.dims()[0];
    let (scale, shift) = (scale.reshape([1, channels]), shift.reshape([1, channels]));
    rows.mul(per_row(scale, batch)).add(per_row(shift, batch))
}

/// The per-channel mean `[1, C]` of rows `[batch·C, len]` (row means first, then over samples).
fn channel_mean<B: Backend>(rows: Tensor<B, 2>, batch: usize, channels: usize) -> Tensor<B, 2> {
    rows.mean_dim(1).reshape([batch, channels]).mean_dim(0)
}

impl<B: Backend> BatchNorm<B> {
    /// Normalises `input` `[batch, C, ...]` (rank ≥ 2); the output has the input's shape.
    ///
    /// # Panics
    /// If the rank is below 2 or dimension 1 is not `C`.
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        self.normalise(input, true, Then::Identity)
    }

    /// `relu(self.forward(input))`: the same values and gradients, with the ReLU computed in
    /// the batch norm's own passes where the CPU kernels run (two passes over the activation
    /// and a buffer fewer).
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_relu<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        self.normalise(input, true, Then::Relu)
    }

    /// [`forward`](Self::forward) that leaves the running statistics as they are: for a
    /// second look at a tensor this layer already normalised in the same step (the WRN
    /// pre-activation features), which must not count the batch twice.
    pub fn forward_without_update<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        self.normalise(input, false, Then::Identity)
    }

    /// The layer as PyTorch runs it in `eval()` mode inside a training step whose optimiser
    /// does not hold it: the running statistics normalise (and stay as they are), and γ and β
    /// receive no gradient, while the input still does.
    pub fn forward_frozen<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let dims = input.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let len: usize = dims[2..].iter().product();
        let rows = input.reshape([batch * channels, len]);
        let frozen = (self.gamma.val().detach(), self.beta.val().detach());
        let output = self.inference_rows(rows, batch, frozen);
        output.reshape(dims)
    }

    fn normalise<const D: usize>(
        &self,
        input: Tensor<B, D>,
        update: bool,
        then: Then,
    ) -> Tensor<B, D> {
        let dims = input.dims();
        assert!(
            D >= 2,
            "BatchNorm needs [batch, channels, ...], got rank {D}"
        );
        let channels = dims[1];
        let [num_features] = self.gamma.dims();
        assert_eq!(
            channels, num_features,
            "BatchNorm of {num_features} channels given {channels}"
        );
        if !B::ad_enabled(&input.device()) {
            return self.inference(input, then);
        }
        #[cfg(feature = "flex")]
        let input = match self.forward_fused(input, update, then) {
            Ok(output) => return output,
            Err(input) => input,
        };
        then.apply(self.normalise_composite(input, update))
    }

    /// [`normalise`](Self::normalise) as a composite of generic tensor ops on rows
    /// `[batch·C, spatial]`, for every backend.
    fn normalise_composite<const D: usize>(
        &self,
        input: Tensor<B, D>,
        update: bool,
    ) -> Tensor<B, D> {
        let dims = input.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let len: usize = dims[2..].iter().product();
        let rows = input.reshape([batch * channels, len]);
        let output = if B::ad_enabled(&rows.device()) {
            self.forward_train(rows, batch, channels, update)
        } else {
            self.inference_rows(rows, batch, (self.gamma.val(), self.beta.val()))
        };
        output.reshape(dims)
    }

    /// Inference mode on a backend without autodiff: the statistics folded once, then one pass
    /// of the CPU kernel (`sskd_kernels::batch_norm_inference`, the same values) where it
    /// applies, else the composite's two operations on rows.
    fn inference<const D: usize>(&self, input: Tensor<B, D>, then: Then) -> Tensor<B, D> {
        let (scale, shift) = self.folded_scale_shift(self.gamma.val(), self.beta.val());
        #[cfg(feature = "flex")]
        if let Some(output) =
            sskd_kernels::batch_norm_inference(&input, &scale, &shift, then.kernel())
        {
            return output;
        }
        let dims = input.dims();
        let len: usize = dims[2..].iter().product();
        let rows = input.reshape([dims[0] * dims[1], len]);
        then.apply(scale_shift_rows(rows, dims[0], scale, shift).reshape(dims))
    }

    /// The training forward pass through the fused CPU kernels
    /// (`sskd_kernels::batch_norm_train`); the input back where they do not apply.
    #[cfg(feature = "flex")]
    fn forward_fused<const D: usize>(
        &self,
        input: Tensor<B, D>,
        update: bool,
        then: Then,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        let activation = then.kernel();
        let Some(fused) =
            sskd_kernels::batch_norm_train(&input, &gamma, &beta, self.epsilon, activation)
        else {
            return Err(input);
        };
        if update {
            let channels = gamma.dims()[0];
            let count = input.shape().num_elements() / channels;
            self.update_running(
                fused.mean.reshape([1, channels]),
                fused.variance.reshape([1, channels]),
                count,
            );
        }
        Ok(fused.output)
    }

    fn gamma_beta(&self, channels: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        (
            self.gamma.val().reshape([1, channels]),
            self.beta.val().reshape([1, channels]),
        )
    }

    /// `rows · scale + shift` `[batch·C, len]` with the running statistics and the given γ
    /// and β `[C]` folded into one scale and shift.
    fn inference_rows(
        &self,
        rows: Tensor<B, 2>,
        batch: usize,
        (gamma, beta): (Tensor<B, 1>, Tensor<B, 1>),
    ) -> Tensor<B, 2> {
        let (scale, shift) = self.folded_scale_shift(gamma, beta);
        scale_shift_rows(rows, batch, scale, shift)
    }

    /// The running statistics and the given γ and β `[C]` folded into one scale
    /// `γ / √(var + ε)` and shift `β − mean · scale` per channel, `[C]` each.
    fn folded_scale_shift(
        &self,
        gamma: Tensor<B, 1>,
        beta: Tensor<B, 1>,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let device = gamma.device();
        // Statistics are constants, even when a loaded record left them tracking gradients.
        let statistic =
            |state: &RunningState<Tensor<B, 1>>| state.value().detach().to_device(&device);
        let (mean, var) = (statistic(&self.running_mean), statistic(&self.running_var));
        let scale = gamma.div(var.add_scalar(self.epsilon).sqrt());
        let shift = beta.sub(mean.mul(scale.clone()));
        (scale, shift)
    }

    fn forward_train(
        &self,
        rows: Tensor<B, 2>,
        batch: usize,
        channels: usize,
        update: bool,
    ) -> Tensor<B, 2> {
        let count = rows.dims()[1] * batch;
        let mean = channel_mean(rows.clone(), batch, channels);
        let centered = rows.sub(per_row(mean.clone(), batch));
        let var = channel_mean(centered.clone().square(), batch, channels);
        if update {
            self.update_running(mean.detach(), var.clone().detach(), count);
        }
        let (gamma, beta) = self.gamma_beta(channels);
        let scale = gamma.div(var.add_scalar(self.epsilon).sqrt());
        centered
            .mul(per_row(scale, batch))
            .add(per_row(beta, batch))
    }

    /// `running ← (1 − momentum)·running + momentum·batch`, with the unbiased variance.
    fn update_running(&self, mean: Tensor<B, 2>, biased_var: Tensor<B, 2>, count: usize) {
        let channels = mean.dims()[1];
        let correction = if count > 1 {
            count as f64 / (count - 1) as f64
        } else {
            1.0
        };
        // A data-parallel replica may find the shared running value on another device.
        let device = mean.device();
        let blend = |running: Tensor<B, 1>, batch: Tensor<B, 2>| {
            running
                .to_device(&device)
                .mul_scalar(1.0 - self.momentum)
                .add(batch.reshape([channels]).mul_scalar(self.momentum))
        };
        let running_mean = blend(self.running_mean.value_sync(), mean);
        let running_var = blend(
            self.running_var.value_sync(),
            biased_var.mul_scalar(correction),
        );
        self.running_mean.update(running_mean.detach());
        self.running_var.update(running_var.detach());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::{DType, Distribution, Tolerance};

    type B = Autodiff<Flex>;

    /// Burn's layer (biased running variance) as the reference for everything but the
    /// running variance.
    fn burn_layer(channels: usize, device: &burn::tensor::Device<B>) -> burn::nn::BatchNorm<B> {
        burn::nn::BatchNormConfig::new(channels).init(device)
    }

    #[test]
    fn matches_burn_layer_in_both_modes_and_tracks_unbiased_variance() {
        let device = Default::default();
        let input = Tensor::<B, 4>::random([3, 4, 5, 2], Distribution::Normal(1.0, 2.0), &device);
        let ours = BatchNormConfig::new(4).init::<B>(&device);
        let theirs = burn_layer(4, &device);
        ours.forward(input.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &theirs.forward(input.clone()).into_data(),
                Tolerance::default(),
            );
        ours.running_mean
            .value()
            .into_data()
            .assert_approx_eq::<f32>(
                &theirs.running_mean.value().into_data(),
                Tolerance::default(),
            );
        // Biased batch variance v over n = 30 values: ours keeps 0.9 + 0.1·v·n/(n−1).
        let biased = theirs.running_var.value().sub_scalar(0.9).div_scalar(0.1);
        let expected = biased
            .mul_scalar(30.0 / 29.0)
            .mul_scalar(0.1)
            .add_scalar(0.9);
        ours.running_var
            .value()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
        let (ours, theirs) = (ours.valid(), theirs.valid());
        let mut theirs = theirs;
        theirs.running_var = RunningState::new(ours.running_var.value());
        let input = input.inner();
        ours.forward(input.clone())
            .into_data()
            .assert_approx_eq::<f32>(&theirs.forward(input).into_data(), Tolerance::default());
    }

    /// A layer with γ, β `[C]` as given and fresh running statistics in their float type.
    fn layer_with(gamma: Tensor<B, 1>, beta: Tensor<B, 1>) -> BatchNorm<B> {
        let layer = BatchNormConfig::new(gamma.dims()[0]).init::<B>(&gamma.device());
        let dtype = gamma.dtype();
        BatchNorm {
            running_mean: RunningState::new(layer.running_mean.value().cast(dtype)),
            running_var: RunningState::new(layer.running_var.value().cast(dtype)),
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
            ..layer
        }
    }

    /// The composite of generic ops, then Burn's own ReLU if `then` asks for one: the
    /// reference the kernels are held to.
    fn reference<Bk: Backend, const D: usize>(
        layer: &BatchNorm<Bk>,
        input: Tensor<Bk, D>,
        update: bool,
        then: Then,
    ) -> Tensor<Bk, D> {
        let output = layer.normalise_composite(input, update);
        match then {
            Then::Identity => output,
            Then::Relu => burn::tensor::activation::relu(output),
        }
    }

    /// The fused CPU kernels (the path `forward` and `forward_relu` take on `Autodiff<Flex>`)
    /// against the composite of generic ops (and Burn's ReLU), in `f64`: output, every
    /// gradient and the running statistics.
    #[test]
    fn fused_cpu_kernels_match_the_composite_in_f64() {
        let device = Default::default();
        let cases = [[4, 3, 5, 6], [1, 2, 1, 7], [16, 8, 17, 17]]
            .into_iter()
            .flat_map(|dims| [(dims, Then::Identity), (dims, Then::Relu)]);
        for (dims, then) in cases {
            let random = |mean| {
                Tensor::<B, 1>::random([dims[1]], Distribution::Normal(mean, 0.5), &device)
                    .cast(DType::F64)
            };
            let (gamma, beta) = (random(1.0), random(0.0));
            let input = Tensor::<B, 4>::random(dims, Distribution::Normal(0.5, 2.0), &device)
                .cast(DType::F64);
            let output_grad =
                Tensor::<B, 4>::random(dims, Distribution::Default, &device).cast(DType::F64);
            let run = |fused: bool| {
                // Running statistics are shared between clones: a fresh layer for each path.
                let layer = layer_with(gamma.clone(), beta.clone());
                let input = input.clone().detach().require_grad();
                let output = match fused {
                    true => layer.normalise(input.clone(), true, then),
                    false => reference(&layer, input.clone(), true, then),
                };
                let grads = (output.clone() * output_grad.clone()).sum().backward();
                [
                    output.into_data(),
                    input.grad(&grads).expect("input grad").into_data(),
                    layer.gamma.grad(&grads).expect("γ grad").into_data(),
                    layer.beta.grad(&grads).expect("β grad").into_data(),
                    layer.running_mean.value_sync().into_data(),
                    layer.running_var.value_sync().into_data(),
                ]
            };
            let (fused, composite) = (run(true), run(false));
            assert_eq!(fused[0].dtype, DType::F64, "the fused path keeps f64");
            for (what, (ours, reference)) in ["output", "dx", "dγ", "dβ", "mean", "var"]
                .iter()
                .zip(fused.iter().zip(&composite))
            {
                ours.assert_approx_eq::<f64>(reference, Tolerance::absolute(1e-12));
                assert_eq!(ours.shape, reference.shape, "{what} {dims:?} {then:?}");
            }
        }
    }

    /// Inference mode on `Flex`: the one-pass kernel gives the composite's values bit for bit
    /// (`f32` and `f64`, planes below and above the kernel's parallel threshold, rank 2).
    #[test]
    fn inference_kernel_matches_the_composite_bit_for_bit() {
        let device = Default::default();
        for dtype in [DType::F32, DType::F64] {
            for dims in [vec![2, 3, 4, 5], vec![8, 16, 17, 17], vec![5, 6]] {
                let channels = dims[1];
                let random = |mean| {
                    Tensor::<Flex, 1>::random([channels], Distribution::Normal(mean, 0.5), &device)
                        .cast(dtype)
                };
                let fresh = BatchNormConfig::new(channels).init::<Flex>(&device);
                let layer = BatchNorm {
                    running_mean: RunningState::new(random(0.3)),
                    running_var: RunningState::new(random(2.0).abs()),
                    gamma: Param::from_tensor(random(1.0)),
                    beta: Param::from_tensor(random(0.0)),
                    ..fresh
                };
                let input = Tensor::<Flex, 1>::random(
                    [dims.iter().product::<usize>()],
                    Distribution::Normal(0.5, 2.0),
                    &device,
                )
                .cast(dtype);
                match dims[..] {
                    [n, c] => kernel_is_composite(&layer, input.reshape([n, c])),
                    [n, c, h, w] => kernel_is_composite(&layer, input.reshape([n, c, h, w])),
                    _ => unreachable!("ranks 2 and 4 above"),
                }
            }
        }
    }

    /// `layer.forward` and `layer.forward_relu` (the kernel on `Flex`) equal the composite (and
    /// Burn's ReLU) bit for bit, in its dtype.
    fn kernel_is_composite<const D: usize>(layer: &BatchNorm<Flex>, input: Tensor<Flex, D>) {
        let dtype = input.dtype();
        for then in [Then::Identity, Then::Relu] {
            let kernel = layer.normalise(input.clone(), false, then).into_data();
            let composite = reference(layer, input.clone(), false, then).into_data();
            assert_eq!(kernel.dtype, dtype);
            kernel.assert_eq(&composite, true);
        }
    }

    #[test]
    fn rank_two_inputs_normalise_over_the_batch() {
        let device = Default::default();
        let input = Tensor::<B, 2>::from_floats([[1.0, 10.0], [3.0, 30.0]], &device);
        let output = BatchNormConfig::new(2).init::<B>(&device).forward(input);
        let expected = Tensor::<B, 2>::from_floats([[-1.0, -1.0], [1.0, 1.0]], &device);
        output
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-3));
    }
}
