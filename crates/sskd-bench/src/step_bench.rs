//! The training steps the GPU benchmark times (`examples/gpu_bench.rs`, and its PyTorch twin
//! `tools/gpu_bench_torch.py`): one step of each SSKD stage on synthetic CIFAR-shaped batches,
//! run through the trainer's own epoch functions so that what is timed is what training runs.
//!
//! A configuration is named `KIND/TEACHER[/STUDENT]/BATCH`:
//! - `sskd/wrn_40_2/wrn_16_2/64`: the SSKD student step (frozen teacher with its SS head,
//!   4 × 64 rows, CE + KD + transformed KD + contrastive KD, SGD step);
//! - `kd/resnet32x4/resnet8x4/64`: the KD student step (64 rows, 0.1 · CE + 0.9 · KD);
//! - `teacher/wrn_40_2/64`: the stage-1 teacher step (cross-entropy);
//! - `head/wrn_40_2/64`: the stage-2 head step (frozen teacher, 4 × 64 rows).

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sskd::augment::loader::HostBatch;
use sskd::losses::MethodConfig;
use sskd::models::{create_model, BackboneWithHead, Model, SelfSupervisionHeadConfig};
use sskd::train::epoch::{head_epoch, student_epoch, teacher_epoch};
use sskd::train::metrics::EpochReport;
use sskd::train::{SetupError, TrainError};

use sskd::experiment::ExperimentConfig;
use sskd::recipe::build_student;

/// Side of the synthetic images (CIFAR).
pub const IMAGE_SIZE: usize = 32;
/// Classes of the synthetic labels (CIFAR-100).
pub const CLASSES: usize = 100;
/// Learning rate of the timed SGD steps.
const LR: f64 = 0.05;

/// What a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Stage 3 with SSKD (four rotations per image).
    Sskd,
    /// Stage 3 with KD (plain images).
    Kd,
    /// Stage 1: the teacher with cross-entropy.
    Teacher,
    /// Stage 2: the teacher's SS head on its frozen backbone (four rotations per image).
    Head,
}

impl StepKind {
    /// The name used in configuration names.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Sskd => "sskd",
            StepKind::Kd => "kd",
            StepKind::Teacher => "teacher",
            StepKind::Head => "head",
        }
    }

    /// Rows per source image: 4 where the step sees the four rotations.
    pub fn copies(self) -> usize {
        match self {
            StepKind::Sskd | StepKind::Head => 4,
            StepKind::Kd | StepKind::Teacher => 1,
        }
    }

    fn has_student(self) -> bool {
        matches!(self, StepKind::Sskd | StepKind::Kd)
    }
}

/// One timed configuration: a step kind, its networks and the batch in source images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepConfig {
    /// What the step trains.
    pub kind: StepKind,
    /// The teacher architecture (the trained network of `teacher` steps).
    pub teacher: String,
    /// The student architecture (`sskd` and `kd` steps).
    pub student: Option<String>,
    /// Source images per step (rows are `batch · kind.copies()`).
    pub batch: usize,
}

impl StepConfig {
    /// Rows of the step's input tensor.
    pub fn rows(&self) -> usize {
        self.batch * self.kind.copies()
    }
}

impl fmt::Display for StepConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.teacher)?;
        if let Some(student) = &self.student {
            write!(f, "/{student}")?;
        }
        write!(f, "/{}", self.batch)
    }
}

