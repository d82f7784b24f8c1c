//! # sskd-train
//!
//! The building blocks of SSKD's three-stage pipeline: one epoch of teacher training
//! ([`stages::teacher_epoch`]), of SS-head training on the frozen teacher
//! ([`stages::head_epoch`]), of student distillation with any method of `sskd-losses`
//! ([`stages::student_epoch`]), evaluation, the multi-step schedule and the per-epoch JSONL log.
//! Optimisation uses Burn's SGD, which matches `torch.optim.SGD` (coupled weight decay,
//! momentum without dampening; see [`sgd`]).
//!
//! ## Feature flags
//! None.
#![warn(missing_docs)]

pub mod metrics;
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
    /// The data loader failed.
    #[error("data: {0}")]
    Data(String),
    /// A loss rejected its inputs.
    #[error(transparent)]
    Loss(#[from] sskd_losses::LossError),
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
