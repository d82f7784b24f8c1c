//! # sskd-train
//!
//! The building blocks of SSKD's three-stage pipeline: one epoch of teacher training
//! ([`stages::teacher_epoch`]), of SS-head training on the frozen teacher
//! ([`stages::head_epoch`]), of student distillation with any method of `sskd-losses`
//! ([`stages::student_epoch`]), evaluation, schedules, data parallelism over several devices
//! ([`parallel`]), the run folder with its JSONL log, checkpoints and resume ([`run`]), whole
//! stages over a dataset ([`pipeline`]), plots, linear evaluation and the correlation analysis.
//! Optimisation uses Burn's SGD, which matches `torch.optim.SGD` (coupled weight decay,
//! momentum without dampening; see [`sgd`]).
//!
//! ## Feature flags
//! - `collective`: training across machines with Burn's `burn-collective` ([`nodes`]).
#![warn(missing_docs)]

pub mod analysis;
pub mod metrics;
#[cfg(feature = "collective")]
pub mod nodes;
pub mod parallel;
pub mod pipeline;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod stages;

use std::path::PathBuf;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::SgdConfig;

/// What can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file of the run could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Model(#[from] sskd_models::ModelError),
    /// The data loader failed.
    #[error("data: {0}")]
    Data(String),
    /// A loss rejected its inputs.
    #[error(transparent)]
    Loss(#[from] sskd_losses::LossError),
    /// A training thread of a data-parallel step failed.
    #[error("data-parallel worker: {0}")]
    Worker(String),
    /// The run's settings do not fit together.
    #[error("{0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("{stage} training diverged: the loss is {value}")]
    Diverged {
        /// The stage.
        stage: &'static str,
        /// The loss value.
        value: f64,
    },
}

/// `torch.optim.SGD(momentum=0.9, weight_decay=5e-4)` (dampening 0, no Nesterov, weight decay
/// added to the gradient of every parameter, BN and biases included), the optimiser of every
/// SSKD and CRD stage.
pub fn sgd(momentum: f64, weight_decay: f64) -> SgdConfig {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum,
            dampening: 0.0,
            nesterov: false,
        }))
        .with_weight_decay(Some(WeightDecayConfig {
            penalty: weight_decay as f32,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::Tensor;

    type B = Autodiff<Flex>;

    #[test]
    fn sgd_matches_torch_optim_sgd() {
        // torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01) on loss = sum(w²·x) with x = 3,
        // from w = 1: step 1 d = 6·1 + 0.01 = 6.01, v = 6.01, w = 0.399; step 2 d = 6·0.399 +
        // 0.00399 = 2.39799, v = 0.9·6.01 + 2.39799 = 7.80699, w = 0.399 − 0.780699 = −0.381699.
        let device = Default::default();
        let mut layer = burn::nn::LinearConfig::new(1, 1)
            .with_bias(false)
            .init::<B>(&device);
        layer.weight = Param::from_tensor(Tensor::ones([1, 1], &device));
        let mut optimizer = sgd(0.9, 0.01).init::<B, burn::nn::Linear<B>>();
        for _ in 0..2 {
            let loss = layer.weight.val().powf_scalar(2.0).mul_scalar(3.0).sum();
            let gradients = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optimizer.step(0.1, layer, gradients);
        }
        let weight: f32 = layer.weight.val().into_scalar();
        assert!((weight - (-0.381699)).abs() < 1e-6, "{weight}");
    }
}