impl FromStr for StepConfig {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let usage = || {
            anyhow::anyhow!(
                "configuration `{text}`: expected sskd|kd/TEACHER/STUDENT/BATCH or teacher|head/TEACHER/BATCH"
            )
        };
        let kind = match parts.first().copied() {
            Some("sskd") => StepKind::Sskd,
            Some("kd") => StepKind::Kd,
            Some("teacher") => StepKind::Teacher,
            Some("head") => StepKind::Head,
            _ => return Err(usage()),
        };
        let networks = if kind.has_student() { 2 } else { 1 };
        if parts.len() != networks + 2 {
            return Err(usage());
        }
        let known = sskd::models::model_names();
        for arch in &parts[1..=networks] {
            if !known.contains(arch) {
                anyhow::bail!(
                    "configuration `{text}`: unknown architecture `{arch}`; known: {}",
                    known.join(", ")
                );
            }
        }
        let batch = parts[networks + 1]
            .parse::<usize>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "configuration `{text}`: batch `{}` is not a positive number",
                    parts[networks + 1]
                )
            })?;
        Ok(Self {
            kind,
            teacher: parts[1].to_string(),
            student: kind.has_student().then(|| parts[2].to_string()),
            batch,
        })
    }
}

/// The teacher → student pairs of the benchmark (paper Table 3's columns).
pub const PAIRS: [(&str, &str); 5] = [
    ("wrn_40_2", "wrn_16_2"),
    ("resnet32x4", "resnet8x4"),
    ("resnet56", "resnet20"),
    ("vgg13", "vgg8"),
    ("ResNet50", "MobileNetV2"),
];

/// Named sets of configurations: `core` (what one device session runs first: the SSKD step of
/// the two anchor pairs at batch 64, its KD, teacher and head steps, and batch 256) and `all`
/// (every step kind of every pair at batches 64 and 256).
pub fn config_set(name: &str) -> anyhow::Result<Vec<StepConfig>> {
    let names: Vec<String> = match name {
        "core" => [
            "sskd/wrn_40_2/wrn_16_2/64",
            "sskd/resnet32x4/resnet8x4/64",
            "kd/wrn_40_2/wrn_16_2/64",
            "teacher/wrn_40_2/64",
            "head/wrn_40_2/64",
            "sskd/wrn_40_2/wrn_16_2/256",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "all" => [64, 256]
            .iter()
            .flat_map(|batch| {
                PAIRS.iter().flat_map(move |(teacher, student)| {
                    [
                        format!("sskd/{teacher}/{student}/{batch}"),
                        format!("kd/{teacher}/{student}/{batch}"),
                        format!("teacher/{teacher}/{batch}"),
                        format!("head/{teacher}/{batch}"),
                    ]
                })
            })
            .collect(),
        _ => anyhow::bail!("unknown set `{name}`: expected core or all"),
    };
    names.iter().map(|n| n.parse()).collect()
}

/// A synthetic batch of `config`: seeded uniform pixels in [-2, 2) (normalised-image range),
/// random labels, indices `0..batch`; rows laid out as the loader lays them (`copies·i + k`).
pub fn synthetic_batch(config: &StepConfig, seed: u64) -> HostBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = [config.rows(), 3, IMAGE_SIZE, IMAGE_SIZE];
    let pixels = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let labels = (0..config.batch)
        .map(|_| rng.random_range(0..CLASSES as i64))
        .collect();
    HostBatch {
        pixels,
        shape,
        labels,
        indices: (0..config.batch as i64).collect(),
    }
}

/// A step of one configuration, its networks and optimiser built once; each call of
/// [`TrainingStep::run`] is one trainer step (upload, forward, loss, backward, SGD update,
/// the loss terms read back).
pub struct TrainingStep {
    step: Box<dyn FnMut(HostBatch) -> Result<EpochReport, TrainError>>,
}

