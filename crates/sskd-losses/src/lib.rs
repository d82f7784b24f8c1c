//! # sskd-losses
//!
//! The distillation losses of SSKD and its comparisons, generic over any Burn backend and
//! differentiable on the autodiff backend. Every method implements [`Distiller`]: it receives the
//! student's and the teacher's outputs for a batch ([`DistillInputs`]) and returns its loss terms
//! by name ([`LossTerms`]), which the trainer sums and logs; a method never needs a trainer
//! change. Methods with trainable parts (regressors, embeddings, memories) are Burn modules, so
//! the trainer optimises them with the student. Every method has a config with its published
//! defaults; [`MethodConfig`] holds any of them (as an experiment config stores it) and builds
//! the method, and [`create_method`] builds any of them by name with its defaults.
//!
//! - SSKD ([`Sskd`]) with the error-level ranking, the stage-2 head loss ([`ss_head_loss`]) and
//!   the SS-task ablation ([`SsKnowledge::Classification`]);
//! - logit methods: [`Kd`] (with optional logit standardisation), [`Dkd`];
//! - the CRD-codebase baselines, each a [`FeatureTerm`] combined with CE and KD by
//!   [`WithCeKd`]: [`FitNet`], [`Attention`], [`Similarity`], [`Correlation`], [`Vid`], [`Rkd`],
//!   [`Pkt`], [`ActivationBoundary`], [`FactorTransfer`], [`Fsp`], [`Nst`], [`Crd`], [`Kdsvd`].
//!
//! Each formula is written in the doc comment next to the code that computes it;
//! `tools/make_loss_fixtures.py` and `tools/loss_baselines_reference.py` implement the same
//! formulas in PyTorch, and the tests match their values and gradients within 1e-5.
//!
//! ## Feature flags
//! None: the crate depends on `burn` without a backend.
//! ## Example
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use sskd_losses::functional::kl_batchmean;
//!
//! let device = Default::default();
//! let teacher = Tensor::<Flex, 2>::from_floats([[2.0, 0.0, -1.0]], &device);
//! let student = Tensor::<Flex, 2>::from_floats([[1.0, 0.5, -0.5]], &device);
//! // KL(softmax(t/T) ‖ softmax(s/T)) per row, PyTorch's kl_div(reduction="batchmean").
//! let kl = kl_batchmean(teacher.clone(), student, 4.0).into_scalar();
//! assert!(kl > 0.0);
//! assert_eq!(kl_batchmean(teacher.clone(), teacher, 4.0).into_scalar(), 0.0);
//! ```
//!
#![warn(missing_docs)]

mod ab;
mod at;
mod cc;
mod combined;
mod contract;
mod crd;
mod dkd;
mod error;
mod fitnet;
mod fsp;
mod ft;
pub mod functional;
mod kd;
mod kdsvd;
mod nst;
mod pkt;
mod registry;
mod rkd;
pub mod settings;
mod shapes;
mod sp;
mod sskd;
pub mod torch_names;
mod vanilla;
mod vid;

pub use ab::{ActivationBoundary, ActivationBoundaryConfig};
pub use at::Attention;
pub use cc::{Correlation, CorrelationConfig};
pub use combined::{BaselineConfig, FeatureTerm, ObjectiveWeights, TermConfig, WithCeKd};
pub use contract::{
    BatchLayout, DistillInputs, Distiller, LossTerm, LossTerms, Needs, NetworkOutputs, Pretraining,
    TOTAL,
};
pub use crd::{Crd, CrdConfig, CrdMode, CrdSampler};
pub use dkd::{Dkd, DkdConfig};
pub use error::LossError;
pub use fitnet::{ConvReg, FitNet, FitNetConfig, RegressorConv};
pub use fsp::Fsp;
pub use ft::{FactorTransfer, FactorTransferConfig, Paraphraser};
pub use kd::{Kd, KdConfig};
pub use kdsvd::Kdsvd;
pub use nst::Nst;
pub use pkt::Pkt;
pub use registry::{create_method, method_names, DistillerConfig, Method, MethodConfig};
pub use rkd::Rkd;
pub use settings::{Settings, SettingsError};
pub use shapes::{FeatureShapes, MethodContext};
pub use sp::Similarity;
pub use sskd::{ss_head_loss, SsKnowledge, Sskd, SskdConfig};
pub use vanilla::{Vanilla, VanillaConfig};
pub use vid::{Vid, VidConfig, VidLayer};
