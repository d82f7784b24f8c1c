//! The three stages on the shipped Fashion-MNIST subset at a tiny size: a teacher learns, its
//! SS head trains on the frozen backbone, and SSKD and KD students train with every term.

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::transform::SelectionDataset;
use burn::module::{AutodiffModule, Module};
use rand::rngs::StdRng;
use sskd::augment::loader::{load_epoch, LoaderConfig, Sample, SampleError};
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::data::idx::idx_images;
use sskd::data::{LabeledImage, PlanarImages};
use sskd::losses::{create_method, MethodContext};
use sskd::models::{create_model, BackboneWithHead, SelfSupervisionHeadConfig};
use sskd::train::epoch::{evaluate, head_epoch, student_epoch, teacher_epoch, Student};
use sskd::train::metrics::{StepLog, StepObserver};
use sskd::train::{run_dir::JsonlLog, sgd};

type B = Autodiff<Flex>;

const MEAN: [f32; 3] = [0.286, 0.286, 0.286];
const STD: [f32; 3] = [0.353, 0.353, 0.353];

/// `count` class-balanced images of the shipped subset.
fn fashion(count: usize, test: bool) -> Arc<SelectionDataset<PlanarImages, LabeledImage>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let images = idx_images(&dir, if test { "t10k" } else { "train" }, 10)
        .unwrap()
        .padded(2);
    let indices = images.class_balanced(count / 10);
    Arc::new(SelectionDataset::from_indices_checked(images, indices))
}

fn plain(item: LabeledImage, _: &mut StdRng) -> Result<Sample, SampleError> {
    Ok(Sample::from_images(&[item.image], MEAN, STD, item.label))
}

fn rotations(item: LabeledImage, rng: &mut StdRng) -> Result<Sample, SampleError> {
    Ok(Sample::from_images(
        &sskd_rotations(&item.image, true, rng),
        MEAN,
        STD,
        item.label,
    ))
}

/// Counts the steps an epoch shows its observer.
#[derive(Default)]
struct StepsSeen {
    count: usize,
    images: usize,
    ce: f64,
}

impl StepObserver for StepsSeen {
    fn step(&mut self, step: &StepLog) {
        self.count += 1;
        self.images += step.images;
        self.ce += step.terms["ce"];
    }
}

#[test]
fn teacher_head_and_students_train_on_fashion_mnist() {
    let device = Default::default();
    // Weight initialisation draws from the backend's generator: seed it for a repeatable run.
    <B as burn::tensor::backend::Backend>::seed(&device, 0);
    let train = fashion(250, false);
    let test = fashion(120, true);
    let config = LoaderConfig::new(64, 3);

    let mut teacher = create_model::<B>("resnet8", 10, &device).unwrap();
    let mut optimizer = sgd(0.9, 5e-4).init();
    let mut losses = Vec::new();
    for epoch in 0..5 {
        let batches = load_epoch(train.clone(), Arc::new(plain), config, epoch);
        let mut steps = StepsSeen::default();
        let (next, report) = teacher_epoch(
            teacher,
            &mut optimizer,
            batches,
            &mut steps,
            0.05,
            std::slice::from_ref(&device),
        )
        .unwrap();
        teacher = next;
        // The observer saw every step, with the terms the report averages.
        assert_eq!(steps.images, report.images);
        assert!((steps.ce / steps.count as f64 - report.terms["ce"]).abs() < 1e-9);
        losses.push(report.terms["ce"]);
        assert_eq!(report.images, 250);
    }
    assert!(
        losses[4] < losses[0],
        "teacher loss should fall: {losses:?}"
    );
    let frozen = teacher.valid();
    let accuracy = evaluate(
        &frozen,
        load_epoch(
            test.clone(),
            Arc::new(plain),
            LoaderConfig {
                shuffle: false,
                ..config
            },
            0,
        ),
        false,
        &device,
    )
    .unwrap();
    assert_eq!(accuracy.total, 120);
    assert!(
        accuracy.top1_percent() > 25.0,
        "teacher top-1 {}",
        accuracy.top1_percent()
    );

    let mut head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(&device);
    let mut head_optimizer = sgd(0.9, 5e-4).init();
    for epoch in 0..2 {
        let batches = load_epoch(train.clone(), Arc::new(rotations), config, epoch);
        let (next, report) = head_epoch(
            &frozen,
            head,
            &mut head_optimizer,
            batches,
            &mut (),
            0.05,
            std::slice::from_ref(&device),
        )
        .unwrap();
        head = next;
        assert!(report.terms["ss_head"].is_finite());
        assert_eq!(report.accuracy.total, 3 * 250);
    }
    let teacher_with_head = BackboneWithHead {
        backbone: frozen,
        proj_head: head.valid(),
    };

    let student_model = create_model::<B>("resnet8", 10, &device).unwrap();
    let probe = student_model.valid();
    let context = MethodContext::probe(&probe, &probe, [32, 32], 250, &device);
    let log_dir = tempfile::tempdir().unwrap();
    let log = JsonlLog::new(&log_dir.path().join("metrics.jsonl"));
    for (name, transform) in [
        (
            "sskd",
            Arc::new(rotations)
                as Arc<
                    dyn Fn(LabeledImage, &mut StdRng) -> Result<Sample, SampleError> + Send + Sync,
                >,
        ),
        ("kd", Arc::new(plain)),
    ] {
        let student = Student {
            network: BackboneWithHead::new(
                create_model::<B>("resnet8", 10, &device).unwrap(),
                &device,
            ),
            method: create_method::<B>(name, &context, &device).unwrap(),
        };
        let mut optimizer = sgd(0.9, 5e-4).init();
        let batches = load_epoch(
            train.clone(),
            Arc::new(move |item, rng: &mut StdRng| transform(item, rng)),
            config,
            0,
        );
        let (student, report) = student_epoch(
            student,
            &teacher_with_head,
            &mut optimizer,
            batches,
            &mut (),
            0,
            0.05,
            std::slice::from_ref(&device),
        )
        .unwrap();
        let expected_terms: &[&str] = if name == "sskd" {
            &["ce", "kd", "tf", "ss", "total"]
        } else {
            &["ce", "kd", "total"]
        };
        assert_eq!(
            report
                .terms
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .len(),
            expected_terms.len(),
            "{name}: {:?}",
            report.terms
        );
        for term in expected_terms {
            assert!(report.terms[*term].is_finite(), "{name} {term}");
        }
        if name == "sskd" {
            assert!(
                report.counts["kept_ss"] > 0.0 && report.counts["kept_tf"] == 3.0 * 250.0 / 4.0,
                "{:?}",
                report.counts
            );
        }
        log.append(&serde_json::json!({"method": name, "epoch": 1, "train": report.to_json()}))
            .unwrap();
        assert!(student.network.num_params() > 0);
    }
    assert_eq!(log.read().unwrap().len(), 2);
}
