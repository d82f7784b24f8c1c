//! The contract every distillation method implements.

use burn::tensor::{backend::Backend, Int, Tensor};
use sskd_models::ModelOutput;

use crate::LossError;

/// How the rows of a batch are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLayout {
    /// One row per image.
    Plain,
    /// SSKD's layout: four rows per image, row `4i + k` is image `i` rotated by `k·90°`.
    Rotations4,
}

/// One network's outputs for a batch, as a method may need them.
#[derive(Debug, Clone)]
pub struct NetworkOutputs<B: Backend> {
    /// Logits `[rows, classes]`.
    pub logits: Tensor<B, 2>,
    /// Pooled embedding `[rows, d]` (`feat[-1]`).
    pub embedding: Option<Tensor<B, 2>>,
    /// Feature maps `feat[0..K]`, each `[rows, c, h, w]`.
    pub features: Vec<Tensor<B, 4>>,
    /// Pre-activation feature maps, where the architecture defines them.
    pub preact_features: Option<Vec<Tensor<B, 4>>>,
    /// Output of the self-supervision head `[rows, d]`, where the network has one.
    pub head: Option<Tensor<B, 2>>,
}

impl<B: Backend> NetworkOutputs<B> {
    /// Outputs holding only logits.
    pub fn from_logits(logits: Tensor<B, 2>) -> Self {
        Self {
            logits,
            embedding: None,
            features: Vec::new(),
            preact_features: None,
            head: None,
        }
    }

    /// A backbone's output, with an optional SS-head output.
    pub fn from_model(output: ModelOutput<B>, head: Option<Tensor<B, 2>>) -> Self {
        Self {
            logits: output.logits,
            embedding: Some(output.embedding),
            features: output.features,
            preact_features: output.preact_features,
            head,
        }
    }

    /// A frozen network's outputs (computed on the inner backend of `A`, without a graph)
    /// moved onto the autodiff backend `A` as constants, for [`DistillInputs::teacher`].
    pub fn lift<A>(self) -> NetworkOutputs<A>
    where
        A: burn::tensor::backend::AutodiffBackend<InnerBackend = B>,
    {
        let lift = |tensor: Tensor<B, 4>| Tensor::<A, 4>::from_inner(tensor);
        NetworkOutputs {
            logits: Tensor::from_inner(self.logits),
            embedding: self.embedding.map(Tensor::from_inner),
            features: self.features.into_iter().map(lift).collect(),
            preact_features: self
                .preact_features
                .map(|maps| maps.into_iter().map(lift).collect()),
            head: self.head.map(Tensor::from_inner),
        }
    }
}

/// Everything a method sees of a training step.
#[derive(Debug, Clone)]
pub struct DistillInputs<B: Backend> {
    /// The student's outputs (with gradient).
    pub student: NetworkOutputs<B>,
    /// The teacher's outputs (constants: computed in inference mode, no gradient).
    pub teacher: NetworkOutputs<B>,
    /// Class labels of the images `[images]` (one per image, not per row).
    pub labels: Tensor<B, 1, Int>,
    /// Dataset indices of the images `[images]` (memory-bank methods).
    pub sample_indices: Option<Tensor<B, 1, Int>>,
    /// CRD's contrast indices `[images, K + 1]`: column 0 the positive, then K negatives (see
    /// `CrdSampler`).
    pub contrast_indices: Option<Tensor<B, 2, Int>>,
    /// Labels of a classification SS task, one per row (SSKD's SS-task ablation).
    pub ss_labels: Option<Tensor<B, 1, Int>>,
    /// Row layout of the outputs.
    pub layout: BatchLayout,
    /// The 0-based training epoch (for methods with a warm-up).
    pub epoch: usize,
}

