//! The SSKD recipe as library code: an experiment config, the data and plain [`StageOptions`]
//! in, the three stages out — the teacher (stage 1), its SS head on the frozen backbone
//! (stage 2) and the student over one seed or several with their mean ± std (stage 3), each in
//! its run folder with log, checkpoints, best/last records and plot. The examples' command lines
//! ([`crate::cli`]) and the quickstart build their options and call it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use sskd_augment::loader::Sample;
use sskd_data::LabeledImage;
use sskd_losses::{Distiller, MethodContext};
use sskd_models::atomic::write_atomically;
use sskd_models::checkpoint::{load_record, save_record};
use sskd_models::import::{load_weights, load_weights_with_head};
use sskd_models::{create_model, BackboneWithHead, ModelError, SelfSupervisionHeadConfig};
use sskd_train::epoch::Student;
use sskd_train::fit::FitPlan;
use sskd_train::metrics::EpochResult;
use sskd_train::pause::{StepCheckpoints, StopRequest};
use sskd_train::plot::plot_run;
use sskd_train::progress::ProgressConfig;
use sskd_train::report::mean_and_std;
use sskd_train::run_dir::RunDir;
use sskd_train::stages::{train_head, train_student, train_teacher, RunData, Transform};
use sskd_train::Stage;

use crate::experiment::{ExperimentConfig, StageConfig};
use crate::provenance::{open_run, RunStart};

/// Where a stage runs and what it starts from.
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue from the stage's last checkpoint in `out`.
    pub resume: bool,
    /// Teacher weights: stage 1's record or a PyTorch checkpoint (head stage); the teacher with
    /// its SS head, the head stage's `teacher-with-head.mpk` or SSKD's `teacher.pth` (student
    /// stage).
    pub teacher: Option<PathBuf>,
    /// Seeds of the student stage: one run each under `OUT/seed-N`, then their mean ± std; none
    /// for one run with the config's seed in `out`.
    pub seeds: Vec<u64>,
    /// The side of the training images, which sizes the method's modules (student stage).
    pub image_size: usize,
    /// How the stages show their progress.
    pub progress: ProgressConfig,
    /// Resume even when the run folder's `config.json` differs from this config in a field
    /// that changes the result.
    pub allow_config_change: bool,
    /// A stop to honour after any training step, with a checkpoint there (SIGTERM, SIGINT:
    /// [`crate::cli::signals`]).
    pub stop: StopRequest,
    /// This process's place in a run across machines (feature `collective`).
    #[cfg(feature = "collective")]
    pub node: Option<sskd_train::nodes::NodeConfig>,
}

impl StageOptions {
    /// The teacher weights, or an error saying what they are for.
    pub fn teacher_weights(&self, what: &str) -> Result<&Path> {
        self.teacher
            .as_deref()
            .with_context(|| format!("--teacher is required: {what}"))
    }
}

/// Runs `train` as one node of the run across machines of `options` (feature `collective`),
/// else as it is.
fn in_node_group<B: AutodiffBackend, T>(
    options: &StageOptions,
    device: &B::Device,
    train: impl FnOnce() -> Result<T>,
) -> Result<T> {
    #[cfg(feature = "collective")]
    if let Some(node) = &options.node {
        sskd_train::nodes::join::<B::InnerBackend>(node.clone(), device)?;
        let result = train();
        // After a failure (a peer gone, a stop) the group is not left in order: the other
        // nodes are gone or go too, and leaving would wait on them.
        if result.is_ok() {
            sskd_train::nodes::leave::<B::InnerBackend>()?;
        }
        return result;
    }
    let _ = (options, device);
    train()
}

/// A transform of an item's image into normalised copies (one, or four rotations).
pub fn transform(
    mean: [f32; 3],
    std: [f32; 3],
    make: impl Fn(&image::RgbImage, &mut StdRng) -> Vec<image::RgbImage> + Send + Sync + 'static,
) -> Transform<LabeledImage> {
    Arc::new(move |item: LabeledImage, rng: &mut StdRng| {
        Ok(Sample::from_images(
            &make(&item.image, rng),
            mean,
            std,
            item.label,
        ))
    })
}

