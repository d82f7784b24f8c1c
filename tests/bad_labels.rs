//! Labels a network cannot classify are an error naming them, in training and evaluation.
//! (Its own binary: it draws initial weights from the backend's generator, which the seeded
//! run of `training_stages.rs` must have to itself.)

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::transform::SelectionDataset;
use burn::module::AutodiffModule;
use rand::rngs::StdRng;
use sskd::augment::loader::{load_epoch, LoaderConfig, Sample, SampleError};
use sskd::data::idx::idx_images;
use sskd::data::{LabeledImage, PlanarImages};
use sskd::models::create_model;
use sskd::train::epoch::{evaluate, teacher_epoch};
use sskd::train::sgd;

type B = Autodiff<Flex>;

/// `count` class-balanced images of the shipped Fashion-MNIST subset (ten classes).
fn fashion(count: usize) -> Arc<SelectionDataset<PlanarImages, LabeledImage>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let images = idx_images(&dir, "train", 10).unwrap().padded(2);
    let indices = images.class_balanced(count / 10);
    Arc::new(SelectionDataset::from_indices_checked(images, indices))
}

fn plain(item: LabeledImage, _: &mut StdRng) -> Result<Sample, SampleError> {
    Ok(Sample::from_images(
        &[item.image],
        [0.5; 3],
        [0.5; 3],
        item.label,
    ))
}

#[test]
fn labels_outside_the_networks_classes_are_an_error_naming_them() {
    let device = Default::default();
    // Ten Fashion-MNIST classes for a network of eight: labels 8 and 9 do not fit.
    let train = fashion(40);
    let config = LoaderConfig::new(40, 1);
    let teacher = create_model::<B>("resnet8", 8, &device).unwrap();
    let mut optimizer = sgd(0.9, 5e-4).init();
    let batches = load_epoch(train.clone(), Arc::new(plain), config, 0);
    let devices = std::slice::from_ref(&device);
    let error = teacher_epoch(
        teacher.clone(),
        &mut optimizer,
        batches,
        &mut (),
        0.05,
        devices,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("outside the network's classes 0..8") && error.contains("num_classes"),
        "{error}"
    );
    let batches = load_epoch(train, Arc::new(plain), config, 0);
    let error = evaluate(&teacher.valid(), batches, false, &device)
        .unwrap_err()
        .to_string();
    assert!(error.contains("0..8"), "{error}");
}