impl TrainingStep {
    /// Builds the networks of `config` on `device` (weights as initialised: speed does not
    /// depend on them).
    pub fn new<B: AutodiffBackend>(
        config: &StepConfig,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let devices = vec![device.clone()];
        let teacher = create_model::<B>(&config.teacher, CLASSES, device)?;
        let optimizer = sskd::train::sgd(0.9, 5e-4);
        let step = match config.kind {
            StepKind::Teacher => stepper(teacher, optimizer.init(), move |model, opt, batch| {
                teacher_epoch(model, opt, [Ok(batch)], &mut (), LR, &devices)
            }),
            StepKind::Head => {
                let teacher = teacher.valid();
                let head =
                    SelfSupervisionHeadConfig::new(teacher.embedding_dim()).init::<B>(device);
                stepper(head, optimizer.init(), move |head, opt, batch| {
                    head_epoch(&teacher, head, opt, [Ok(batch)], &mut (), LR, &devices)
                })
            }
            StepKind::Sskd | StepKind::Kd => {
                let teacher = frozen_with_head::<B>(teacher, device);
                let student_arch = config.student.clone().unwrap_or_default();
                let experiment = ExperimentConfig::new(config.teacher.clone(), student_arch)
                    .with_method(MethodConfig::published(config.kind.name())?);
                // CIFAR-100's training set: 500 samples of each of the 100 classes.
                let labels: std::sync::Arc<[usize]> = (0..50_000).map(|i| i % 100).collect();
                let student =
                    build_student::<B>(&experiment, &teacher, &labels, IMAGE_SIZE, device)?;
                stepper(student, optimizer.init(), move |student, opt, batch| {
                    let batches = [Ok(batch)];
                    student_epoch(student, &teacher, opt, batches, &mut (), 0, LR, &devices)
                })
            }
        };
        Ok(Self { step })
    }

    /// One training step on `batch`; returns the trainer's report of it.
    pub fn run(&mut self, batch: HostBatch) -> Result<EpochReport, TrainError> {
        (self.step)(batch)
    }
}

/// The frozen (inference-mode) teacher with a fresh SS head, as stage 3 uses it.
fn frozen_with_head<B: AutodiffBackend>(
    teacher: Model<B>,
    device: &B::Device,
) -> BackboneWithHead<B::InnerBackend> {
    let backbone = teacher.valid();
    BackboneWithHead::new(backbone, device)
}

/// A boxed step over `module` and its optimiser: `epoch(module, optimizer, batch)` is one of
/// the trainer's epoch functions run on a single batch.
fn stepper<B, M, O, E>(
    module: M,
    mut optimizer: O,
    epoch: E,
) -> Box<dyn FnMut(HostBatch) -> Result<EpochReport, TrainError>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + 'static,
    O: Optimizer<M, B> + 'static,
    E: Fn(M, &mut O, HostBatch) -> Result<(M, EpochReport), TrainError> + 'static,
{
    let mut module = Some(module);
    Box::new(move |batch| {
        let current = module
            .take()
            .ok_or(TrainError::Setup(SetupError::ModuleGone))?;
        let (next, report) = epoch(current, &mut optimizer, batch)?;
        module = Some(next);
        Ok(report)
    })
}

/// Step times of one configuration: the first (cold) step and the timed steps after warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimes {
    /// Seconds from the start of building the networks to the end of the first step.
    pub first_step_s: f64,
    /// When the first step finished.
    pub first_step_at: Instant,
    /// Milliseconds of each timed step, sorted.
    pub steps_ms: Vec<f64>,
}

impl StepTimes {
    /// The `q`-quantile (0 ≤ q ≤ 1, nearest rank) of the timed steps, in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.steps_ms.is_empty() {
            return f64::NAN;
        }
        let index = ((self.steps_ms.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.steps_ms[index]
    }
}

