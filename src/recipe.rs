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
use sskd_losses::MethodContext;
use sskd_models::checkpoint::{load_record, save_record, write_atomically};
use sskd_models::import::{load_weights, load_weights_with_head};
use sskd_models::{create_model, BackboneWithHead, SelfSupervisionHeadConfig};
use sskd_train::epoch::Student;
use sskd_train::fit::FitPlan;
use sskd_train::metrics::EpochResult;
use sskd_train::plot::plot_run;
use sskd_train::run_dir::RunDir;
use sskd_train::stages::{train_head, train_student, train_teacher, RunData, Transform};

use crate::experiment::{ExperimentConfig, StageConfig};

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
        sskd_train::nodes::leave::<B::InnerBackend>()?;
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

/// The fit plan of `stage` (`teacher`, `head` or `student`), tagged with the experiment.
pub fn plan(
    stage: &str,
    config: &StageConfig,
    experiment: &ExperimentConfig,
    resume: bool,
) -> FitPlan {
    let mut tags = serde_json::Map::new();
    tags.insert("teacher_arch".into(), experiment.teacher.clone().into());
    tags.insert("student_arch".into(), experiment.student.clone().into());
    tags.insert("method".into(), experiment.method.name().into());
    tags.insert("seed".into(), experiment.seed.into());
    FitPlan {
        stage: stage.to_string(),
        epochs: config.epochs,
        schedule: config.schedule(),
        checkpoint_every: experiment.checkpoint_every,
        seed: experiment.seed,
        resume,
        select_by_ss: stage == "head",
        tags,
    }
}

/// Prints a stage's best and last epochs, saying which is which.
pub fn report(stage: &str, best: Option<EpochResult>, last: Option<EpochResult>) {
    for (label, result) in [("best", best), ("last", last)] {
        if let Some(r) = result {
            let ss = r
                .evaluation
                .ss_top1
                .map(|s| format!(", SS head {s:.2} %"))
                .unwrap_or_default();
            println!(
                "{stage}: {label} epoch {} top-1 {:.2} %, top-5 {:.2} %{ss}",
                r.epoch, r.evaluation.top1, r.evaluation.top5
            );
        }
    }
}

/// SGD's momentum and weight decay of `config`.
pub fn sgd(config: &ExperimentConfig) -> (f64, f64) {
    (config.momentum, config.weight_decay)
}

/// A fresh student of `config`: backbone, SS head and the method's modules (their shapes
/// probed at `image_size`).
pub fn build_student<B: AutodiffBackend>(
    config: &ExperimentConfig,
    teacher: &BackboneWithHead<B::InnerBackend>,
    n_data: usize,
    image_size: usize,
    device: &B::Device,
) -> Result<Student<B>> {
    let backbone = create_model::<B>(&config.student, config.num_classes, device)?;
    let image = [image_size, image_size];
    let context = MethodContext::probe(&backbone.valid(), &teacher.backbone, image, n_data, device);
    let method = config.method.init(&context, device)?;
    Ok(Student {
        network: BackboneWithHead::new(backbone, device),
        method,
    })
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
    /// Stage 1: the teacher `config.teacher` trained with cross-entropy, in `options.out`
    /// (`teacher-best.mpk`, `teacher-last.mpk`, the log and the plot).
    pub fn teacher<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let device = devices.first().context("no device given")?;
        B::seed(device, self.config.seed);
        let run = RunDir::create(&self.options.out)?;
        let model = create_model::<B>(&self.config.teacher, self.config.num_classes, device)?;
        let plan = plan(
            "teacher",
            &self.config.teacher_stage,
            self.config,
            self.options.resume,
        );
        let outcome = in_node_group::<B, _>(self.options, device, || {
            Ok(train_teacher(
                &run,
                &plan,
                model,
                self.data,
                sgd(self.config),
                devices,
            )?)
        })?;
        report("teacher", outcome.best, outcome.last);
        plot_run(&run)?;
        println!(
            "SSKD uses the best teacher: {}",
            run.path("teacher-best.mpk").display()
        );
        Ok(())
    }

    /// Stage 2: the SS head of the teacher in `options.teacher` (a record of stage 1 or a
    /// PyTorch checkpoint) trained on its frozen backbone; writes `teacher-with-head.mpk` (the
    /// head of the last epoch, as SSKD keeps it) to `options.out`.
    pub fn head<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let device = devices.first().context("no device given")?;
        B::seed(device, self.config.seed);
        let weights = self
            .options
            .teacher_weights("the teacher backbone to train a head on")?;
        let teacher = create_model::<B>(&self.config.teacher, self.config.num_classes, device)?;
        let teacher = load_weights(teacher, weights, device)?;
        let run = RunDir::create(&self.options.out)?;
        let frozen = teacher.valid();
        let head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(device);
        let plan = plan(
            "head",
            &self.config.head_stage,
            self.config,
            self.options.resume,
        );
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
        report("head", outcome.best, outcome.last);
        let with_head = BackboneWithHead {
            backbone: teacher,
            proj_head: outcome.module,
        };
        let path = run.path("teacher-with-head.mpk");
        save_record(with_head, &path)?;
        plot_run(&run)?;
        println!("teacher with its last-epoch SS head: {}", path.display());
        Ok(())
    }

    /// Stage 3: the student distilled from the teacher with its SS head in `options.teacher`
    /// (the head stage's `teacher-with-head.mpk`, or SSKD's `teacher.pth`): one run in
    /// `options.out`, or one per seed of `options.seeds` under `OUT/seed-N` followed by their
    /// mean ± std (`OUT/seeds.json`). The method's modules are sized by a probe at
    /// `options.image_size`.
    pub fn student<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let image_size = self.options.image_size;
        let device = devices.first().context("no device given")?;
        let weights = self.options.teacher_weights(
            "the teacher with its SS head (the head stage's teacher-with-head.mpk, or SSKD's teacher.pth)",
        )?;
        let teacher = BackboneWithHead::new(
            create_model::<B>(&self.config.teacher, self.config.num_classes, device)?,
            device,
        );
        let teacher = load_weights_with_head(teacher, weights, device)?.valid();
        let teacher = &teacher;
        let run_of = |config: &ExperimentConfig, data: &RunData<D, I>, out: &Path| {
            let run = RunDir::create(out)?;
            let input = StudentInput {
                config,
                teacher,
                data,
                image_size,
            };
            student_run::<B, D, I>(&input, &run, self.options.resume, devices)
        };
        in_node_group::<B, _>(self.options, device, || {
            if self.options.seeds.is_empty() {
                run_of(self.config, self.data, &self.options.out).map(drop)
            } else {
                student_seeds(self.options, self.config, self.data, run_of)
            }
        })
    }
}

