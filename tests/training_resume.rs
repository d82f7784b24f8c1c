//! Kill and resume: an SSKD student run interrupted after a checkpoint and resumed with
//! `resume` ends with exactly the weights, log lines and best/last records of the
//! uninterrupted run — and so do CRD (its memory bank and its per-sample draws), a method
//! with a pre-training stage, and runs stopped inside epochs (a stop request after any step,
//! checkpoints every N steps); leftovers of unfinished writes are removed, never loaded; a
//! damaged or foreign checkpoint is an error naming the file.

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::transform::SelectionDataset;
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use sskd::augment::loader::{Sample, SampleError};
use sskd::augment::recipes::crop_and_flip;
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::data::idx::idx_images;
use sskd::data::{ClassLabels, LabeledImage, PlanarImages};
use sskd::losses::{MethodConfig, MethodContext};
use sskd::models::{create_model, BackboneWithHead};
use sskd::train::checkpoint::read_checkpoint;
use sskd::train::epoch::Student;
use sskd::train::fit::{FitOutcome, FitPlan};
use sskd::train::pause::{StepCheckpoints, StopRequest};
use sskd::train::progress::ProgressConfig;
use sskd::train::run_dir::{latest_epochs, RunDir};
use sskd::train::schedule::{CosineLr, LrSchedule};
use sskd::train::stages::{train_student, RunData};
use sskd::train::{ResumeMismatch, Stage, TrainError};

type B = Autodiff<Flex>;
type Subset = SelectionDataset<PlanarImages, LabeledImage>;

const EPOCHS: usize = 3;

/// The backend's generator is global: tests that seed it run one at a time.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fashion(count: usize, test: bool) -> Arc<Subset> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let images = idx_images(&dir, if test { "t10k" } else { "train" }, 10)
        .unwrap()
        .padded(2);
    let indices = images.class_balanced(count / 10);
    Arc::new(SelectionDataset::from_indices_checked(images, indices))
}

fn to_sample(copies: Vec<image::RgbImage>, label: usize) -> Result<Sample, SampleError> {
    Ok(Sample::from_images(&copies, [0.286; 3], [0.353; 3], label))
}

/// The run's data; with `poison`, every rotated sample of that class fails (the "kill").
fn data(poison: Option<usize>) -> RunData<Subset, LabeledImage> {
    RunData {
        train: fashion(60, false),
        train_labels: fashion(60, false).class_labels().into(),
        test: fashion(40, true),
        plain_train: Arc::new(|item: LabeledImage, rng: &mut StdRng| {
            to_sample(vec![crop_and_flip(&item.image, 32, 4, rng)], item.label)
        }),
        rotations_train: Arc::new(move |item: LabeledImage, rng: &mut StdRng| {
            if poison == Some(item.label) {
                return Err("simulated crash".into());
            }
            to_sample(sskd_rotations(&item.image, true, rng).to_vec(), item.label)
        }),
        plain_test: Arc::new(|item: LabeledImage, _: &mut StdRng| {
            to_sample(vec![item.image], item.label)
        }),
        rotations_test: Arc::new(|item: LabeledImage, rng: &mut StdRng| {
            to_sample(sskd_rotations(&item.image, false, rng).to_vec(), item.label)
        }),
        batch_size: 16,
        test_batch_size: 40,
        seed: 5,
    }
}

fn plan(resume: bool) -> FitPlan {
    let schedule = LrSchedule::Cosine(CosineLr {
        base: 0.05,
        epochs: EPOCHS,
        min: 0.0,
    });
    FitPlan {
        checkpoint_every: 1,
        resume,
        progress: ProgressConfig::off(),
        ..FitPlan::new(Stage::Student, EPOCHS, schedule, 5)
    }
}

fn student(device: &burn::tensor::Device<B>) -> Student<B> {
    student_with(&MethodConfig::published("sskd").unwrap(), device)
}

