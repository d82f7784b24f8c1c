//! A feature-based method combined with cross-entropy and KD, as the CRD codebase trains every
//! baseline: `L = γ·CE(s, y) + α·KD(s, t) + β·L_method`.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::contract::no_pretraining;
use crate::{
    DistillInputs, Distiller, Kd, KdConfig, LossError, LossTerm, LossTerms, MethodContext, Needs,
    Pretraining,
};

/// The method-specific term of a baseline (AT, SP, CRD, …). [`WithCeKd`] adds CE and KD.
pub trait FeatureTerm<B: Backend> {
    /// The term's name, as logged (`at`, `sp`, `crd`, …).
    fn name(&self) -> &'static str;
    /// What the method needs the trainer to compute.
    fn needs(&self) -> Needs;
    /// The unweighted term for one batch. `[1]`.
    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError>;
    /// The term's pre-training stage, if it has one with epochs to run.
    fn pretraining(&self) -> Option<Pretraining> {
        None
    }
    /// The loss of a pre-training step. `[1]`.
    fn pretrain_term(&self, _inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        Err(no_pretraining(self.name()))
    }
}

/// Weights of the CRD codebase's objective `γ·CE + α·KD + β·L_method` (flags `-r`, `-a`, `-b`).
#[derive(burn::config::Config, Debug, Copy, PartialEq)]
pub struct ObjectiveWeights {
    /// γ, the weight of cross-entropy.
    #[config(default = 1.0)]
    pub ce: f64,
    /// α, the weight of KD (temperature 4); 0 for the standalone baselines.
    #[config(default = 0.0)]
    pub kd: f64,
    /// β, the weight of the method's own term.
    pub beta: f64,
    /// KD temperature.
    #[config(default = 4.0)]
    pub temperature: f64,
}

impl ObjectiveWeights {
    /// The SSKD paper's comparison: `0.1·CE + 0.9·KD + β·L_method` (ECCV supplementary).
    pub fn sskd_comparison(beta: f64) -> Self {
        Self::new(beta).with_ce(0.1).with_kd(0.9)
    }

    /// The CE and KD terms under these weights; an error if a weight or the temperature is
    /// out of range.
    pub fn logit_terms(&self) -> Result<Kd, LossError> {
        KdConfig::new()
            .with_temperature(self.temperature)
            .with_ce_weight(self.ce)
            .with_kd_weight(self.kd)
            .init()
    }
}

/// A [`FeatureTerm`] method with CE and KD: terms `ce`, `kd` (those of [`Kd`]) and the
/// method's own.
#[derive(Module, Debug)]
pub struct WithCeKd<B: Backend, M: Module<B>> {
    /// The method (a module: its trainable parts, if any, train with the student).
    pub method: M,
    logit_terms: Kd,
    method_weight: f64,
    phantom: core::marker::PhantomData<B>,
}

impl<B: Backend, M: Module<B>> WithCeKd<B, M> {
    /// Combines `method` with CE and KD under `weights`.
    pub fn new(method: M, weights: ObjectiveWeights) -> Result<Self, LossError> {
        Ok(Self {
            method,
            logit_terms: weights.logit_terms()?,
            method_weight: weights.beta,
            phantom: core::marker::PhantomData,
        })
    }
}

impl<B: Backend, M: FeatureTerm<B> + Module<B>> Distiller<B> for WithCeKd<B, M> {
    fn name(&self) -> &'static str {
        self.method.name()
    }

    fn needs(&self) -> Needs {
        self.method.needs()
    }

    /// CE, KD and the method's term; with β = 0 the term is not computed at all (AB and FSP in
    /// their main stage, where RepDistiller's loop sets it to 0), so its modules stay as they
    /// are.
    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let mut terms = Distiller::<B>::loss(&self.logit_terms, inputs)?;
        if self.method_weight == 0.0 {
            return Ok(terms);
        }
        terms.terms.push(LossTerm {
            name: self.method.name(),
            value: self.method.term(inputs)?,
            weight: self.method_weight,
        });
        Ok(terms)
    }

    fn pretraining(&self) -> Option<Pretraining> {
        self.method.pretraining().filter(|stage| stage.epochs > 0)
    }

    /// The term's pre-training loss alone, weight 1 (RepDistiller's `init` trains on it alone).
    fn pretrain_loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        Ok(LossTerms {
            terms: vec![LossTerm {
                name: self.method.name(),
                value: self.method.pretrain_term(inputs)?,
                weight: 1.0,
            }],
            counts: Vec::new(),
        })
    }
}

/// The settings of a baseline's own term, and how they build it for the networks of a run.
pub trait TermConfig {
    /// The term they build on backend `B`.
    type Term<B: Backend>: FeatureTerm<B> + Module<B> + ModuleDisplay;
    /// The term for networks of `context`'s shapes, on `device`.
    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Self::Term<B>, LossError>;
}

/// A baseline's config: the weights of `γ·CE + α·KD + β·L` and the settings of its term `L`,
/// one flat JSON object (`{"ce": 0.1, "kd": 0.9, "beta": 1000.0, "temperature": 4.0, "p": 2.0}`
/// for attention transfer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineConfig<S> {
    /// γ, α, β and the KD temperature.
    #[serde(flatten)]
    pub weights: ObjectiveWeights,
    /// The term's own settings.
    #[serde(flatten)]
    pub term: S,
}

impl<S: TermConfig> BaselineConfig<S> {
    /// The SSKD paper's comparison weights (`0.1·CE + 0.9·KD + β·L`) with `term`.
    pub fn new(beta: f64, term: S) -> Self {
        Self {
            weights: ObjectiveWeights::sskd_comparison(beta),
            term,
        }
    }

    /// The baseline with CE and KD, for networks of `context`'s shapes.
    pub fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<WithCeKd<B, S::Term<B>>, LossError> {
        WithCeKd::new(self.term.init(context, device)?, self.weights)
    }
}
