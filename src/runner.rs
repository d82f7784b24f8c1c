//! What the training examples (`cifar100`, `imagenet`) share: the stage arguments, the
//! experiment config from file, defaults and overrides, and the student stage over one seed
//! or several (mean ± std).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::rngs::StdRng;
use sskd_augment::loader::Sample;
use sskd_data::LabeledImage;
use sskd_losses::{MethodConfig, MethodContext};
use sskd_models::checkpoint::{load_record, save_record, write_atomically};
use sskd_models::import::{load_weights, load_weights_with_head};
use sskd_models::{create_model, BackboneWithHead, SelfSupervisionHeadConfig};
use sskd_train::epoch::Student;
use sskd_train::fit::FitPlan;
use sskd_train::metrics::EpochResult;
use sskd_train::plot::plot_run;
use sskd_train::run_dir::RunDir;
use sskd_train::stages::{train_head, train_student, train_teacher, RunData, Transform};

use crate::backend::{DeviceChoice, DeviceList};
use crate::config::{apply_assignment, load_overrides};
use crate::experiment::{ExperimentConfig, StageConfig};

/// The arguments of a training stage (`teacher`, `head`, `student`).
#[derive(clap::Args, Debug, Clone)]
pub struct StageArgs {
    /// Experiment config (JSON); without it, the example's default pair.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Teacher architecture (overrides the config's).
    #[arg(long)]
    pub teacher_arch: Option<String>,
    /// Student architecture (overrides the config's).
    #[arg(long)]
    pub student_arch: Option<String>,
    /// Config overrides, FIELD=VALUE (dotted for nested fields).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Distillation method (overrides the config's).
    #[arg(long)]
    pub method: Option<String>,
    /// Teacher weights: stage 1's record or a PyTorch checkpoint (head stage), with the SS
    /// head for the student stage.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// The dataset's folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder.
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda[:N] or wgpu[:N]; a comma-separated list (`cuda:0,cuda:1`) trains
    /// data-parallel over those devices.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
    /// Continue from the stage's last checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Seeds of the student stage (one run each under OUT/seed-N, then mean ± std).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Machines of a multi-machine run; each runs the same command with its own --node-rank,
    /// --node-address and --out.
    #[cfg(feature = "collective")]
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// This machine's index, 0..nodes.
    #[cfg(feature = "collective")]
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// The orchestrator of a multi-machine run, ws://host:port (`imagenet orchestrator`).
    #[cfg(feature = "collective")]
    #[arg(long)]
    pub orchestrator: Option<String>,
    /// This machine as the others reach it, ws://host:DATA_PORT.
    #[cfg(feature = "collective")]
    #[arg(long)]
    pub node_address: Option<String>,
    /// The port on which this machine serves its gradients to the others.
    #[cfg(feature = "collective")]
    #[arg(long, default_value_t = 3001)]
    pub data_port: u16,
}

impl StageArgs {
    /// The teacher weights, or an error saying what they are for.
    pub fn teacher_weights(&self, what: &str) -> Result<&Path> {
        self.teacher
            .as_deref()
            .with_context(|| format!("--teacher is required: {what}"))
    }
}

/// The arguments of an `eval` command: a checkpoint's top-1/top-5 on a dataset's test split.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Architecture.
    #[arg(long)]
    pub arch: String,
    /// Weights (.mpk, or a PyTorch .pth / .safetensors checkpoint).
    #[arg(long)]
    pub weights: PathBuf,
    /// The dataset's folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of classes (default: the example's dataset, 100 for CIFAR-100, 1000 for
    /// ImageNet).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// cpu, cuda[:N] or wgpu[:N] (of a training run's list, the first is used).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
}

impl EvalArgs {
    /// The device the evaluation runs on: the first of `--device`.
    pub fn main_device(&self) -> DeviceChoice {
        self.device.devices()[0]
    }
}

/// Evaluates the checkpoint of `args` (a model of `config.num_classes` classes) on the test
/// split of the data `load_data` builds for `config`, and prints top-1/top-5, naming the split
/// `split` ("test", "validation").
pub fn evaluate_checkpoint<B, D, I>(
    args: &EvalArgs,
    config: &ExperimentConfig,
    load_data: impl FnOnce(&Path, &ExperimentConfig) -> Result<RunData<D, I>>,
    split: &str,
    device: &B::Device,
) -> Result<()>
where
    B: Backend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    let model = create_model::<B>(&args.arch, config.num_classes, device)?;
    let model = load_weights(model, &args.weights, device)?;
    let data = load_data(&args.data, config)?;
    let evaluation = data.evaluate_model(&model, device)?;
    println!(
        "{} on {} {split} images: top-1 {:.2} %, top-5 {:.2} %",
        args.weights.display(),
        data.test.len(),
        evaluation.top1,
        evaluation.top5
    );
    Ok(())
}