/// The fit plan of `stage` training `arch`, tagged with the experiment, resumed and shown as
/// `options` say.
pub fn plan(
    (stage, arch): (Stage, &str),
    config: &StageConfig,
    experiment: &ExperimentConfig,
    options: &StageOptions,
) -> FitPlan {
    let mut tags = serde_json::Map::new();
    tags.insert("arch".into(), arch.into());
    tags.insert("teacher_arch".into(), experiment.teacher.clone().into());
    tags.insert("student_arch".into(), experiment.student.clone().into());
    tags.insert("method".into(), experiment.method.name().into());
    tags.insert("seed".into(), experiment.seed.into());
    FitPlan {
        checkpoint_every: experiment.checkpoint_every,
        within_epoch: StepCheckpoints {
            every_steps: experiment.checkpoint_every_steps,
            every_seconds: 60.0 * experiment.checkpoint_every_minutes,
        },
        stop: options.stop.clone(),
        resume: options.resume,
        tags,
        progress: options.progress,
        ..FitPlan::new(stage, config.epochs, config.schedule(), experiment.seed)
    }
}

/// SGD's momentum and weight decay of `config`.
pub fn sgd(config: &ExperimentConfig) -> (f64, f64) {
    (config.momentum, config.weight_decay)
}

/// A fresh student of `config`: backbone, SS head and the method's modules (their shapes
/// probed at `image_size`; methods that draw training samples by class get `train_labels`).
pub fn build_student<B: AutodiffBackend>(
    config: &ExperimentConfig,
    teacher: &BackboneWithHead<B::InnerBackend>,
    train_labels: &Arc<[usize]>,
    image_size: usize,
    device: &B::Device,
) -> Result<Student<B>> {
    let backbone = create_model::<B>(&config.student, config.num_classes, device)?;
    let image = [image_size, image_size];
    backbone.check_input(image)?;
    teacher.backbone.check_input(image)?;
    let n_data = train_labels.len();
    let context = MethodContext::probe(&backbone.valid(), &teacher.backbone, image, n_data, device)
        .with_labels(train_labels.clone(), config.seed);
    let method = config.method.init(&context, device)?;
    Ok(Student {
        network: BackboneWithHead::new(backbone, device),
        method,
    })
}

/// What a stage produced: its best and last epochs and the record the next stage uses.
#[derive(Debug, Clone, PartialEq)]
pub struct StageResult {
    /// The best epoch (top-1; SS-head accuracy for the head stage).
    pub best: Option<EpochResult>,
    /// The last epoch.
    pub last: Option<EpochResult>,
    /// The record for the next stage: `teacher-best.mpk` (teacher), `teacher-with-head.mpk`
    /// (head), `student-best-backbone.mpk` (a student: its classifier alone, a model of the zoo).
    pub record: PathBuf,
}

/// A student run of one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Its run.
    pub result: StageResult,
}

/// Mean and sample standard deviation of the seeds' top-1, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedSummary {
    /// Mean of the best-epoch top-1.
    pub best_mean: f64,
    /// Standard deviation of the best-epoch top-1.
    pub best_std: f64,
    /// Mean of the last-epoch top-1.
    pub last_mean: f64,
    /// Standard deviation of the last-epoch top-1.
    pub last_std: f64,
}

/// What the student stage produced: one run, or one per seed and their summary
/// (`OUT/seeds.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct StudentResult {
    /// The runs, in the order of the seeds.
    pub runs: Vec<SeedRun>,
    /// Mean ± std over the seeds (with `options.seeds`).
    pub summary: Option<SeedSummary>,
}

/// The recipe of an experiment: its config, its data and where the stages run.
pub struct Recipe<'a, D, I> {
    /// The experiment.
    pub config: &'a ExperimentConfig,
    /// Datasets and transforms.
    pub data: &'a RunData<D, I>,
    /// Run folder, resume, teacher weights, seeds.
    pub options: &'a StageOptions,
}

