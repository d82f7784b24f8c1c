//! The examples' command lines: the clap arguments of the training stages and of `eval`, the
//! experiment config they select (file, pair defaults, `--method`, `--set`), and the backend
//! and devices they run on ([`backend`]). The library itself takes plain options
//! ([`crate::recipe::StageOptions`]).

pub mod backend;
pub mod logging;
pub mod signals;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::data::dataset::Dataset;
use burn::tensor::backend::{AutodiffBackend, Backend};
use sskd_losses::MethodConfig;
use sskd_models::create_model;
use sskd_models::import::load_weights;
use sskd_train::epoch::evaluate;
use sskd_train::progress::{Meter, ProgressConfig};
use sskd_train::stages::RunData;

use crate::config::apply_assignment;
use crate::experiment::{load_experiment, ExperimentConfig};
use crate::recipe::{Recipe, StageOptions, StageResult, StudentResult};
use backend::{DeviceChoice, DeviceList};
use sskd_train::metrics::EpochResult;

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
    /// cpu, cuda, cuda:N, wgpu or wgpu:N; a comma-separated list (`cuda:0,cuda:1`) trains
    /// data-parallel over those devices.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
    /// Continue from the stage's last checkpoint in --out (refused when the config differs from
    /// the folder's config.json in a field that changes the result).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: go on even when the config differs from the folder's config.json.
    #[arg(long, requires = "resume")]
    pub allow_config_change: bool,
    /// What SIGTERM and SIGINT give the run before it ends.
    #[command(flatten)]
    pub stop: signals::StopArgs,
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
    /// Seconds an operation across the machines waits for another one before this one ends
    /// with an error naming it (a machine that stalled; one that died is noticed at once).
    #[cfg(feature = "collective")]
    #[arg(long, value_name = "SECONDS", default_value_t = sskd_train::nodes::DEFAULT_NODE_TIMEOUT.as_secs_f64(), value_parser = logging::seconds)]
    pub node_timeout: f64,
}

impl StageArgs {
    /// The recipe's options of this command line, for training images of `image_size`, the
    /// progress shown as `progress` says.
    pub fn options(&self, image_size: usize, progress: ProgressConfig) -> Result<StageOptions> {
        Ok(StageOptions {
            out: self.out.clone(),
            resume: self.resume,
            allow_config_change: self.allow_config_change,
            progress,
            teacher: self.teacher.clone(),
            seeds: self.seeds.clone(),
            image_size,
            stop: self.stop.stop_request()?,
            #[cfg(feature = "collective")]
            node: self.node()?,
        })
    }

    /// The node of a run across machines (`--nodes` above 1), with the flags it requires.
    #[cfg(feature = "collective")]
    fn node(&self) -> Result<Option<sskd_train::nodes::NodeConfig>> {
        use anyhow::Context;
        if self.nodes <= 1 {
            return Ok(None);
        }
        let required = |value: &Option<String>, flag: &str| {
            value
                .clone()
                .with_context(|| format!("{flag} is required with --nodes {}", self.nodes))
        };
        Ok(Some(sskd_train::nodes::NodeConfig {
            nodes: self.nodes,
            rank: self.node_rank,
            orchestrator: required(&self.orchestrator, "--orchestrator")?,
            address: required(&self.node_address, "--node-address")?,
            data_port: self.data_port,
            timeout: std::time::Duration::from_secs_f64(self.node_timeout),
        }))
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
    /// cpu, cuda, cuda:N, wgpu or wgpu:N (of a training run's list, the first is used).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
}

impl EvalArgs {
    /// The device the evaluation runs on: the first of `--device`.
    pub fn main_device(&self) -> DeviceChoice {
        self.device.devices()[0]
    }
}

/// A clap value parser for counts that must be at least 1 (epochs, images, batch sizes):
/// `--batch 0` is refused with a usage error instead of running on nothing.
pub fn positive(text: &str) -> Result<usize, ValueError> {
    match text.parse::<usize>() {
        Ok(0) => Err(ValueError::Zero),
        Ok(count) => Ok(count),
        Err(source) => Err(ValueError::NotACount(source)),
    }
}

/// A command-line value out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Zero where a count of at least one is needed.
    #[error("must be at least 1")]
    Zero,
    /// Not a whole number.
    #[error("not a count: {0}")]
    NotACount(#[source] std::num::ParseIntError),
    /// Not a number.
    #[error("not a number: {0}")]
    NotANumber(#[source] std::num::ParseFloatError),
    /// A negative or infinite number of seconds.
    #[error("must be a non-negative number of seconds")]
    NotSeconds,
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
        config = apply_assignment(config, assignment)?;
    }
    config.validate()?;
    Ok(config)
}

/// Evaluates the checkpoint of `args` (a model of `config.num_classes` classes) on the test
/// split of the data `load_data` builds for `config`, showing its progress as `progress` says,
/// and prints top-1/top-5, naming the split `split` ("test", "validation").
pub fn evaluate_checkpoint<B, D, I>(
    args: &EvalArgs,
    config: &ExperimentConfig,
    load_data: impl FnOnce(&Path, &ExperimentConfig) -> Result<RunData<D, I>>,
    (split, progress): (&str, ProgressConfig),
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
    let batches = data.test.len().div_ceil(data.test_batch_size.max(1));
    let meter = Meter::new(
        &progress,
        format!("evaluation on {split}"),
        Some(batches),
        "batches",
    );
    let batches = meter.batches(data.test_batches(false));
    let evaluation = evaluate(&model, batches, false, device)?.evaluation();
    println!(
        "{} on {} {split} images: top-1 {:.2} %, top-5 {:.2} %",
        args.weights.display(),
        data.test.len(),
        evaluation.top1,
        evaluation.top5
    );
    Ok(())
}

/// The training stage a command runs.
pub use sskd_train::Stage;

/// Runs `stage` of `recipe` on `devices` and prints what it produced.
pub fn run_stage<B, D, I>(
    recipe: &Recipe<'_, D, I>,
    stage: Stage,
    devices: &[B::Device],
) -> Result<()>
where
    B: AutodiffBackend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    match stage {
        Stage::Teacher => {
            let result = recipe.teacher::<B>(devices)?;
            report(stage, &result);
            println!("SSKD uses the best teacher: {}", result.record.display());
        }
        Stage::Head => {
            let result = recipe.head::<B>(devices)?;
            report(stage, &result);
            println!(
                "teacher with its last-epoch SS head: {}",
                result.record.display()
            );
        }
        // A method's pre-training runs within the student stage.
        Stage::Student | Stage::Pretraining => report_students(&recipe.student::<B>(devices)?),
    }
    Ok(())
}

/// Prints each student run, and the mean ± std over the seeds.
pub fn report_students(result: &StudentResult) {
    for run in &result.runs {
        report(Stage::Student, &run.result);
    }
    if let Some(summary) = result.summary {
        println!(
            "{} seeds: best-epoch top-1 {:.2} ± {:.2} %, last-epoch top-1 {:.2} ± {:.2} %",
            result.runs.len(),
            summary.best_mean,
            summary.best_std,
            summary.last_mean,
            summary.last_std
        );
    }
}

/// Prints a stage's best and last epochs, saying which is which.
pub fn report(stage: Stage, result: &StageResult) {
    let epochs: [(&str, Option<EpochResult>); 2] = [("best", result.best), ("last", result.last)];
    for (label, result) in epochs {
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