/// Runs `train` as one node of the multi-machine run of `args` (feature `collective`, with
/// `--nodes` above 1), else as it is.
fn in_node_group<B: AutodiffBackend, T>(
    args: &StageArgs,
    device: &B::Device,
    train: impl FnOnce() -> Result<T>,
) -> Result<T> {
    #[cfg(feature = "collective")]
    if args.nodes > 1 {
        let required = |value: &Option<String>, flag: &str| {
            value
                .clone()
                .with_context(|| format!("{flag} is required with --nodes {}", args.nodes))
        };
        let config = sskd_train::nodes::NodeConfig {
            nodes: args.nodes,
            rank: args.node_rank,
            orchestrator: required(&args.orchestrator, "--orchestrator")?,
            address: required(&args.node_address, "--node-address")?,
            data_port: args.data_port,
        };
        sskd_train::nodes::join::<B::InnerBackend>(config, device)?;
        let result = train();
        sskd_train::nodes::leave::<B::InnerBackend>()?;
        return result;
    }
    let _ = (args, device);
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

/// The config of a stage: the file (its `teacher` and `student` pick `defaults`) or the
/// defaults of the arguments' pair, then the method and the overrides; validated.
pub fn experiment(
    args: &StageArgs,
    default_pair: (&str, &str),
    defaults: fn(&str, &str) -> ExperimentConfig,
) -> Result<ExperimentConfig> {
    let mut config = match &args.config {
        Some(path) => load_experiment(path, defaults)?,
        None => defaults(
            args.teacher_arch.as_deref().unwrap_or(default_pair.0),
            args.student_arch.as_deref().unwrap_or(default_pair.1),
        ),
    };
    if let Some(arch) = &args.teacher_arch {
        config.teacher = arch.clone();
    }
    if let Some(arch) = &args.student_arch {
        config.student = arch.clone();
    }
    if let Some(name) = &args.method {
        // Another method starts from its published settings; the same one keeps the config's.
        let named = MethodConfig::published(name)?;
        if named.name() != config.method.name() {
            config.method = named;
        }
    }
    for assignment in &args.overrides {
        config = apply_assignment(config, assignment).map_err(anyhow::Error::msg)?;
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// A config file: its `teacher` and `student` pick `defaults`, its other fields override them.
pub fn load_experiment(
    path: &Path,
    defaults: fn(&str, &str) -> ExperimentConfig,
) -> Result<ExperimentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("config {} is not valid JSON", path.display()))?;
    let arch = |field: &str| {
        json.get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("config {}: field `{field}` is missing", path.display()))
    };
    let config = load_overrides(path, defaults(&arch("teacher")?, &arch("student")?))
        .map_err(anyhow::Error::msg)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    Ok(config)
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

/// A training stage of an example: its arguments, its config and the data.
pub struct Stage<'a, D, I> {
    /// The command line of the stage.
    pub args: &'a StageArgs,
    /// The experiment.
    pub config: &'a ExperimentConfig,
    /// Datasets and transforms.
    pub data: &'a RunData<D, I>,
}

impl<D, I> Stage<'_, D, I>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    /// Stage 1: the teacher `config.teacher` trained with cross-entropy, in `args.out`
    /// (`teacher-best.mpk`, `teacher-last.mpk`, the log and the plot).
    pub fn teacher<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let device = devices.first().context("no device given")?;
        B::seed(device, self.config.seed);
        let run = RunDir::create(&self.args.out)?;
        let model = create_model::<B>(&self.config.teacher, self.config.num_classes, device)?;
        let plan = plan(
            "teacher",
            &self.config.teacher_stage,
            self.config,
            self.args.resume,
        );
        let outcome = in_node_group::<B, _>(self.args, device, || {
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

    /// Stage 2: the SS head of the teacher in `args.teacher` (a record of stage 1 or a
    /// PyTorch checkpoint) trained on its frozen backbone; writes `teacher-with-head.mpk` (the
    /// head of the last epoch, as SSKD keeps it) to `args.out`.
    pub fn head<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let device = devices.first().context("no device given")?;
        B::seed(device, self.config.seed);
        let weights = self
            .args
            .teacher_weights("the teacher backbone to train a head on")?;
        let teacher = create_model::<B>(&self.config.teacher, self.config.num_classes, device)?;
        let teacher = load_weights(teacher, weights, device)?;
        let run = RunDir::create(&self.args.out)?;
        let frozen = teacher.valid();
        let head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(device);
        let plan = plan(
            "head",
            &self.config.head_stage,
            self.config,
            self.args.resume,
        );
        let outcome = in_node_group::<B, _>(self.args, device, || {
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

    /// Stage 3: the student distilled from the teacher with its SS head in `args.teacher` (the
    /// head stage's `teacher-with-head.mpk`, or SSKD's `teacher.pth`): one run in `args.out`,
    /// or one per seed of `args.seeds` under `OUT/seed-N` followed by their mean ± std
    /// (`OUT/seeds.json`). The method's modules are sized by a probe at `image_size`.
    pub fn student<B: AutodiffBackend>(
        &self,
        image_size: usize,
        devices: &[B::Device],
    ) -> Result<()> {
        let device = devices.first().context("no device given")?;
        let weights = self.args.teacher_weights(
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
            student_run::<B, D, I>(&input, &run, self.args.resume, devices)
        };
        in_node_group::<B, _>(self.args, device, || {
            if self.args.seeds.is_empty() {
                run_of(self.config, self.data, &self.args.out).map(drop)
            } else {
                student_seeds(self.args, self.config, self.data, run_of)
            }
        })
    }
}

/// One student run per seed of `args.seeds`, then their mean ± std.
fn student_seeds<D, I>(
    args: &StageArgs,
    config: &ExperimentConfig,
    data: &RunData<D, I>,
    run_of: impl Fn(
        &ExperimentConfig,
        &RunData<D, I>,
        &Path,
    ) -> Result<(Option<EpochResult>, Option<EpochResult>)>,
) -> Result<()> {
    let mut results = Vec::new();
    for &seed in &args.seeds {
        let mut config = config.clone();
        config.seed = seed;
        let data = RunData {
            seed,
            ..data.clone()
        };
        let (best, last) = run_of(&config, &data, &args.out.join(format!("seed-{seed}")))?;
        results.push((seed, best, last));
    }
    summarise_seeds(&args.out, &results)
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