impl<D, I> Recipe<'_, D, I>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    /// The device a stage runs on (the first of `devices`), once the config is checked: a
    /// config no stage can run (zero epochs, an unknown architecture, ...) is an error before
    /// anything is written.
    fn first_device<'d, B: AutodiffBackend>(
        &self,
        devices: &'d [B::Device],
    ) -> Result<&'d B::Device> {
        self.config
            .validate()
            .map_err(|e| anyhow::anyhow!("experiment config: {e}"))?;
        devices.first().context("no device given")
    }

    /// The run folder `out` of `stage` running `config`, checked against and described by its
    /// `config.json` and `run.json` ([`crate::provenance`]).
    fn open_run<B: AutodiffBackend>(
        &self,
        stage: Stage,
        config: &ExperimentConfig,
        out: &Path,
        devices: &[B::Device],
    ) -> Result<RunDir> {
        let options = self.options;
        let start = RunStart {
            stage,
            config,
            resume: (options.resume, options.allow_config_change),
            seeds: &options.seeds,
        };
        open_run::<B>(out, &start, devices)
    }

    /// Stage 1: the teacher `config.teacher` trained with cross-entropy, in `options.out`
    /// (`teacher-best.mpk`, `teacher-last.mpk`, the log and the plot); SSKD goes on from the
    /// best teacher.
    pub fn teacher<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<StageResult> {
        let stage = &self.config.teacher_stage;
        self.plain::<B>(&self.config.teacher, (Stage::Teacher, stage), devices)
    }

    /// The network `arch` trained with cross-entropy alone, as the stage `stage` with the
    /// schedule of `config`, in `options.out` (`{stage}-best.mpk`, `{stage}-last.mpk`): the
    /// teacher of stage 1, or a student without distillation (the method `vanilla`).
    pub fn plain<B: AutodiffBackend>(
        &self,
        arch: &str,
        (stage, config): (Stage, &StageConfig),
        devices: &[B::Device],
    ) -> Result<StageResult> {
        let device = self.first_device::<B>(devices)?;
        let run = (self.config, self.data, self.options.out.as_path());
        in_node_group::<B, _>(self.options, device, || {
            self.plain_run::<B>(arch, (stage, config), run, devices)
        })
    }

    /// [`Recipe::plain`] of the experiment `config` on `data` in the run folder `out`.
    fn plain_run<B: AutodiffBackend>(
        &self,
        arch: &str,
        (stage, stage_config): (Stage, &StageConfig),
        (config, data, out): (&ExperimentConfig, &RunData<D, I>, &Path),
        devices: &[B::Device],
    ) -> Result<StageResult> {
        let device = self.first_device::<B>(devices)?;
        stage_config
            .validate(stage.name())
            .map_err(|e| anyhow::anyhow!("stage {stage}: {e}"))?;
        B::seed(device, config.seed);
        let run = self.open_run::<B>(stage, config, out, devices)?;
        let model = create_model::<B>(arch, config.num_classes, device)?;
        let mut plan = plan((stage, arch), stage_config, config, self.options);
        // Cross-entropy alone: the distillation method plays no part.
        plan.tags.remove("method");
        let outcome = train_teacher(&run, &plan, model, data, sgd(config), devices)?;
        plot_run(&run)?;
        Ok(StageResult {
            best: outcome.best,
            last: outcome.last,
            record: run.path(&format!("{stage}-best.mpk")),
        })
    }

    /// Stage 2: the SS head of the teacher in `options.teacher` (a record of stage 1 or a
    /// PyTorch checkpoint) trained on its frozen backbone; writes `teacher-with-head.mpk` (the
    /// head of the last epoch, as SSKD keeps it) to `options.out`.
    pub fn head<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<StageResult> {
        let device = self.first_device::<B>(devices)?;
        B::seed(device, self.config.seed);
        let weights = self
            .options
            .teacher_weights("the teacher backbone to train a head on")?;
        let teacher = create_model::<B>(&self.config.teacher, self.config.num_classes, device)?;
        let teacher = load_weights(teacher, weights, device)?;
        let run = self.open_run::<B>(Stage::Head, self.config, &self.options.out, devices)?;
        let frozen = teacher.valid();
        let head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(device);
        let stage = (Stage::Head, self.config.teacher.as_str());
        let plan = plan(stage, &self.config.head_stage, self.config, self.options);
        let outcome = in_node_group::<B, _>(self.options, device, || {
            Ok(train_head(
                &run,
                &plan,
                &frozen,
                head,
                self.data,
                sgd(self.config),
                devices,
            )?)
        })?;
        let with_head = BackboneWithHead {
            backbone: teacher,
            proj_head: outcome.module,
        };
        let path = run.path("teacher-with-head.mpk");
        save_record(with_head, &path)?;
        plot_run(&run)?;
        Ok(StageResult {
            best: outcome.best,
            last: outcome.last,
            record: path,
        })
    }

    /// Stage 3: the student distilled from the teacher with its SS head in `options.teacher`
    /// (the head stage's `teacher-with-head.mpk`, or SSKD's `teacher.pth`): one run in
    /// `options.out`, or one per seed of `options.seeds` under `OUT/seed-N` followed by their
    /// mean ± std (`OUT/seeds.json`). The method's modules are sized by a probe at
    /// `options.image_size`.
    pub fn student<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<StudentResult> {
        if self.options.image_size == 0 {
            bail!("StageOptions::image_size is 0: give the side of the training images");
        }
        let device = self.first_device::<B>(devices)?;
        // A method that learns from no teacher (`vanilla`) trains the student as stage 1 trains
        // a teacher.
        let teacher = match self.config.method.uses_teacher() {
            false => None,
            true => {
                let weights = self.options.teacher_weights(
                    "the teacher (stage 1's teacher-best.mpk or a PyTorch checkpoint; SSKD needs \
                     it with its SS head: the head stage's teacher-with-head.mpk, or SSKD's \
                     teacher.pth)",
                )?;
                Some(load_teacher::<B>(self.config, weights, device)?)
            }
        };
        let run_of = |config: &ExperimentConfig, data: &RunData<D, I>, out: &Path| {
            let Some(teacher) = &teacher else {
                let stage = (Stage::Student, &config.student_stage);
                return self.plain_run::<B>(&config.student, stage, (config, data, out), devices);
            };
            let run = self.open_run::<B>(Stage::Student, config, out, devices)?;
            let input = StudentInput {
                config,
                teacher,
                data,
                image_size: self.options.image_size,
            };
            student_run::<B, D, I>(&input, &run, self.options, devices)
        };
        in_node_group::<B, _>(self.options, device, || {
            if self.options.seeds.is_empty() {
                let result = run_of(self.config, self.data, &self.options.out)?;
                let seed = self.config.seed;
                return Ok(StudentResult {
                    runs: vec![SeedRun { seed, result }],
                    summary: None,
                });
            }
            let mut runs = Vec::new();
            for &seed in &self.options.seeds {
                let mut config = self.config.clone();
                config.seed = seed;
                let data = RunData {
                    seed,
                    ..self.data.clone()
                };
                let out = self.options.out.join(format!("seed-{seed}"));
                let result = run_of(&config, &data, &out)?;
                runs.push(SeedRun { seed, result });
            }
            let summary = summarise_seeds(&self.options.out, &runs)?;
            Ok(StudentResult {
                runs,
                summary: Some(summary),
            })
        })
    }
}

