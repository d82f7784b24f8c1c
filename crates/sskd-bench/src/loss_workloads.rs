//! The loss workloads of the benchmarks (`benches/losses.rs`, `examples/loss_bench.rs`): each
//! method's forward and backward at the paper's shapes (batch 64, 100 classes; SSKD on 4 × 64
//! rows; feature methods on wrn_40_2 → wrn_16_2 feature maps; CRD with K = 16384, N = 50000),
//! built once so that a step only runs the loss.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};
use sskd::losses::{
    create_method, BatchLayout, DistillInputs, Distiller, FeatureShapes, MethodConfig,
    MethodContext, NetworkOutputs, SskdConfig,
};

/// Images per batch.
pub const BATCH: usize = 64;
/// Classes.
pub const CLASSES: usize = 100;

/// The workloads, by name: `sskd_d128`, `sskd_d1280`, and every registered method but `sskd`.
pub fn workload_names() -> Vec<String> {
    let mut names = vec!["sskd_d128".to_string(), "sskd_d1280".to_string()];
    names.extend(
        sskd::losses::method_names()
            .iter()
            .filter(|n| !matches!(MethodConfig::published(n), Ok(MethodConfig::Sskd(_))))
            .map(|n| n.to_string()),
    );
    names
}

/// wrn_40_2 / wrn_16_2 feature shapes at 32×32 (per sample).
fn wrn_shapes() -> FeatureShapes {
    FeatureShapes {
        maps: vec![[16, 32, 32], [32, 32, 32], [64, 16, 16], [128, 8, 8]],
        embedding: 128,
    }
}

fn random<B: AutodiffBackend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn outputs<B: AutodiffBackend>(
    rows: usize,
    head_dim: usize,
    shapes: &FeatureShapes,
    device: &B::Device,
) -> NetworkOutputs<B> {
    NetworkOutputs {
        logits: random([rows, CLASSES], device),
        embedding: Some(random([rows, shapes.embedding], device)),
        features: shapes
            .maps
            .iter()
            .map(|&[c, h, w]| random([rows, c, h, w], device).abs())
            .collect(),
        preact_features: Some(
            shapes
                .maps
                .iter()
                .map(|&[c, h, w]| random([rows, c, h, w], device))
                .collect(),
        ),
        head: (head_dim > 0).then(|| random([rows, head_dim], device)),
    }
}

/// Marks every student tensor as requiring a gradient.
fn track<B: AutodiffBackend>(outputs: NetworkOutputs<B>) -> NetworkOutputs<B> {
    NetworkOutputs {
        logits: outputs.logits.require_grad(),
        embedding: outputs.embedding.map(Tensor::require_grad),
        features: outputs
            .features
            .into_iter()
            .map(Tensor::require_grad)
            .collect(),
        preact_features: outputs
            .preact_features
            .map(|maps| maps.into_iter().map(Tensor::require_grad).collect()),
        head: outputs.head.map(Tensor::require_grad),
    }
}

/// A prepared workload: call [`LossStep::step`] to run one forward + backward.
pub struct LossStep<B: AutodiffBackend> {
    method: Box<dyn Distiller<B>>,
    inputs: DistillInputs<B>,
}

impl<B: AutodiffBackend> LossStep<B> {
    /// Prepares the workload `name` (see [`workload_names`]).
    pub fn new(name: &str, device: &B::Device) -> anyhow::Result<Self> {
        let shapes = wrn_shapes();
        let n_data = 50_000;
        let (method, rows, head_dim): (Box<dyn Distiller<B>>, usize, usize) = match name {
            "sskd_d128" | "sskd_d1280" => {
                let dim = if name == "sskd_d128" { 128 } else { 1280 };
                (Box::new(SskdConfig::new().init()?), 4 * BATCH, dim)
            }
            other => {
                let context = MethodContext {
                    student: shapes.clone(),
                    teacher: shapes.clone(),
                    n_data,
                    labels: None,
                    seed: 0,
                };
                (
                    Box::new(create_method::<B>(other, &context, device)?),
                    BATCH,
                    0,
                )
            }
        };
        let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % CLASSES as i64).collect();
        let sample_indices: Vec<i64> = (0..BATCH as i64).map(|i| i * 700).collect();
        let k = 16_384;
        let contrast: Vec<i64> = (0..BATCH * (k + 1))
            .map(|i| ((i * 7919) % n_data) as i64)
            .collect();
        let inputs = DistillInputs {
            student: track(outputs(rows, head_dim, &shapes, device)),
            teacher: outputs(rows, head_dim, &shapes, device),
            labels: Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), device),
            sample_indices: Some(Tensor::from_data(
                TensorData::new(sample_indices, [BATCH]),
                device,
            )),
            contrast_indices: Some(Tensor::from_data(
                TensorData::new(contrast, [BATCH, k + 1]),
                device,
            )),
            ss_labels: None,
            layout: if method.needs().rotations {
                BatchLayout::Rotations4
            } else {
                BatchLayout::Plain
            },
            epoch: 30,
        };
        Ok(Self { method, inputs })
    }

    /// One forward and backward pass; returns the total loss (which synchronises the device).
    pub fn step(&self) -> f32 {
        let terms = self
            .method
            .loss(&self.inputs)
            .expect("prepared inputs are valid");
        let total = terms.total();
        let _gradients = total.backward();
        total.into_scalar().elem()
    }
}
