//! Data-parallel training over several devices, on CPU replicas (`burn-flex` has one device;
//! listing it several times runs one replica per thread, as several GPUs would).
//!
//! A data-parallel step must equal one step on the mean of the shards' losses: the same
//! parameters after SGD, and batch-norm running statistics that are the mean of the shards'
//! updates.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, Tolerance};
use sskd::augment::loader::{HostBatch, LoadError};
use sskd::losses::functional::cross_entropy;
use sskd::models::batch_norm::{BatchNorm, BatchNormConfig};
use sskd::models::{create_model, BackboneWithHead};
use sskd::train::epoch::{student_epoch, Student};
use sskd::train::metrics::StepLog;
use sskd::train::parallel::{split_batch, train_step, ShardOutput};
use sskd::train::sgd;
use sskd::train::TrainError;

type B = Autodiff<Flex>;

/// conv → batch norm → mean pool → linear: small, with batch statistics.
#[derive(Module, Debug)]
struct Net<B: Backend> {
    conv: Conv2d<B>,
    bn: BatchNorm<B>,
    fc: Linear<B>,
}

impl<B: Backend> Net<B> {
    fn new(device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([3, 4], [3, 3]).init(device),
            bn: BatchNormConfig::new(4).init(device),
            fc: LinearConfig::new(4, 5).init(device),
        }
    }

    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let hidden = burn::tensor::activation::relu(self.bn.forward(self.conv.forward(images)));
        let [batch, channels, _, _] = hidden.dims();
        self.fc
            .forward(hidden.mean_dim(3).mean_dim(2).reshape([batch, channels]))
    }
}

fn batch(samples: usize, seed: u64) -> HostBatch {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    HostBatch {
        pixels: (0..samples * 3 * 6 * 6).map(|_| next()).collect(),
        shape: [samples, 3, 6, 6],
        labels: (0..samples as i64).map(|i| i % 5).collect(),
        indices: (0..samples as i64).collect(),
    }
}

fn shard_loss(net: &Net<B>, shard: HostBatch) -> Tensor<B, 1> {
    let (images, labels, _) = shard.to_tensors::<B>(&Default::default());
    cross_entropy(net.forward(images), labels)
}

/// One shard per device, each its own loss.
fn per_device(
    net: &Net<B>,
    shard: HostBatch,
    _device: usize,
) -> Result<ShardOutput<B>, TrainError> {
    Ok(ShardOutput {
        loss: shard_loss(net, shard),
        log: StepLog::default(),
    })
}

fn weights(net: &Net<B>) -> Vec<Tensor<Flex, 1>> {
    let valid = net.valid();
    vec![
        valid.conv.weight.val().flatten(0, 3),
        valid.bn.gamma.val(),
        valid.bn.beta.val(),
        valid.fc.weight.val().flatten(0, 1),
    ]
}

#[test]
fn a_step_over_replicas_equals_the_step_on_the_mean_of_the_shard_losses() {
    for (devices, samples) in [(2, 8), (3, 7)] {
        let device = Default::default();
        let start = Net::<B>::new(&device);
        // Initialise the lazy parameters once, or each copy would draw its own.
        drop(start.forward(Tensor::zeros([2, 3, 6, 6], &device)));
        let replicas = vec![device; devices];
        let mut parallel = start.clone().fork(&device);
        let mut parallel_optimizer = sgd(0.9, 5e-4).init();
        // Reference: one graph over the whole batch, the shard losses weighted by their size.
        let reference_step = |net: &Net<B>, whole: HostBatch, _: usize| {
            let total = whole.labels.len() as f64;
            let mut loss = Tensor::<B, 1>::zeros([1], &Default::default());
            for shard in split_batch(whole, devices) {
                let weight = shard.labels.len() as f64 / total;
                loss = loss + shard_loss(net, shard).mul_scalar(weight);
            }
            Ok(ShardOutput {
                loss,
                log: StepLog::default(),
            })
        };
        let mut reference = start.clone().fork(&device);
        let mut reference_optimizer = sgd(0.9, 5e-4).init();
        for step in 0..2 {
            let data = batch(samples, step);
            let (next, _) = train_step(
                parallel,
                &mut parallel_optimizer,
                0.1,
                data.clone(),
                &replicas,
                &per_device,
            )
            .unwrap();
            parallel = next;
            let (next, _) = train_step(
                reference,
                &mut reference_optimizer,
                0.1,
                data,
                &[device],
                &reference_step,
            )
            .unwrap();
            reference = next;
        }
        for (ours, theirs) in weights(&parallel).into_iter().zip(weights(&reference)) {
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::absolute(1e-6));
        }
        // A parameter the step moved, so that the comparison above compares something.
        let moved = (weights(&parallel)[3].clone() - weights(&start)[3].clone())
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-3, "{devices} devices: the step moved nothing");
    }
}

