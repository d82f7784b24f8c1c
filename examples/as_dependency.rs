//! How another Rust project uses sskd: load a teacher with its SS head, build a student, and
//! distil with SSKD from its own data loop. README's "As a dependency" section shows this file;
//! CI builds and runs it, so the snippet keeps compiling.
//!
//! ```text
//! cargo run --release --example as_dependency [-- --steps 20]
//! ```
//! The teacher is the quickstart's resnet20 (10 classes, Fashion-MNIST); the "data loop" here
//! feeds the shipped Fashion-MNIST images in four rotations, as a user's own loader would.

use anyhow::Result;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use sskd::data::idx::idx_images;
use sskd::losses::{BatchLayout, DistillInputs, Distiller, NetworkOutputs, SskdConfig};
use sskd::models::checkpoint::load_record;
use sskd::models::{create_model, BackboneWithHead};
use sskd::train::sgd;

type B = Autodiff<Flex>;

/// A batch of `count` images from `start`, each in four rotations (rows 4i..4i+3), normalised:
/// `[4·count, 3, side, side]` and the labels `[count]`.
fn rotated_batch(
    images: &sskd::data::PlanarImages,
    start: usize,
    count: usize,
    device: &burn::tensor::Device<B>,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let (mut pixels, mut labels, side) = (Vec::new(), Vec::new(), images.height);
    for index in (start..start + count).map(|i| i % images.len()) {
        let image = images.image(index).expect("index in range");
        for quarter_turns in 0..4 {
            let rotated = sskd::augment::geometry::rotate90(&image, quarter_turns);
            pixels.extend(sskd::augment::normalize::normalize(
                &rotated, [0.286; 3], [0.353; 3],
            ));
        }
        labels.push(images.labels[index] as i64);
    }
    (
        Tensor::from_data(TensorData::new(pixels, [4 * count, 3, side, side]), device),
        Tensor::from_data(TensorData::new(labels, [count]), device),
    )
}

fn main() -> Result<()> {
    // The CPU kernels run fastest with the main thread as one of rayon's workers (this must come
    // before anything uses rayon) and freed memory kept for the next step's buffers; where
    // either cannot be done, the kernels run as they are.
    let _ = sskd::kernels::adopt_main_thread();
    sskd::kernels::keep_freed_memory();
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map_or(Ok(20), |s| s.parse())?;
    let device = Default::default();
    // A seeded student: the same printed steps in every run and every build.
    <B as burn::tensor::backend::Backend>::seed(&device, 0);

    // The teacher: architecture by name, weights from a Burn record (or a PyTorch checkpoint
    // through sskd::models::import::load_weights_with_head); frozen = inference mode.
    let teacher = BackboneWithHead::new(create_model::<B>("resnet20", 10, &device)?, &device);
    let teacher = load_record(teacher, "data/quickstart/teacher.mpk".as_ref(), &device)?.valid();

    // The student with its own SS head, SSKD with the code's defaults, torch-equivalent SGD.
    let mut student = BackboneWithHead::new(create_model::<B>("resnet8", 10, &device)?, &device);
    let sskd = SskdConfig::new().init()?;
    let mut optimizer = sgd(0.9, 5e-4).init();

    // 28×28 padded to 32×32: the CIFAR ResNets take no less than 29×29.
    let images = idx_images("data/fashion-mnist".as_ref(), "train", 10)?.padded(2);
    let mut after_first = None;
    for step in 0..steps {
        if step == 1 {
            after_first = Some(std::time::Instant::now());
        }
        let (x, y) = rotated_batch(&images, step * 32, 32, &device);
        let (teacher_out, teacher_head) = teacher.forward(x.clone().inner(), false);
        let (student_out, student_head) = student.forward(x, true);
        let inputs = DistillInputs {
            student: NetworkOutputs::from_model(student_out, Some(student_head)),
            teacher: NetworkOutputs::from_model(teacher_out, Some(teacher_head)).lift(),
            labels: y,
            sample_indices: None,
            contrast_indices: None,
            ss_labels: None,
            layout: BatchLayout::Rotations4,
            epoch: 0,
        };
        let terms = sskd.loss(&inputs)?;
        let total = terms.total();
        if step % 5 == 0 {
            let named: Vec<String> = terms
                .terms
                .iter()
                .map(|t| format!("{} {:.4}", t.name, t.value.clone().into_scalar()))
                .collect();
            println!("step {step}: {}", named.join(", "));
        }
        let gradients = GradientsParams::from_grads(total.backward(), &student);
        student = optimizer.step(0.05, student, gradients);
    }
    // On stderr, so that stdout is the same in every build (CI compares it).
    if let Some(start) = after_first {
        let per_step = start.elapsed().as_secs_f64() * 1e3 / (steps - 1) as f64;
        eprintln!("{per_step:.1} ms per step (steps 2..={steps}, batch 4 × 32)");
    }
    Ok(())
}
