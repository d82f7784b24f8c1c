//! Every method by the name the CRD / SSKD scripts use, built with their default weights.
//!
//! Adding a method: one file implementing [`Distiller`] (or [`FeatureTerm`] for a baseline
//! combined with CE and KD), one variant of [`Method`] and one line in [`create_method`].

use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::{
    ActivationBoundary, Attention, Correlation, CrdConfig, DistillInputs, Distiller, Dkd,
    DkdConfig, FactorTransfer, FeatureShapes, FitNet, Fsp, Kd, KdConfig, LossError, LossTerms,
    Needs, Nst, ObjectiveWeights, Pkt, Rkd, Similarity, Sskd, SskdConfig, Vid, WithCeKd,
};

/// Names [`create_method`] accepts (the CRD flags, SSKD's, and the newer logit methods);
/// `fitnet`, `at`, `sp`, `cc`, `ab` and `ft` are accepted as aliases.
const NAMES: &[&str] = &[
    "sskd",
    "kd",
    "kd_ls",
    "dkd",
    "hint",
    "attention",
    "similarity",
    "correlation",
    "vid",
    "rkd",
    "pkt",
    "abound",
    "factor",
    "fsp",
    "nst",
    "crd",
];

/// The registered method names.
pub fn method_names() -> &'static [&'static str] {
    NAMES
}

/// Any method of the crate, as one module (its trainable parts train with the student).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Method<B: Backend> {
    /// SSKD.
    Sskd(Sskd),
    /// KD, with or without logit standardisation.
    Kd(Kd),
    /// Decoupled KD.
    Dkd(Dkd),
    /// FitNet hints.
    FitNet(WithCeKd<B, FitNet<B>>),
    /// Attention transfer.
    Attention(WithCeKd<B, Attention>),
    /// Similarity preserving.
    Similarity(WithCeKd<B, Similarity>),
    /// Correlation congruence.
    Correlation(WithCeKd<B, Correlation<B>>),
    /// Variational information distillation.
    Vid(WithCeKd<B, Vid<B>>),
    /// Relational KD.
    Rkd(WithCeKd<B, Rkd>),
    /// Probabilistic knowledge transfer.
    Pkt(WithCeKd<B, Pkt>),
    /// Activation boundaries (its term drives the pre-training stage).
    ActivationBoundary(WithCeKd<B, ActivationBoundary<B>>),
    /// Factor transfer.
    FactorTransfer(WithCeKd<B, FactorTransfer<B>>),
    /// Flow of solution procedure (its term drives the pre-training stage).
    Fsp(WithCeKd<B, Fsp>),
    /// Neuron selectivity transfer.
    Nst(WithCeKd<B, Nst>),
    /// Contrastive representation distillation.
    Crd(WithCeKd<B, crate::Crd<B>>),
}

/// What sizes a method's trainable parts.
#[derive(Debug, Clone)]
pub struct MethodContext {
    /// The student's feature shapes.
    pub student: FeatureShapes,
    /// The teacher's feature shapes.
    pub teacher: FeatureShapes,
    /// Training-set size (CRD's memory banks).
    pub n_data: usize,
    /// Use the SSKD paper's comparison weights `0.1·CE + 0.9·KD + β·L` instead of the CRD
    /// scripts' `1·CE + 0·KD + β·L` (ignored by `sskd`, `kd`, `kd_ls`, `dkd`).
    pub with_kd: bool,
}

impl MethodContext {
    fn weights(&self, beta: f64) -> ObjectiveWeights {
        if self.with_kd {
            ObjectiveWeights::sskd_comparison(beta)
        } else {
            ObjectiveWeights::new(beta)
        }
    }
}

