//! The supplementary analyses of SSKD: linear evaluation of frozen features on another dataset
//! (supplementary Table 1) and the difference between the teacher's and a student's class
//! correlation (supplementary Fig. 1).

use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use burn_store::ModuleSnapshot;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sskd_augment::loader::{HostBatch, LoadError};
use sskd_losses::functional::cross_entropy;
use sskd_models::Model;

use crate::metrics::Accuracy;
use crate::progress::{Meter, ProgressConfig};
use crate::schedule::LrSchedule;
use crate::{BatchError, TrainError};

/// Embeddings of a dataset: `values` is `[count, dim]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Row-major `[count, dim]`.
    pub values: Vec<f32>,
    /// Embedding width.
    pub dim: usize,
    /// One label per row.
    pub labels: Vec<i64>,
}

impl Features {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn rows<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 1, burn::tensor::Int>) {
        let mut values = Vec::with_capacity(rows.len() * self.dim);
        for &row in rows {
            values.extend_from_slice(&self.values[row * self.dim..(row + 1) * self.dim]);
        }
        let labels: Vec<i64> = rows.iter().map(|&row| self.labels[row]).collect();
        (
            Tensor::from_data(TensorData::new(values, [rows.len(), self.dim]), device),
            Tensor::from_data(TensorData::new(labels, [rows.len()]), device),
        )
    }
}

/// The pooled embeddings (`feat[-1]`) of `model` (pass an inference-mode model) on `batches`.
pub fn extract_features<B: Backend>(
    model: &Model<B>,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    device: &B::Device,
) -> Result<Features, TrainError> {
    let mut features = Features {
        values: Vec::new(),
        dim: model.embedding_dim(),
        labels: Vec::new(),
    };
    for batch in batches {
        let (images, labels, _) = batch?.to_tensors::<B>(device);
        let embedding = model.forward(images).embedding;
        let values: Vec<f32> = embedding
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(values_error("embedding"))?;
        features.values.extend(values);
        features.labels.extend(
            labels
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .map_err(values_error("labels"))?,
        );
    }
    Ok(features)
}

/// Training of the linear classifier on frozen features.
#[derive(Config, Debug)]
pub struct LinearProbeConfig {
    /// Epochs over the training features.
    #[config(default = 30)]
    pub epochs: usize,
    /// Initial learning rate (×0.1 at 60 % and 80 % of the epochs).
    #[config(default = 0.1)]
    pub lr: f64,
    /// SGD momentum.
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Weight decay.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Rows per step.
    #[config(default = 256)]
    pub batch_size: usize,
    /// Seed of the classifier's initialisation and the row order.
    #[config(default = 0)]
    pub seed: u64,
}

/// Train and test accuracy of a linear probe, in percent (last epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbeResult {
    /// Top-1 on the training features.
    pub train_top1: f64,
    /// Top-1 on the test features.
    pub test_top1: f64,
}

fn probe_accuracy<B: Backend>(
    classifier: &Linear<B>,
    features: &Features,
    batch: usize,
    device: &B::Device,
) -> f64 {
    let order: Vec<usize> = (0..features.len()).collect();
    let mut accuracy = Accuracy::default();
    for rows in order.chunks(batch.max(1)) {
        let (inputs, labels) = features.rows::<B>(rows, device);
        accuracy.add(classifier.forward(inputs), labels);
    }
    accuracy.top1_percent()
}

impl Features {
    /// Per-dimension mean and standard deviation.
    fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let count = self.len().max(1) as f64;
        let mut mean = vec![0.0; self.dim];
        let mut square = vec![0.0; self.dim];
        for row in self.values.chunks_exact(self.dim) {
            for (axis, &v) in row.iter().enumerate() {
                mean[axis] += f64::from(v) / count;
                square[axis] += f64::from(v) * f64::from(v) / count;
            }
        }
        let std = mean
            .iter()
            .zip(&square)
            .map(|(m, s)| (s - m * m).max(0.0).sqrt().max(1e-6))
            .collect();
        (mean, std)
    }

    /// The features shifted and scaled per dimension.
    fn standardised(&self, mean: &[f64], std: &[f64]) -> Features {
        let mut values = self.values.clone();
        for row in values.chunks_exact_mut(self.dim) {
            for (axis, v) in row.iter_mut().enumerate() {
                *v = ((f64::from(*v) - mean[axis]) / std[axis]) as f32;
            }
        }
        Features {
            values,
            dim: self.dim,
            labels: self.labels.clone(),
        }
    }
}