/// The frozen teacher of the student stage, and where its weights came from.
struct Teacher<B: AutodiffBackend> {
    network: BackboneWithHead<B::InnerBackend>,
    /// The file read.
    path: PathBuf,
    /// Whether the file held the SS head (else the head is a fresh, unused one).
    has_head: bool,
}

/// The teacher `config.teacher` from `path`: with its SS head (the head stage's record, SSKD's
/// `teacher.pth`) or without (stage 1's record, a RepDistiller checkpoint), for methods that do
/// not distil the head. When neither reads, the error is the backbone's, or the first one's when
/// the file does hold a head.
fn load_teacher<B: AutodiffBackend>(
    config: &ExperimentConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Teacher<B>> {
    let backbone = create_model::<B>(&config.teacher, config.num_classes, device)?;
    let with_head = BackboneWithHead::new(backbone.clone(), device);
    let (network, has_head) = match load_weights_with_head(with_head, path, device) {
        Ok(network) => (network, true),
        Err(with_head_error) => match load_weights(backbone, path, device) {
            Ok(backbone) => {
                tracing::info!(
                    "{}: a teacher without an SS head ({with_head_error}); its backbone is \
                     used, with a fresh head no loss reads",
                    path.display()
                );
                (BackboneWithHead::new(backbone, device), false)
            }
            // The file has a head, so what went wrong is what the first reading said.
            Err(ModelError::UnexpectedKey { key, .. }) if key.starts_with("proj_head.") => {
                return Err(with_head_error.into())
            }
            Err(backbone_error) => return Err(backbone_error.into()),
        },
    };
    Ok(Teacher {
        network: network.valid(),
        path: path.to_path_buf(),
        has_head,
    })
}

/// An error when the student's method distils the teacher's SS head and `teacher`'s file had
/// none, naming the stage that writes one.
fn check_teacher_head<B: AutodiffBackend>(
    teacher: &Teacher<B>,
    method: &str,
    needs_head: bool,
) -> Result<()> {
    if needs_head && !teacher.has_head {
        bail!(
            "method `{method}` distils the teacher's self-supervision head, which {} does not \
             hold (no proj_head): train one with the head stage (`head --teacher {}`), which \
             writes teacher-with-head.mpk, and pass that",
            teacher.path.display(),
            teacher.path.display()
        );
    }
    Ok(())
}

struct StudentInput<'a, B: AutodiffBackend, D, I> {
    config: &'a ExperimentConfig,
    teacher: &'a Teacher<B>,
    data: &'a RunData<D, I>,
    image_size: usize,
}