/// The method called `name`, with the weights of spec §3.1 (β: hint 100, attention 1000,
/// similarity 3000, correlation 0.02, vid 1, rkd 1, pkt 30000, factor 200, nst 50, crd 0.8; `abound`
/// and `fsp` train their term in a pre-training stage and have β = 0 in the main stage).
pub fn create_method<B: Backend>(
    name: &str,
    context: &MethodContext,
    device: &B::Device,
) -> Result<Method<B>, LossError> {
    let (student, teacher) = (&context.student, &context.teacher);
    let combine = |beta: f64| context.weights(beta);
    Ok(match name {
        "sskd" => Method::Sskd(SskdConfig::new().init()?),
        "kd" => Method::Kd(KdConfig::new().init()?),
        "kd_ls" => Method::Kd(KdConfig::new().with_logit_standardization(true).init()?),
        "dkd" => Method::Dkd(DkdConfig::new().init()?),
        "hint" | "fitnet" => Method::FitNet(WithCeKd::new(
            FitNet::new(&student.maps, &teacher.maps, 2, device)?,
            combine(100.0),
        )?),
        "attention" | "at" => {
            Method::Attention(WithCeKd::new(Attention::default(), combine(1000.0))?)
        }
        "similarity" | "sp" => Method::Similarity(WithCeKd::new(Similarity, combine(3000.0))?),
        "correlation" | "cc" => Method::Correlation(WithCeKd::new(
            Correlation::new(student.embedding, teacher.embedding, 128, device),
            combine(0.02),
        )?),
        "vid" => Method::Vid(WithCeKd::new(
            Vid::new(&student.maps, &teacher.maps, device),
            combine(1.0),
        )?),
        "rkd" => Method::Rkd(WithCeKd::new(Rkd::default(), combine(1.0))?),
        "pkt" => Method::Pkt(WithCeKd::new(Pkt, combine(30000.0))?),
        "abound" | "ab" => Method::ActivationBoundary(WithCeKd::new(
            ActivationBoundary::new(&student.maps, &teacher.maps, device)?,
            combine(0.0),
        )?),
        "factor" | "ft" => {
            let last = |maps: &[[usize; 3]]| maps.last().map_or(0, |m| m[0]);
            Method::FactorTransfer(WithCeKd::new(
                FactorTransfer::new(last(&student.maps), last(&teacher.maps), device),
                combine(200.0),
            )?)
        }
        "fsp" => Method::Fsp(WithCeKd::new(Fsp, combine(0.0))?),
        "nst" => Method::Nst(WithCeKd::new(Nst, combine(50.0))?),
        "crd" => Method::Crd(WithCeKd::new(
            CrdConfig::new(student.embedding, teacher.embedding, context.n_data).init(device),
            combine(0.8),
        )?),
        _ => {
            return Err(LossError::BadInput {
                method: "registry",
                message: format!(
                    "unknown method `{name}`; known methods: {}",
                    NAMES.join(", ")
                ),
            })
        }
    })
}

macro_rules! dispatch {
    ($self:ident, $method:ident => $body:expr) => {
        match $self {
            Method::Sskd($method) => $body,
            Method::Kd($method) => $body,
            Method::Dkd($method) => $body,
            Method::FitNet($method) => $body,
            Method::Attention($method) => $body,
            Method::Similarity($method) => $body,
            Method::Correlation($method) => $body,
            Method::Vid($method) => $body,
            Method::Rkd($method) => $body,
            Method::Pkt($method) => $body,
            Method::ActivationBoundary($method) => $body,
            Method::FactorTransfer($method) => $body,
            Method::Fsp($method) => $body,
            Method::Nst($method) => $body,
            Method::Crd($method) => $body,
        }
    };
}

impl<B: Backend> Distiller<B> for Method<B> {
    fn name(&self) -> &'static str {
        dispatch!(self, method => Distiller::<B>::name(method))
    }

    fn needs(&self) -> Needs {
        dispatch!(self, method => Distiller::<B>::needs(method))
    }

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        dispatch!(self, method => method.loss(inputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn context() -> MethodContext {
        let maps = vec![[16, 32, 32], [16, 32, 32], [32, 16, 16], [64, 8, 8]];
        let wide = vec![[16, 32, 32], [32, 32, 32], [64, 16, 16], [128, 8, 8]];
        MethodContext {
            student: FeatureShapes {
                maps,
                embedding: 64,
            },
            teacher: FeatureShapes {
                maps: wide,
                embedding: 128,
            },
            n_data: 1000,
            with_kd: true,
        }
    }

    #[test]
    fn every_name_builds_and_unknown_names_are_listed() {
        let device = Default::default();
        for name in method_names() {
            let method = create_method::<Flex>(name, &context(), &device)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!Distiller::<Flex>::name(&method).is_empty());
        }
        let error = create_method::<Flex>("kdd", &context(), &device)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown method `kdd`") && error.contains("crd"),
            "{error}"
        );
    }
}
