//! The feature shapes a method's trainable parts are sized from, and the context a method is
//! built in.

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use sskd_models::{Model, ModelOutput};

/// Per-sample shapes of a network's outputs: the feature maps `[c, h, w]` and the embedding
/// width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureShapes {
    /// `feat[0..K]` as `[channels, height, width]`.
    pub maps: Vec<[usize; 3]>,
    /// Length of `feat[-1]`.
    pub embedding: usize,
}

impl FeatureShapes {
    /// The shapes of an output.
    pub fn of<B: Backend>(output: &ModelOutput<B>) -> Self {
        Self {
            maps: output
                .features
                .iter()
                .map(|f| {
                    let [_, c, h, w] = f.dims();
                    [c, h, w]
                })
                .collect(),
            embedding: output.embedding.dims()[1],
        }
    }

    /// Runs two blank images of `height × width` through `model` and reads the shapes.
    ///
    /// Pass an inference-mode model (`model.valid()` of an autodiff one): on an autodiff
    /// backend the forward runs batch norm in training mode and updates its running statistics.
    pub fn probe<B: Backend>(
        model: &Model<B>,
        height: usize,
        width: usize,
        device: &B::Device,
    ) -> Self {
        Self::of(&model.forward(Tensor::zeros([2, 3, height, width], device)))
    }
}

/// What sizes a method's trainable parts and what it draws from: the two networks' feature
/// shapes, the number of training samples and, where the trainer knows them, their classes.
#[derive(Debug, Clone)]
pub struct MethodContext {
    /// The student's feature shapes.
    pub student: FeatureShapes,
    /// The teacher's feature shapes.
    pub teacher: FeatureShapes,
    /// Training-set size (CRD's memory banks).
    pub n_data: usize,
    /// The class of every training sample, by dataset index (CRD draws its negatives by class);
    /// `None` where the caller passes a method's per-batch draws itself.
    pub labels: Option<Arc<[usize]>>,
    /// The run's seed, for a method's own draws.
    pub seed: u64,
}

impl MethodContext {
    /// The context of `student` and `teacher` probed on `height × width` images (pass
    /// inference-mode networks, see [`FeatureShapes::probe`]) with `n_data` training samples.
    pub fn probe<B: Backend>(
        student: &Model<B>,
        teacher: &Model<B>,
        [height, width]: [usize; 2],
        n_data: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            student: FeatureShapes::probe(student, height, width, device),
            teacher: FeatureShapes::probe(teacher, height, width, device),
            n_data,
            labels: None,
            seed: 0,
        }
    }

    /// The context with the classes of the `n_data` training samples and the run's seed.
    pub fn with_labels(self, labels: impl Into<Arc<[usize]>>, seed: u64) -> Self {
        Self {
            labels: Some(labels.into()),
            seed,
            ..self
        }
    }
}