/// A resnet8 student of `method`, drawing by class from the training set of [`data`].
fn student_with(method: &MethodConfig, device: &burn::tensor::Device<B>) -> Student<B> {
    let network = BackboneWithHead::new(create_model::<B>("resnet8", 10, device).unwrap(), device);
    let probe = network.backbone.valid();
    let labels = data(None).train_labels;
    let context =
        MethodContext::probe(&probe, &probe, [32, 32], labels.len(), device).with_labels(labels, 5);
    Student {
        network,
        method: method.init::<B>(&context, device).unwrap(),
    }
}

fn teacher(device: &burn::tensor::Device<B>) -> BackboneWithHead<Flex> {
    <B as burn::tensor::backend::Backend>::seed(device, 11);
    BackboneWithHead::new(create_model::<B>("resnet8", 10, device).unwrap(), device).valid()
}

/// The 3-epoch plan from a fresh student seeded like every other run.
fn run(
    dir: &RunDir,
    data: &RunData<Subset, LabeledImage>,
    resume: bool,
) -> Result<FitOutcome<Student<B>>, TrainError> {
    run_method(
        &MethodConfig::published("sskd").unwrap(),
        dir,
        &plan(resume),
        data,
    )
}

/// `plan` for a fresh `method` student seeded like every other run.
fn run_method(
    method: &MethodConfig,
    dir: &RunDir,
    plan: &FitPlan,
    data: &RunData<Subset, LabeledImage>,
) -> Result<FitOutcome<Student<B>>, TrainError> {
    let device = Default::default();
    let teacher = teacher(&device);
    <B as burn::tensor::backend::Backend>::seed(&device, 3);
    train_student(
        dir,
        plan,
        student_with(method, &device),
        &teacher,
        data,
        (0.9, 5e-4),
        std::slice::from_ref(&device),
    )
}