/// One student run per seed of `options.seeds`, then their mean ± std.
fn student_seeds<D, I>(
    options: &StageOptions,
    config: &ExperimentConfig,
    data: &RunData<D, I>,
    run_of: impl Fn(
        &ExperimentConfig,
        &RunData<D, I>,
        &Path,
    ) -> Result<(Option<EpochResult>, Option<EpochResult>)>,
) -> Result<()> {
    let mut results = Vec::new();
    for &seed in &options.seeds {
        let mut config = config.clone();
        config.seed = seed;
        let data = RunData {
            seed,
            ..data.clone()
        };
        let (best, last) = run_of(&config, &data, &options.out.join(format!("seed-{seed}")))?;
        results.push((seed, best, last));
    }
    summarise_seeds(&options.out, &results)
}

struct StudentInput<'a, B: AutodiffBackend, D, I> {
    config: &'a ExperimentConfig,
    teacher: &'a BackboneWithHead<B::InnerBackend>,
    data: &'a RunData<D, I>,
    image_size: usize,
}

/// One student run in `run`; returns its best and last epochs. Besides the whole student
/// records (`student-best.mpk`, `student-last.mpk`, with the head and the method's modules) it
/// writes the classifiers alone, `student-best-backbone.mpk` and `student-last-backbone.mpk`,
/// for `eval` and for use as a model of the zoo.
fn student_run<B, D, I>(
    input: &StudentInput<'_, B, D, I>,
    run: &RunDir,
    resume: bool,
    devices: &[B::Device],
) -> Result<(Option<EpochResult>, Option<EpochResult>)>
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
    let n_data = data.train.len();
    let student = build_student::<B>(config, teacher, n_data, image_size, device)?;
    let plan = plan("student", &config.student_stage, config, resume);
    let outcome = train_student(run, &plan, student, teacher, data, sgd(config), devices)?;
    report("student", outcome.best, outcome.last);
    let shell = build_student::<B>(config, teacher, n_data, image_size, device)?;
    let best = load_record(shell, &run.path("student-best.mpk"), device)?;
    save_record(
        best.network.backbone,
        &run.path("student-best-backbone.mpk"),
    )?;
    save_record(
        outcome.module.network.backbone,
        &run.path("student-last-backbone.mpk"),
    )?;
    plot_run(run)?;
    Ok((outcome.best, outcome.last))
}

/// A seed and the best and last epochs of its run.
type SeedResult = (u64, Option<EpochResult>, Option<EpochResult>);

/// Mean ± sample standard deviation of the seeds' best and last top-1, printed and written to
/// `OUT/seeds.json`.
fn summarise_seeds(out: &Path, results: &[SeedResult]) -> Result<()> {
    if results.is_empty() {
        bail!("no seeds given");
    }
    let stats = |values: Vec<f64>| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, var.sqrt())
    };
    let top1 = |pick: fn(&SeedResult) -> Option<EpochResult>| {
        stats(
            results
                .iter()
                .filter_map(pick)
                .map(|r| r.evaluation.top1)
                .collect(),
        )
    };
    let (best_mean, best_std) = top1(|r| r.1);
    let (last_mean, last_std) = top1(|r| r.2);
    println!("{} seeds: best-epoch top-1 {best_mean:.2} ± {best_std:.2} %, last-epoch top-1 {last_mean:.2} ± {last_std:.2} %", results.len());
    let summary = serde_json::json!({
        "seeds": results.iter().map(|r| r.0).collect::<Vec<_>>(),
        "best_top1": results.iter().map(|r| r.1.map(|b| b.evaluation.top1)).collect::<Vec<_>>(),
        "last_top1": results.iter().map(|r| r.2.map(|b| b.evaluation.top1)).collect::<Vec<_>>(),
        "best_top1_mean": best_mean, "best_top1_std": best_std,
        "last_top1_mean": last_mean, "last_top1_std": last_std,
    });
    write_atomically(
        &out.join("seeds.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(())
}
