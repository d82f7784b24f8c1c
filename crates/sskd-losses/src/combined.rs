//! A feature-based method combined with cross-entropy and KD, as the CRD codebase trains every
//! baseline: `L = γ·CE(s, y) + α·KD(s, t) + β·L_method`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::{DistillInputs, Distiller, Kd, KdConfig, LossError, LossTerm, LossTerms, Needs};

/// The method-specific term of a baseline (AT, SP, CRD, …). [`WithCeKd`] adds CE and KD.
pub trait FeatureTerm<B: Backend> {
    /// The term's name, as logged (`at`, `sp`, `crd`, …).
    fn name(&self) -> &'static str;
    /// What the method needs the trainer to compute.
    fn needs(&self) -> Needs;
    /// The unweighted term for one batch. `[1]`.
    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError>;
}

/// Weights of the CRD codebase's objective `γ·CE + α·KD + β·L_method` (flags `-r`, `-a`, `-b`).
#[derive(burn::config::Config, Debug, Copy)]
pub struct ObjectiveWeights {
    /// γ, the weight of cross-entropy.
    #[config(default = 1.0)]
    pub ce: f64,
    /// α, the weight of KD (temperature 4); 0 for the standalone baselines.
    #[config(default = 0.0)]
    pub kd: f64,
    /// β, the weight of the method's own term.
    pub method: f64,
    /// KD temperature.
    #[config(default = 4.0)]
    pub temperature: f64,
}

impl ObjectiveWeights {
    /// The SSKD paper's comparison: `0.1·CE + 0.9·KD + β·L_method` (ECCV supplementary).
    pub fn sskd_comparison(method: f64) -> Self {
        Self::new(method).with_ce(0.1).with_kd(0.9)
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
        let logit_terms = KdConfig::new()
            .with_temperature(weights.temperature)
            .with_ce_weight(weights.ce)
            .with_kd_weight(weights.kd)
            .init()?;
        Ok(Self {
            method,
            logit_terms,
            method_weight: weights.method,
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

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let mut terms = Distiller::<B>::loss(&self.logit_terms, inputs)?;
        terms.terms.push(LossTerm {
            name: self.method.name(),
            value: self.method.term(inputs)?,
            weight: self.method_weight,
        });
        Ok(terms)
    }
}
