//! # sskd-train
//!
//! The building blocks of SSKD's three-stage pipeline, in layers that import one way (each
//! module only from those above it in this list):
//! - [`metrics`]: what training measures (accuracy, evaluations, step and epoch logs);
//! - [`schedule`], [`mod@sgd`]: learning rates and the optimiser;
//! - [`run_dir`]: the run folder and its JSONL log; [`checkpoint`]: a stage's checkpoint in it;
//!   [`plot`]: the curves of a run folder;
//! - [`listeners`]: what happens at the end of an epoch (log line, best record, checkpoint,
//!   plot); [`progress`]: progress inside the epoch, a bar or periodic lines;
//! - [`nodes`] (feature `collective`): sums across machines, the node group's timeouts and
//!   failed peers;
//! - [`pause`]: pauses inside an epoch, checkpoints every N steps or M minutes and a
//!   requested stop (SIGTERM), agreed on across the nodes of a group;
//! - [`fit`]: the epoch loop: training, evaluation, the listeners, pauses, resume;
//! - [`parallel`]: one data-parallel training step, across devices and machines;
//! - [`epoch`]: one epoch of teacher training ([`epoch::teacher_epoch`]), of SS-head training
//!   on the frozen teacher ([`epoch::head_epoch`]), of student distillation with any method of
//!   `sskd-losses` ([`epoch::student_epoch`]), and evaluation;
//! - [`stages`]: each stage as a whole run over a dataset;
//! - [`report`]: one table and one picture over many run folders; [`analysis`]: linear
//!   evaluation and the correlation analysis.
//!
//! Optimisation uses [`sgd::Sgd`], `torch.optim.SGD` (coupled weight decay, momentum
//! without dampening) with its scalars kept in `f64` (see [`sgd()`]).
//!
//! ## Example
//!
//! ```
//! use sskd_train::schedule::MultiStepLr;
//!
//! // The CIFAR-100 schedule of the CRD and SSKD scripts: 0.05, ×0.1 at epochs 150, 180, 210.
//! let schedule = MultiStepLr { base: 0.05, milestones: vec![150, 180, 210], gamma: 0.1 };
//! assert_eq!(schedule.lr(0), 0.05);
//! assert!((schedule.lr(200) - 0.0005).abs() < 1e-12);
//! let optimizer = sskd_train::sgd(0.9, 5e-4); // PyTorch's SGD: momentum, weight decay
//! assert_eq!(optimizer.momentum, 0.9);
//! ```
//!
//! ## Feature flags
//! - `collective`: training across machines with Burn's `burn-collective` ([`nodes`]).
#![warn(missing_docs)]

pub mod analysis;
pub mod checkpoint;
pub mod epoch;
mod error;
pub mod fit;
pub mod listeners;
pub mod metrics;
#[cfg(feature = "collective")]
pub mod nodes;
pub mod parallel;
pub mod pause;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run_dir;
pub mod schedule;
pub mod sgd;
pub mod stage;
pub mod stages;

pub use error::{BatchError, PeerFault, ResumeMismatch, SetupError, StepPlace, TrainError};
use sgd::SgdConfig;
pub use stage::Stage;

/// `torch.optim.SGD(momentum=0.9, weight_decay=5e-4)` (dampening 0, no Nesterov, weight decay
/// added to the gradient of every parameter, BN and biases included), the optimiser of every
/// SSKD and CRD stage.
pub fn sgd(momentum: f64, weight_decay: f64) -> SgdConfig {
    SgdConfig::new(momentum, weight_decay)
}