/// One student run in `run`. Besides the whole student records (`student-best.mpk`,
/// `student-last.mpk`, with the head and the method's modules) it writes the classifiers alone,
/// `student-best-backbone.mpk` and `student-last-backbone.mpk`, for `eval` and for use as a
/// model of the zoo.
fn student_run<B, D, I>(
    input: &StudentInput<'_, B, D, I>,
    run: &RunDir,
    options: &StageOptions,
    devices: &[B::Device],
) -> Result<StageResult>
where
    B: AutodiffBackend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    let StudentInput {
        config,
        teacher,
        data,
        image_size,
    } = *input;
    let device = devices.first().context("no device given")?;
    B::seed(device, config.seed);
    if data.train_labels.len() != data.train.len() {
        bail!(
            "RunData::train_labels holds {} labels for {} training samples",
            data.train_labels.len(),
            data.train.len()
        );
    }
    let labels = &data.train_labels;
    let student = build_student::<B>(config, &teacher.network, labels, image_size, device)?;
    let needs = Distiller::<B>::needs(&student.method);
    check_teacher_head(teacher, config.method.name(), needs.head)?;
    let teacher = &teacher.network;
    let stage = (Stage::Student, config.student.as_str());
    let plan = plan(stage, &config.student_stage, config, options);
    let outcome = train_student(run, &plan, student, teacher, data, sgd(config), devices)?;
    let shell = build_student::<B>(config, teacher, labels, image_size, device)?;
    let best = load_record(shell, &run.path("student-best.mpk"), device)?;
    let record = run.path("student-best-backbone.mpk");
    save_record(best.network.backbone, &record)?;
    save_record(
        outcome.module.network.backbone,
        &run.path("student-last-backbone.mpk"),
    )?;
    plot_run(run)?;
    Ok(StageResult {
        best: outcome.best,
        last: outcome.last,
        record,
    })
}

/// Mean ± sample standard deviation of the seeds' best and last top-1, written to
/// `OUT/seeds.json`.
fn summarise_seeds(out: &Path, runs: &[SeedRun]) -> Result<SeedSummary> {
    if runs.is_empty() {
        bail!("no seeds given");
    }
    let top1_of = |pick: fn(&StageResult) -> Option<EpochResult>| -> Vec<Option<f64>> {
        let value = |run: &SeedRun| pick(&run.result).map(|r| r.evaluation.top1);
        runs.iter().map(value).collect()
    };
    let (best, last) = (top1_of(|r| r.best), top1_of(|r| r.last));
    let stats = |values: &[Option<f64>]| {
        mean_and_std(&values.iter().flatten().copied().collect::<Vec<_>>())
    };
    let ((best_mean, best_std), (last_mean, last_std)) = (stats(&best), stats(&last));
    let summary = serde_json::json!({
        "seeds": runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "best_top1": best,
        "last_top1": last,
        "best_top1_mean": best_mean, "best_top1_std": best_std,
        "last_top1_mean": last_mean, "last_top1_std": last_std,
    });
    write_atomically(
        &out.join("seeds.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(SeedSummary {
        best_mean,
        best_std,
        last_mean,
        last_std,
    })
}