/// What a method needs the trainer to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Pooled embeddings.
    pub embedding: bool,
    /// Feature maps.
    pub features: bool,
    /// Pre-activation feature maps.
    pub preact_features: bool,
    /// SS-head outputs of both networks.
    pub head: bool,
    /// The four-rotation batch layout.
    pub rotations: bool,
    /// Dataset sample indices.
    pub sample_indices: bool,
}

/// A method's pre-training stage, run before the main one (RepDistiller's `helper/pretrain.py`:
/// AB's connectors, FT's paraphraser, FSP's student): its own loss, a constant learning rate and
/// its own optimiser state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pretraining {
    /// Its epochs (the method's `init_epochs`; 0: none).
    pub epochs: usize,
    /// What its loss needs the trainer to compute.
    pub needs: Needs,
    /// Whether it trains the student's feature layers (AB, FSP: the student runs in training
    /// mode and its layers train with the method's modules); else the student runs in inference
    /// mode and only the method's modules train (FT's paraphraser).
    pub trains_student: bool,
    /// Its learning rate; `None`: the student stage's initial one.
    pub learning_rate: Option<f64>,
}

impl Pretraining {
    /// A stage that trains the student's feature layers on a loss that `needs` these outputs
    /// (AB, FSP), at the student stage's learning rate.
    pub fn of_feature_layers(epochs: usize, needs: Needs) -> Self {
        Self {
            epochs,
            needs,
            trains_student: true,
            learning_rate: None,
        }
    }
}

/// One named loss term.
#[derive(Debug, Clone)]
pub struct LossTerm<B: Backend> {
    /// Name (`ce`, `kd`, `tf`, `ss`, …), as logged.
    pub name: &'static str,
    /// The unweighted value (already multiplied by its τ² where the method has one). `[1]`.
    pub value: Tensor<B, 1>,
    /// Its weight in the total.
    pub weight: f64,
}

/// The name of the weighted total among a step's logged terms (beside each term's own name).
pub const TOTAL: &str = "total";

/// The named terms of a method and their weighted total, plus counts a method reports (e.g.
/// how many rows a selection kept).
#[derive(Debug, Clone)]
pub struct LossTerms<B: Backend> {
    /// The terms, in the method's order.
    pub terms: Vec<LossTerm<B>>,
    /// Named counts (`kept_tf`, `kept_ss`, …).
    pub counts: Vec<(&'static str, usize)>,
}

impl<B: Backend> LossTerms<B> {
    /// `Σ weight · value`. `[1]`.
    pub fn total(&self) -> Tensor<B, 1> {
        self.terms
            .iter()
            .map(|term| term.value.clone().mul_scalar(term.weight))
            .reduce(|sum, value| sum + value)
            .expect("a method returns at least one term")
    }

    /// The unweighted term called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor<B, 1>> {
        self.terms
            .iter()
            .find(|term| term.name == name)
            .map(|term| &term.value)
    }

    /// The count called `name`.
    pub fn count(&self, name: &str) -> Option<usize> {
        self.counts
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, count)| *count)
    }
}

/// A distillation method, in the manner of mdistiller's `Distiller`: given both networks'
/// outputs for a batch it returns its named loss terms. Methods with trainable parts
/// (regressors, embeddings) are Burn modules themselves, so the trainer optimises them with the
/// student.
pub trait Distiller<B: Backend> {
    /// The method's name, as configs and logs spell it.
    fn name(&self) -> &'static str;
    /// What the trainer must compute for this method.
    fn needs(&self) -> Needs;
    /// The loss terms for one batch.
    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError>;
    /// The method's pre-training stage, if it has one with epochs to run.
    fn pretraining(&self) -> Option<Pretraining> {
        None
    }
    /// The loss terms of a pre-training step ([`Distiller::pretraining`]).
    fn pretrain_loss(&self, _inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        Err(no_pretraining(self.name()))
    }
}

/// The error of a pre-training step asked of a method without one.
pub(crate) fn no_pretraining(method: &'static str) -> LossError {
    LossError::BadInput {
        method,
        message: "has no pre-training stage".into(),
    }
}
