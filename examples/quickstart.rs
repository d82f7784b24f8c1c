//! The offline quickstart: SSKD against KD and plain training on the shipped Fashion-MNIST
//! subset, in the few-labels regime where the paper reports its largest gains.
//!
//! ```text
//! cargo run --release --example quickstart                  # students only (teacher shipped)
//! cargo run --release --example quickstart -- --train-teacher
//! ```
//! The teacher (resnet20 with its SS head) was trained by this project's own stages with
//! `--train-teacher` and ships as `data/quickstart/teacher.mpk`. Three resnet8 students learn
//! from `--labelled` training images: plain cross-entropy, KD, and SSKD; each is evaluated on
//! the 2,000 test images. Metrics go to `--out` as JSONL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::data::dataset::transform::SelectionDataset;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use sskd::augment::loader::{load_epoch, LoaderConfig, Sample};
use sskd::augment::pipeline::sskd_rotations;
use sskd::data::idx::idx_images;
use sskd::data::{LabeledImage, PlanarImages};
use sskd::losses::{create_method, FeatureShapes, MethodContext};
use sskd::models::checkpoint::{load_record, save_record};
use sskd::models::{create_model, BackboneWithHead, Model, SelfSupervisionHeadConfig};
use sskd::train::metrics::JsonlLog;
use sskd::train::schedule::MultiStepLr;
use sskd::train::sgd;
use sskd::train::stages::{evaluate, head_epoch, student_epoch, teacher_epoch, Student};

type B = Autodiff<Flex>;
type Transform = Arc<dyn Fn(LabeledImage, &mut StdRng) -> Result<Sample, String> + Send + Sync>;

const MEAN: [f32; 3] = [0.286, 0.286, 0.286];
const STD: [f32; 3] = [0.353, 0.353, 0.353];

#[derive(Parser, Debug)]
#[command(about = "SSKD vs KD vs plain training on the shipped Fashion-MNIST subset")]
struct Args {
    /// Train the teacher and its SS head again (and overwrite --teacher).
    #[arg(long)]
    train_teacher: bool,
    /// The teacher record.
    #[arg(long, default_value = "data/quickstart/teacher.mpk")]
    teacher: PathBuf,
    /// The Fashion-MNIST folder.
    #[arg(long, default_value = "data/fashion-mnist")]
    data: PathBuf,
    /// Labelled training images for the students (class-balanced).
    #[arg(long, default_value_t = 640)]
    labelled: usize,
    /// Student epochs.
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Teacher epochs (with --train-teacher).
    #[arg(long, default_value_t = 4)]
    teacher_epochs: usize,
    /// SS-head epochs (with --train-teacher).
    #[arg(long, default_value_t = 2)]
    head_epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run folder for the metrics.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
}

type Subset = SelectionDataset<PlanarImages, LabeledImage>;

/// `count` class-balanced images of `images` (the first `count / 10` of each class).
fn subset(images: &Arc<PlanarImages>, count: usize) -> Arc<Subset> {
    let indices = images.class_balanced((count / 10).max(1));
    Arc::new(SelectionDataset::from_indices_checked(
        images.clone(),
        indices,
    ))
}

fn plain() -> Transform {
    Arc::new(|item: LabeledImage, _: &mut StdRng| {
        Ok(Sample::from_images(&[item.image], MEAN, STD, item.label))
    })
}

fn rotations() -> Transform {
    Arc::new(|item: LabeledImage, rng: &mut StdRng| {
        Ok(Sample::from_images(
            &sskd_rotations(&item.image, true, rng),
            MEAN,
            STD,
            item.label,
        ))
    })
}

fn progress(label: &str, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} epochs, eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Cross-entropy training of `model` on `data` for `epochs`, logging each epoch under `stage`.
fn train_with_ce(
    mut model: Model<B>,
    data: &Arc<Subset>,
    epochs: usize,
    seed: u64,
    stage: &str,
    log: &JsonlLog,
    device: &burn::tensor::Device<B>,
) -> Result<Model<B>> {
    let mut optimizer = sgd(0.9, 5e-4).init();
    let schedule = MultiStepLr {
        base: 0.05,
        milestones: vec![epochs * 3 / 4],
        gamma: 0.1,
    };
    let bar = progress(stage, epochs);
    for epoch in 0..epochs {
        let batches = load_epoch(
            data.clone(),
            plain(),
            LoaderConfig::new(64, seed),
            epoch as u64,
        );
        let lr = schedule.lr(epoch);
        let (next, report) = teacher_epoch(model, &mut optimizer, batches, lr, device)?;
        model = next;
        log.append(&serde_json::json!({"stage": stage, "epoch": epoch, "lr": lr, "train": report.to_json()}))?;
        bar.set_message(format!("ce {:.3}", report.terms["ce"]));
        bar.inc(1);
    }
    bar.finish();
    Ok(model)
}