/// Times `config` on `device`: builds it, runs `warmup` untimed steps (the first one timed
/// separately as the cold start), then `steps` timed ones, each followed by a device
/// synchronisation. `after_step` is called after every step (e.g. to sample device memory).
pub fn time_config<B: AutodiffBackend>(
    config: &StepConfig,
    device: &B::Device,
    warmup: usize,
    steps: usize,
    mut after_step: impl FnMut(),
) -> anyhow::Result<StepTimes> {
    let started = Instant::now();
    let batch = synthetic_batch(config, 0);
    let mut step = TrainingStep::new::<B>(config, device)?;
    let mut run = |batch: &HostBatch| -> anyhow::Result<f64> {
        let batch = batch.clone();
        let start = Instant::now();
        step.run(batch)?;
        B::sync(device).map_err(|e| anyhow::anyhow!("device synchronisation failed: {e:?}"))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        after_step();
        Ok(ms)
    };
    run(&batch)?;
    let first_step_at = Instant::now();
    let first_step_s = (first_step_at - started).as_secs_f64();
    for _ in 1..warmup {
        run(&batch)?;
    }
    let mut steps_ms = (0..steps)
        .map(|_| run(&batch))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    steps_ms.sort_by(f64::total_cmp);
    Ok(StepTimes {
        first_step_s,
        first_step_at,
        steps_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn names_round_trip() {
        for set in ["core", "all"] {
            for config in config_set(set).unwrap() {
                assert_eq!(config.to_string().parse::<StepConfig>().unwrap(), config);
            }
        }
        assert_eq!(config_set("all").unwrap().len(), 40);
    }

    #[test]
    fn bad_names_are_explained() {
        let cases = [
            ("sskd/wrn_40_2/64", "expected"),
            ("teacher/wrn_40_2/wrn_16_2/64", "expected"),
            ("mixup/wrn_40_2/64", "expected"),
            ("kd/wrn_40_2/wrn_99_9/64", "unknown architecture `wrn_99_9`"),
            ("head/wrn_40_2/0", "batch `0`"),
            ("head/wrn_40_2/x", "batch `x`"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<StepConfig>().unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
        assert!(config_set("some").is_err());
    }

    #[test]
    fn synthetic_batches_have_the_loader_layout() {
        let config: StepConfig = "sskd/resnet8/resnet8/3".parse().unwrap();
        let batch = synthetic_batch(&config, 7);
        assert_eq!(batch.shape, [12, 3, 32, 32]);
        assert_eq!(batch.pixels.len(), 12 * 3 * 32 * 32);
        assert_eq!(batch.labels.len(), 3);
        assert!(batch.labels.iter().all(|l| (0..100).contains(l)));
        let again = synthetic_batch(&config, 7);
        assert_eq!((batch.pixels, batch.labels), (again.pixels, again.labels));
        assert_eq!(batch.indices, vec![0, 1, 2]);
    }

    #[test]
    fn every_kind_trains_and_reports_its_terms() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        let expected = [
            (
                "sskd/resnet8/resnet8/2",
                vec!["ce", "kd", "ss", "tf", "total"],
            ),
            ("kd/resnet8/resnet8/2", vec!["ce", "kd", "total"]),
            ("teacher/resnet8/2", vec!["ce", "total"]),
            ("head/resnet8/2", vec!["ss_head", "total"]),
        ];
        for (name, terms) in expected {
            let config: StepConfig = name.parse().unwrap();
            let mut step = TrainingStep::new::<B>(&config, &device).unwrap();
            let report = step.run(synthetic_batch(&config, 1)).unwrap();
            let names: Vec<&str> = report.terms.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, terms, "{name}");
            assert_eq!(report.images, 2, "{name}");
            assert!(report.terms["total"].is_finite(), "{name}");
        }
    }

    #[test]
    fn timing_counts_warmup_and_steps() {
        type B = Autodiff<Flex>;
        let config: StepConfig = "teacher/resnet8/2".parse().unwrap();
        let mut calls = 0;
        let times = time_config::<B>(&config, &Default::default(), 2, 3, || calls += 1).unwrap();
        assert_eq!(calls, 5);
        assert_eq!(times.steps_ms.len(), 3);
        assert!(times.steps_ms.windows(2).all(|w| w[0] <= w[1]));
        assert!(times.first_step_s > 0.0);
        assert_eq!(times.quantile_ms(0.0), times.steps_ms[0]);
        assert_eq!(times.quantile_ms(1.0), times.steps_ms[2]);
    }
}