fn logits(outcome: &FitOutcome<Student<B>>) -> Vec<f32> {
    let device = Default::default();
    let input = Tensor::<Flex, 4>::ones([2, 3, 32, 32], &device);
    let network = outcome.module.network.valid();
    network
        .backbone
        .forward(input)
        .logits
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let _serial = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let whole_dir = tempfile::tempdir().unwrap();
    let whole_run = RunDir::create(whole_dir.path()).unwrap();
    let whole = run(&whole_run, &data(None), false).unwrap();

    // Two epochs (a plan cut short, same schedule), then a resumed attempt that crashes in
    // epoch 2 (a data error), then a resume that finishes.
    let resumed_dir = tempfile::tempdir().unwrap();
    let resumed_run = RunDir::create(resumed_dir.path()).unwrap();
    let mut short = plan(false);
    short.epochs = 2;
    {
        let device = Default::default();
        let teacher = teacher(&device);
        <B as burn::tensor::backend::Backend>::seed(&device, 3);
        train_student(
            &resumed_run,
            &short,
            student(&device),
            &teacher,
            &data(None),
            (0.9, 5e-4),
            std::slice::from_ref(&device),
        )
        .unwrap();
    }
    let crashed = run(&resumed_run, &data(Some(3)), true);
    assert!(
        matches!(crashed, Err(TrainError::Data(ref m)) if m.to_string().contains("simulated crash")),
        "{crashed:?}"
    );
    let state = read_checkpoint(&resumed_run, "student").unwrap().unwrap();
    assert_eq!(
        state.epochs_done, 2,
        "the crash must not damage the checkpoint"
    );

    // What a kill in the middle of a checkpoint write leaves: the resume clears it.
    let leftover = resumed_run.path(".student-e3.mpk.4194301.partial");
    std::fs::write(&leftover, b"half a record").unwrap();
    let resumed = run(&resumed_run, &data(None), true).unwrap();
    assert!(
        !leftover.exists(),
        "a resume removes unfinished checkpoint files"
    );
    assert_eq!(logits(&whole), logits(&resumed));
    assert_eq!(whole.last, resumed.last);
    assert_eq!(whole.best, resumed.best);

    let whole_log = latest_epochs(&whole_run.log().read().unwrap());
    let resumed_lines = resumed_run.log().read().unwrap();
    assert!(resumed_lines.iter().any(|l| l["event"] == "resume"));
    let resumed_log = latest_epochs(&resumed_lines);
    assert_eq!(whole_log.len(), EPOCHS);
    for (a, b) in whole_log.iter().zip(&resumed_log) {
        assert_eq!(
            (&a["epoch"], &a["test"], &a["train"]["terms"]),
            (&b["epoch"], &b["test"], &b["train"]["terms"])
        );
    }
    // Only the committed checkpoint's records remain.
    let records: Vec<String> = std::fs::read_dir(resumed_run.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-e"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
}

/// CRD (memory bank, normalisers and contrast draws) and FSP (a pre-training epoch first)
/// stopped after two epochs and resumed end exactly where the uninterrupted runs end. (A
/// running state loaded from a record tracks gradients on the autodiff backend: CRD once
/// trained its memory bank after a resume.)
#[test]
fn memory_banks_and_pre_training_resume_exactly() {
    let _serial = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let settings = [r#"{"crd": {"nce_k": 8}}"#, r#"{"fsp": {"init_epochs": 1}}"#];
    for method in settings.map(|json| serde_json::from_str::<MethodConfig>(json).unwrap()) {
        let whole_dir = tempfile::tempdir().unwrap();
        let whole_run = RunDir::create(whole_dir.path()).unwrap();
        let whole = run_method(&method, &whole_run, &plan(false), &data(None)).unwrap();

        let resumed_dir = tempfile::tempdir().unwrap();
        let resumed_run = RunDir::create(resumed_dir.path()).unwrap();
        let short = FitPlan {
            epochs: 2,
            ..plan(false)
        };
        run_method(&method, &resumed_run, &short, &data(None)).unwrap();
        let resumed = run_method(&method, &resumed_run, &plan(true), &data(None)).unwrap();
        assert_eq!(logits(&whole), logits(&resumed), "{}", method.name());
        assert_eq!(whole.last, resumed.last, "{}", method.name());
        // Every tensor of the method (CRD: embeddings, memories, normalisers).
        let state = |outcome: &FitOutcome<Student<B>>| -> Vec<Vec<f32>> {
            use burn_store::ModuleSnapshot;
            let method = outcome.module.method.clone().valid();
            let snapshots = method.collect(None, None, true);
            let data = |s: &burn_store::TensorSnapshot| s.to_data().unwrap().to_vec().unwrap();
            snapshots.iter().map(data).collect()
        };
        assert_eq!(
            state(&whole),
            state(&resumed),
            "{}: method state",
            method.name()
        );
    }
}

#[test]
fn damaged_checkpoints_are_errors_naming_the_file() {
    let _serial = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let run_dir = RunDir::create(dir.path()).unwrap();
    let mut short = plan(false);
    short.epochs = 1;
    let device = Default::default();
    let teacher = teacher(&device);
    train_student(
        &run_dir,
        &short,
        student(&device),
        &teacher,
        &data(None),
        (0.9, 5e-4),
        std::slice::from_ref(&device),
    )
    .unwrap();
    let state = read_checkpoint(&run_dir, "student").unwrap().unwrap();

    std::fs::write(run_dir.path(&state.optimizer_file), b"not a record").unwrap();
    let error = run(&run_dir, &data(None), true).unwrap_err().to_string();
    assert!(error.contains(&state.optimizer_file), "{error}");

    std::fs::write(run_dir.path("student-checkpoint.json"), b"{").unwrap();
    let error = run(&run_dir, &data(None), true).unwrap_err().to_string();
    assert!(error.contains("student-checkpoint.json"), "{error}");
}

/// The figures of each epoch line of a run's log: epoch, test evaluation, training terms.
fn epoch_figures(run: &RunDir) -> Vec<serde_json::Value> {
    let lines = run.log().read().unwrap();
    latest_epochs(&lines)
        .iter()
        .map(|l| serde_json::json!([l["epoch"], l["test"], l["train"]["terms"]]))
        .collect()
}

/// Checkpoints every 3 steps change nothing; a run stopped after each step (every resume
/// stops again after its next step, across an epoch's end) and then resumed to the end equals
/// the uninterrupted run: weights, every epoch's figures, best and last. Files no checkpoint
/// names are removed on the way, never loaded; a resume with another epoch length is refused.
#[test]
fn stops_inside_epochs_resume_bit_for_bit() {
    let _serial = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let sskd = MethodConfig::published("sskd").unwrap();
    let new_run = |dir: &tempfile::TempDir| RunDir::create(dir.path()).unwrap();
    let (whole_dir, stepped_dir, stopped_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let whole_run = new_run(&whole_dir);
    let whole = run_method(&sskd, &whole_run, &plan(false), &data(None)).unwrap();

    let every_3_steps = FitPlan {
        within_epoch: StepCheckpoints {
            every_steps: 3,
            every_seconds: 0.0,
        },
        ..plan(false)
    };
    let stepped_run = new_run(&stepped_dir);
    let stepped = run_method(&sskd, &stepped_run, &every_3_steps, &data(None)).unwrap();
    assert_eq!(logits(&whole), logits(&stepped));
    assert_eq!(epoch_figures(&whole_run), epoch_figures(&stepped_run));

    let stop = StopRequest::new();
    stop.request();
    let stopping = FitPlan { stop, ..plan(true) };
    let stopped_run = new_run(&stopped_dir);
    let mut stops = Vec::new();
    for _ in 0..6 {
        match run_method(&sskd, &stopped_run, &stopping, &data(None)) {
            Err(TrainError::Stopped {
                stage,
                epoch,
                step,
                checkpoint,
            }) => {
                assert_eq!(
                    (stage, checkpoint.file_name().unwrap()),
                    (Stage::Student, "student-checkpoint.json".as_ref())
                );
                let state = read_checkpoint(&stopped_run, "student").unwrap().unwrap();
                assert_eq!(
                    state.model_file,
                    format!("student-e{epoch}-s{step}.model.mpk")
                );
                stops.push((epoch, step));
            }
            other => panic!("expected a stop, got {:?}", other.map(|o| o.last)),
        }
    }
    // 60 images in batches of 16: four steps an epoch.
    assert_eq!(stops, [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2)]);

    let other_length = RunData {
        batch_size: 20,
        ..data(None)
    };
    let refused = run_method(&sskd, &stopped_run, &plan(true), &other_length);
    assert!(
        matches!(
            refused,
            Err(TrainError::Resume {
                mismatch: ResumeMismatch::StepsPerEpoch {
                    stored: 4,
                    given: 3
                },
                ..
            })
        ),
        "{:?}",
        refused.map(|o| o.last)
    );

    // What writes cut short leave: a temporary file, records no checkpoint names (one of a
    // later position than the committed checkpoint).
    let leftovers = [
        ".student-e2-s3.model.mpk.77.partial",
        "student-e2-s3.model.mpk",
        "student-e7.optim.mpk",
    ];
    for name in leftovers {
        std::fs::write(stopped_run.path(name), b"half a record").unwrap();
    }
    let resumed = run_method(&sskd, &stopped_run, &plan(true), &data(None)).unwrap();
    for name in leftovers {
        assert!(!stopped_run.path(name).exists(), "{name} was left");
    }
    assert_eq!(logits(&whole), logits(&resumed));
    assert_eq!((whole.last, whole.best), (resumed.last, resumed.best));
    assert_eq!(epoch_figures(&whole_run), epoch_figures(&stopped_run));
}