fn train_teacher(
    args: &Args,
    train: &Arc<PlanarImages>,
    device: &burn::tensor::Device<B>,
    log: &JsonlLog,
) -> Result<BackboneWithHead<B>> {
    let data = subset(train, train.len());
    let model = create_model::<B>("resnet20", 10, device)?;
    let model = train_with_ce(
        model,
        &data,
        args.teacher_epochs,
        args.seed,
        "teacher",
        log,
        device,
    )?;
    let frozen = model.valid();
    let mut head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(device);
    let mut head_optimizer = sgd(0.9, 5e-4).init();
    let bar = progress("ss head", args.head_epochs);
    for epoch in 0..args.head_epochs {
        let batches = load_epoch(
            data.clone(),
            rotations(),
            LoaderConfig::new(64, args.seed),
            epoch as u64,
        );
        let (next, report) = head_epoch(&frozen, head, &mut head_optimizer, batches, 0.05, device)?;
        head = next;
        log.append(
            &serde_json::json!({"stage": "head", "epoch": epoch, "train": report.to_json()}),
        )?;
        bar.set_message(format!("head acc {:.1}%", report.accuracy.top1_percent()));
        bar.inc(1);
    }
    bar.finish();
    Ok(BackboneWithHead {
        backbone: model,
        proj_head: head,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Default::default();
    // Weight initialisation draws from the backend's generator.
    <B as burn::tensor::backend::Backend>::seed(&device, args.seed);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let log = JsonlLog::new(&args.out.join("metrics.jsonl"));
    let train = Arc::new(idx_images(&args.data, "train", 10)?);
    let test = Arc::new(idx_images(&args.data, "t10k", 10)?);
    let test_data = subset(&test, test.len());
    let evaluate_model = |model: &Model<B>| -> Result<f64> {
        let batches = load_epoch(
            test_data.clone(),
            plain(),
            LoaderConfig {
                shuffle: false,
                ..LoaderConfig::new(256, 0)
            },
            0,
        );
        Ok(evaluate(&model.valid(), batches, false, &device)?.top1_percent())
    };

    let teacher = if args.train_teacher {
        let teacher = train_teacher(&args, &train, &device, &log)?;
        if let Some(parent) = args.teacher.parent() {
            std::fs::create_dir_all(parent)?;
        }
        save_record(teacher.clone(), &args.teacher)?;
        teacher
    } else {
        let shell = BackboneWithHead::new(create_model::<B>("resnet20", 10, &device)?, &device);
        load_record(shell, &args.teacher, &device)
            .with_context(|| "run with --train-teacher to make the teacher")?
    };
    let teacher_accuracy = evaluate_model(&teacher.backbone)?;
    let frozen_teacher = teacher.valid();

    let labelled = subset(&train, args.labelled);
    let probe = create_model::<B>("resnet8", 10, &device)?;
    let context = MethodContext {
        student: FeatureShapes::probe(&probe, 28, 28, &device),
        teacher: FeatureShapes::probe(&teacher.backbone, 28, 28, &device),
        n_data: labelled.len(),
        with_kd: true,
    };
    let mut rows = vec![("teacher resnet20".to_string(), teacher_accuracy, 0.0)];
    for method in ["vanilla", "kd", "sskd"] {
        let started = Instant::now();
        let network = BackboneWithHead::new(create_model::<B>("resnet8", 10, &device)?, &device);
        let schedule = MultiStepLr {
            base: 0.05,
            milestones: vec![args.epochs * 3 / 4],
            gamma: 0.1,
        };
        let trained = if method == "vanilla" {
            train_with_ce(
                network.backbone,
                &labelled,
                args.epochs,
                args.seed,
                "vanilla",
                &log,
                &device,
            )?
        } else {
            let bar = progress(method, args.epochs);
            let mut student = Student {
                network,
                method: create_method::<B>(method, &context, &device)?,
            };
            let mut optimizer = sgd(0.9, 5e-4).init();
            let transform = if method == "sskd" {
                rotations()
            } else {
                plain()
            };
            for epoch in 0..args.epochs {
                let batches = load_epoch(
                    labelled.clone(),
                    transform.clone(),
                    LoaderConfig::new(64, args.seed),
                    epoch as u64,
                );
                let (next, report) = student_epoch(
                    student,
                    &frozen_teacher,
                    &mut optimizer,
                    batches,
                    epoch,
                    schedule.lr(epoch),
                    &device,
                )?;
                student = next;
                log.append(&serde_json::json!({"stage": "student", "method": method, "epoch": epoch, "train": report.to_json()}))?;
                bar.set_message(format!("loss {:.3}", report.terms["total"]));
                bar.inc(1);
            }
            bar.finish();
            student.network.backbone
        };
        let accuracy = evaluate_model(&trained)?;
        let seconds = started.elapsed().as_secs_f64();
        log.append(&serde_json::json!({"stage": "result", "method": method, "test_top1": accuracy, "seconds": seconds, "last_epoch": args.epochs - 1}))?;
        rows.push((format!("student resnet8, {method}"), accuracy, seconds));
    }
    println!("\nFashion-MNIST test (2,000 images), students on {} labelled images, {} epochs, last epoch:", labelled.len(), args.epochs);
    println!("{:<28} {:>8} {:>10}", "model", "top-1 %", "train s");
    for (name, accuracy, seconds) in rows {
        println!("{name:<28} {accuracy:>8.2} {seconds:>10.1}");
    }
    println!("metrics: {}", args.out.join("metrics.jsonl").display());
    Ok(())
}