#[test]
fn running_statistics_become_the_mean_of_the_shard_updates() {
    let device = Default::default();
    // A fresh network, its parameters not initialised yet: the replicas must still share them.
    let net = Net::<B>::new(&device);
    let data = batch(6, 9);
    let mut optimizer = sgd(0.9, 0.0).init();
    let (net, _) = train_step(
        net,
        &mut optimizer,
        0.0,
        data.clone(),
        &[device, device],
        &per_device,
    )
    .unwrap();
    // Expected: (1 − 0.1)·0 + 0.1·mean over shards of each shard's channel mean of conv(x),
    // with the convolution the step left unchanged (lr 0).
    let conv = net.valid().conv;
    let shard_means: Vec<Tensor<Flex, 1>> = split_batch(data, 2)
        .into_iter()
        .map(|shard| {
            let (images, _, _) = shard.to_tensors::<Flex>(&device);
            let maps = conv.forward(images).swap_dims(0, 1);
            let [channels, ..] = maps.dims();
            maps.reshape([channels as i32, -1])
                .mean_dim(1)
                .reshape([channels])
        })
        .collect();
    let expected = (shard_means[0].clone() + shard_means[1].clone()).mul_scalar(0.5 * 0.1);
    net.bn
        .running_mean
        .value()
        .inner()
        .into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
}

fn student_setup(method: &str) -> (Student<B>, BackboneWithHead<Flex>) {
    use sskd::losses::{create_method, MethodContext};
    let device = Default::default();
    let teacher = BackboneWithHead::new(
        create_model::<B>("MobileNetV2", 5, &device).unwrap(),
        &device,
    );
    let backbone = create_model::<B>("MobileNetV2", 5, &device).unwrap();
    let (student, teacher_inner) = (backbone.valid(), teacher.backbone.valid());
    let context = MethodContext::probe(&student, &teacher_inner, [6, 6], 16, &device);
    let method = create_method::<B>(method, &context, &device).unwrap();
    let student = Student {
        network: BackboneWithHead::new(backbone, &device),
        method,
    };
    (student, teacher.valid())
}

fn rotation_batches(count: usize) -> Vec<Result<HostBatch, LoadError>> {
    (0..count)
        .map(|k| {
            let mut data = batch(8 * 4, k as u64);
            data.shape = [32, 3, 6, 6];
            data.labels = (0..8).map(|i| i % 5).collect();
            data.indices = (0..8).map(|i| i + 8 * (k as i64 % 2)).collect();
            data.pixels.truncate(32 * 3 * 6 * 6);
            Ok(data)
        })
        .collect()
}

#[test]
fn sskd_students_train_over_replicas_and_memory_bank_methods_are_refused() {
    let device = Default::default();
    let (student, teacher) = student_setup("sskd");
    let probe = || Tensor::<Flex, 4>::ones([2, 3, 6, 6], &device);
    let logits_before = student.network.backbone.valid().forward(probe()).logits;
    let mut optimizer = sgd(0.9, 5e-4).init();
    let (student, report) = student_epoch(
        student,
        &teacher,
        &mut optimizer,
        rotation_batches(2),
        &mut (),
        0,
        0.05,
        &[device, device],
    )
    .unwrap();
    for term in ["ce", "kd", "tf", "ss", "total"] {
        assert!(report.terms[term].is_finite(), "{term}: {:?}", report.terms);
    }
    assert_eq!(report.images, 16);
    assert_eq!(report.accuracy.total, 16);
    let logits_after = student.network.backbone.valid().forward(probe()).logits;
    let change = (logits_after - logits_before).abs().max().into_scalar();
    assert!(change > 1e-4, "the student did not move");

    let (crd, teacher) = student_setup("crd");
    let refused = student_epoch(
        crd,
        &teacher,
        &mut sgd(0.9, 5e-4).init(),
        rotation_batches(1),
        &mut (),
        0,
        0.05,
        &[device, device],
    )
    .unwrap_err();
    assert!(refused.to_string().contains("memory bank"), "{refused}");
}

#[test]
fn a_worker_that_fails_fails_the_step_with_its_error() {
    let device = Default::default();
    let failing = |net: &Net<B>, _: HostBatch, k: usize| {
        if k == 1 {
            Err(TrainError::Data(LoadError::Transform {
                index: 1,
                source: "shard 1 is broken".into(),
            }))
        } else {
            Ok(ShardOutput {
                loss: net.fc.weight.val().sum(),
                log: StepLog::default(),
            })
        }
    };
    let result = train_step(
        Net::<B>::new(&device),
        &mut sgd(0.9, 0.0).init(),
        0.1,
        batch(4, 1),
        &[device, device],
        &failing,
    );
    let error = result.expect_err("the step must fail");
    assert!(error.to_string().contains("shard 1 is broken"), "{error}");
}
