//! A feature-based method combined with cross-entropy and KD, as the CRD codebase trains every
//! baseline: `L = γ·CE(s, y) + α·KD(s, t) + β·L_method`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::functional::cross_entropy;
use crate::kd::{check_logit_pair, image_logits};
use crate::{DistillInputs, Distiller, KdConfig, LossError, LossTerm, LossTerms, Needs};

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

/// A [`FeatureTerm`] method with CE and KD: terms `ce`, `kd` and the method's own.
#[derive(Module, Debug)]
pub struct WithCeKd<B: Backend, M: Module<B>> {
    /// The method (a module: its trainable parts, if any, train with the student).
    pub method: M,
    phantom: core::marker::PhantomData<B>,
    ce_weight: f64,
    kd_weight: f64,
    method_weight: f64,
    temperature: f64,
}

impl<B: Backend, M: Module<B>> WithCeKd<B, M> {
    /// Combines `method` with CE and KD under `weights`.
    pub fn new(method: M, weights: ObjectiveWeights) -> Self {
        Self {
            method,
            phantom: core::marker::PhantomData,
            ce_weight: weights.ce,
            kd_weight: weights.kd,
            method_weight: weights.method,
            temperature: weights.temperature,
        }
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
        let student = image_logits(&inputs.student.logits, inputs.layout);
        let teacher = image_logits(&inputs.teacher.logits, inputs.layout);
        check_logit_pair(
            self.method.name(),
            &student,
            &teacher,
            inputs.labels.dims()[0],
        )?;
        let kd = KdConfig::new().with_temperature(self.temperature).init()?;
        Ok(LossTerms {
            terms: vec![
                LossTerm {
                    name: "ce",
                    value: cross_entropy(student.clone(), inputs.labels.clone()),
                    weight: self.ce_weight,
                },
                LossTerm {
                    name: "kd",
                    value: kd.kd_term(teacher, student),
                    weight: self.kd_weight,
                },
                LossTerm {
                    name: self.method.name(),
                    value: self.method.term(inputs)?,
                    weight: self.method_weight,
                },
            ],
            counts: Vec::new(),
        })
    }
}