/// Trains `Linear(dim, classes)` on `train` with SGD and cross-entropy and reports the top-1 on
/// `train` and `test`. Both sets are first standardised per dimension with the training set's
/// mean and standard deviation, which makes the learning rate independent of the feature scale.
pub fn linear_probe<B: AutodiffBackend>(
    train: &Features,
    test: &Features,
    classes: usize,
    config: &LinearProbeConfig,
    progress: &ProgressConfig,
    device: &B::Device,
) -> Result<LinearProbeResult, TrainError> {
    if train.is_empty() || test.dim != train.dim {
        return Err(BatchError::ProbeFeatures {
            train_rows: train.len(),
            train_width: train.dim,
            test_width: test.dim,
        }
        .into());
    }
    if let Some(label) = train
        .labels
        .iter()
        .chain(&test.labels)
        .find(|&&l| l < 0 || l as usize >= classes)
    {
        return Err(BatchError::ProbeLabel {
            label: *label,
            classes,
        }
        .into());
    }
    let (mean, std) = train.moments();
    let (train, test) = (
        &train.standardised(&mean, &std),
        &test.standardised(&mean, &std),
    );
    B::seed(device, config.seed);
    let mut classifier = LinearConfig::new(train.dim, classes).init::<B>(device);
    let mut optimizer = crate::sgd(config.momentum, config.weight_decay).init();
    let schedule =
        LrSchedule::multi_step(config.lr, &[config.epochs * 3 / 5, config.epochs * 4 / 5]);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let steps = config.epochs * train.len().div_ceil(config.batch_size.max(1));
    let mut meter = Meter::new(progress, "linear probe", Some(steps), "steps");
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        for rows in order.chunks(config.batch_size.max(1)) {
            let (inputs, labels) = train.rows::<B>(rows, device);
            let loss = cross_entropy(classifier.forward(inputs), labels);
            let gradients = GradientsParams::from_grads(loss.backward(), &classifier);
            classifier = optimizer.step(schedule.lr(epoch), classifier, gradients);
            meter.advance(1, rows.len(), |_| {
                format!("epoch {}/{}", epoch + 1, config.epochs)
            });
        }
    }
    meter.finish();
    let frozen = classifier.valid();
    let inner = device.clone();
    Ok(LinearProbeResult {
        train_top1: probe_accuracy(&frozen, train, config.batch_size, &inner),
        test_top1: probe_accuracy(&frozen, test, config.batch_size, &inner),
    })
}

/// The classifier weight `[classes, embedding]` of `model` (PyTorch's layout; Burn stores a
/// linear layer's weight as `[in, out]`, the one parameter of shape `[embedding, classes]`).
pub fn classifier_weight<B: Backend>(model: &Model<B>) -> Result<Tensor<B, 2>, TrainError> {
    let shape = [model.embedding_dim(), model.num_classes()];
    let snapshot = model
        .collect(None, None, false)
        .into_iter()
        .find(|s| s.shape.to_vec() == shape)
        .ok_or(BatchError::NoClassifier { shape })?;
    let data = snapshot.to_data().map_err(|source| TrainError::Snapshot {
        what: "classifier weight",
        source,
    })?;
    let device = model.devices().into_iter().next().unwrap_or_default();
    Ok(Tensor::<B, 2>::from_data(data.convert::<f32>(), &device).transpose())
}

/// `W_n · W_nᵀ` of the row-normalised classifier weight: `[classes, classes]` cosine
/// similarities between the class vectors.
pub fn class_correlation<B: Backend>(weight: Tensor<B, 2>) -> Tensor<B, 2> {
    let norms = weight
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    let normalised = weight.div(norms);
    normalised.clone().matmul(normalised.transpose())
}

/// `|C_teacher − C_student|` `[classes, classes]` and its mean (supplementary Fig. 1 of SSKD).
pub fn correlation_difference<B: Backend>(
    teacher: &Model<B>,
    student: &Model<B>,
) -> Result<(Vec<f32>, f64), TrainError> {
    if teacher.num_classes() != student.num_classes() {
        return Err(BatchError::ClassCounts {
            teacher: teacher.num_classes(),
            student: student.num_classes(),
        }
        .into());
    }
    let difference = class_correlation(classifier_weight(teacher)?)
        .sub(class_correlation(classifier_weight(student)?))
        .abs();
    let values: Vec<f32> = difference
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(values_error("correlation difference"))?;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64;
    Ok((values, mean))
}

/// The error of reading the values of the tensor `what` back.
fn values_error(what: &'static str) -> impl Fn(burn::tensor::DataError) -> TrainError {
    move |source| TrainError::Values { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    #[test]
    fn a_linear_probe_separates_separable_features() {
        // Class k sits at +1 on axis k and −1 elsewhere, plus a little deterministic jitter.
        let make = |count: usize| {
            let (dim, classes) = (6, 3);
            let mut features = Features {
                values: Vec::new(),
                dim,
                labels: Vec::new(),
            };
            for row in 0..count {
                let label = row % classes;
                for axis in 0..dim {
                    let jitter = ((row * 7 + axis * 13) % 11) as f32 / 50.0 - 0.1;
                    features
                        .values
                        .push(if axis == label { 1.0 } else { -1.0 } + jitter);
                }
                features.labels.push(label as i64);
            }
            features
        };
        let device = Default::default();
        let result = linear_probe::<B>(
            &make(60),
            &make(30),
            3,
            &LinearProbeConfig::new().with_epochs(20).with_batch_size(16),
            &ProgressConfig::off(),
            &device,
        )
        .unwrap();
        assert_eq!((result.train_top1, result.test_top1), (100.0, 100.0));
        let (config, off) = (LinearProbeConfig::new(), ProgressConfig::off());
        assert!(linear_probe::<B>(&make(6), &make(3), 2, &config, &off, &device).is_err());
    }

    #[test]
    fn correlation_of_a_model_with_itself_is_zero_and_class_vectors_are_unit() {
        let device = Default::default();
        let model = sskd_models::create_model::<Flex>("resnet8", 5, &device).unwrap();
        let (difference, mean) = correlation_difference(&model, &model).unwrap();
        assert_eq!((difference.len(), mean), (25, 0.0));
        let correlation = class_correlation(classifier_weight(&model).unwrap());
        let values: Vec<f32> = correlation.into_data().to_vec().unwrap();
        let diagonal: Vec<f32> = (0..5).map(|i| values[i * 5 + i]).collect();
        assert!(
            diagonal.iter().all(|d| (d - 1.0).abs() < 1e-5),
            "{diagonal:?}"
        );
        let other = sskd_models::create_model::<Flex>("resnet8", 5, &device).unwrap();
        assert!(correlation_difference(&model, &other).unwrap().1 > 0.0);
    }
}
