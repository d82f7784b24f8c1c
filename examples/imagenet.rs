//! SSKD on ImageNet: ResNet34 → ResNet18 (paper Table 5), data-parallel over the GPUs of one
//! machine.
//!
//! ```text
//! # the SS head of a torchvision ResNet34 (its .pth), on its frozen backbone
//! imagenet head    --teacher resnet34-b627a593.pth --data ~/ilsvrc2012 --out runs/in \
//!                  --device cuda:0,cuda:1,cuda:2,cuda:3
//! # the student, SSKD by default (or --method kd|crd|…)
//! imagenet student --teacher runs/in/teacher-with-head.mpk --data ~/ilsvrc2012 --out runs/in \
//!                  --device cuda:0,cuda:1,cuda:2,cuda:3
//! imagenet eval    --arch resnet18 --weights runs/in/student-best-backbone.mpk --data ~/ilsvrc2012
//! imagenet teacher --data ~/ilsvrc2012 --out runs/in-teacher     # a teacher from scratch
//! imagenet config                                                # the full default config
//! ```
//! `--data` is the `ImageFolder` layout every peer uses: `train/<wnid>/*.JPEG` and
//! `val/<wnid>/*.JPEG` (labels in sorted wnid order, like torchvision). Training images get
//! `RandomResizedCrop` + flip, evaluation `Resize(256)` + `CenterCrop(224)`, both with
//! ImageNet's mean and std; SSKD's four rotations turn the same crop. The defaults are
//! torchdistill's re-implementation (the authors never published theirs): batch
//! 256, student lr 0.1 ×0.1 at epochs 30/60/90 of 100, SS head 30 epochs at lr 0.1 ×0.1 at
//! 10/20, loss weights CE 1.0 (λ1), KD 0.9, SS 10, TF 2.7. `--set FIELD=VALUE` overrides any
//! field, `--config FILE` loads one (`configs/imagenet/resnet34-resnet18.json`).
//!
//! `--device cuda:0,cuda:1,…` splits every batch over the devices (one thread each, gradients
//! summed into one step: `sskd::train::parallel`); `--image-size` trains at another crop size
//! (the tests use 32).
//!
//! Across machines (build with `--features collective`): start `imagenet orchestrator --port
//! 3000` on one machine, then the same stage command on every machine with `--nodes N
//! --node-rank R --orchestrator ws://HOST:3000 --node-address ws://THIS_HOST:3001 --data-port
//! 3001` (and its own `--out`); see `docs/training.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::{Parser, Subcommand};
use sskd::cli::backend::{dispatch, BackendJob, DeviceList, Precision};
use sskd::cli::{self, EvalArgs, StageArgs};
use sskd::data::folders::ImageFiles;
use sskd::data::ClassLabels;
use sskd::experiment::load_experiment;
use sskd::experiment::{ExperimentConfig, StageConfig};
use sskd::imagenet::{ImageFolderFiles, ImageNetTransforms};
use sskd::losses::{MethodConfig, SskdConfig};
use sskd::recipe::Recipe;
use sskd::train::progress::{Meter, ProgressConfig};
use sskd::train::stages::RunData;

#[derive(Parser, Debug)]
#[command(about = "SSKD on ImageNet (ResNet34 → ResNet18), data-parallel over several devices")]
struct Cli {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    #[command(subcommand)]
    command: Command,
    /// Crop size of training and evaluation (evaluation resizes to size·256/224 first).
    #[arg(long, global = true, default_value_t = 224)]
    image_size: u32,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stage 1: train the teacher with cross-entropy (or import torchvision's instead).
    Teacher(StageArgs),
    /// Stage 2: train the teacher's SS head on its frozen backbone.
    Head(StageArgs),
    /// Stage 3: distil the student.
    Student(StageArgs),
    /// Top-1/top-5 of a checkpoint on `val/`.
    Eval(EvalArgs),
    /// Serve as the orchestrator of a run across machines (feature `collective`): the nodes
    /// find each other through it (`--orchestrator ws://THIS_HOST:PORT`).
    #[cfg(feature = "collective")]
    Orchestrator {
        /// The port to listen on.
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Print the full config: the defaults, or a config file checked and completed.
    Config {
        /// A config file to check.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The ImageNet pair's defaults (torchdistill's settings).
fn pair_defaults(teacher: &str, student: &str) -> ExperimentConfig {
    ExperimentConfig::new(teacher.to_string(), student.to_string())
        .with_num_classes(1000)
        .with_teacher_stage(StageConfig::new(90, 0.1, vec![30, 60]))
        .with_head_stage(StageConfig::new(30, 0.1, vec![10, 20]))
        .with_student_stage(StageConfig::new(100, 0.1, vec![30, 60, 90]))
        .with_batch_size(256)
        .with_test_batch_size(250)
        .with_weight_decay(1e-4)
        .with_checkpoint_every(1)
        // An epoch is ~5,000 steps: a checkpoint inside it every half hour of training.
        .with_checkpoint_every_minutes(30.0)
        .with_method(MethodConfig::Sskd(SskdConfig::new().with_ce_weight(1.0)))
}

type Data = RunData<ImageFolderFiles, (PathBuf, usize)>;

/// The image files of the class folders in `dir`, the scan's progress shown as `progress` says.
fn scan(dir: &Path, progress: ProgressConfig) -> Result<ImageFiles> {
    let mut meter: Option<Meter> = None;
    let files = ImageFiles::image_folder_observed(dir, |scan| {
        let meter = meter.get_or_insert_with(|| {
            let label = format!("scanning {}", dir.display());
            Meter::new(&progress, label, Some(scan.classes), "class folders")
        });
        meter.advance(1, scan.images, |_| String::new());
    })?;
    if let Some(meter) = meter {
        meter.finish();
    }
    Ok(files)
}

/// `root/train` and `root/val` with the transforms of `size`.
fn imagenet_data(
    root: &Path,
    config: &ExperimentConfig,
    (size, progress): (u32, ProgressConfig),
) -> Result<Data> {
    let train = scan(&root.join("train"), progress)?;
    let val = scan(&root.join("val"), progress)?;
    if train.classes != val.classes {
        bail!(
            "{}: train/ has {} classes and val/ {}, or their names differ",
            root.display(),
            train.classes.len(),
            val.classes.len()
        );
    }
    if train.classes.len() > config.num_classes {
        bail!(
            "{}: {} classes but the config has num_classes = {}",
            root.display(),
            train.classes.len(),
            config.num_classes
        );
    }
    let transforms = ImageNetTransforms::new(size);
    Ok(RunData {
        train_labels: train.class_labels().into(),
        train: Arc::new(ImageFolderFiles(train)),
        test: Arc::new(ImageFolderFiles(val)),
        plain_train: transforms.plain_train,
        rotations_train: transforms.rotations_train,
        plain_test: transforms.plain_test,
        rotations_test: transforms.rotations_test,
        batch_size: config.batch_size,
        test_batch_size: config.test_batch_size,
        seed: config.seed,
    })
}

fn experiment(args: &StageArgs) -> Result<ExperimentConfig> {
    cli::experiment(args, ("resnet34", "resnet18"), pair_defaults)
}

struct Job {
    command: Command,
    image_size: u32,
    progress: ProgressConfig,
}

impl Job {
    fn stage<B: AutodiffBackend>(&self, devices: &[B::Device]) -> Result<()> {
        let size = self.image_size;
        match &self.command {
            Command::Teacher(args) | Command::Head(args) | Command::Student(args) => {
                let config = experiment(args)?;
                let data = imagenet_data(&args.data, &config, (size, self.progress))?;
                let recipe = Recipe {
                    config: &config,
                    data: &data,
                    options: &args.options(size as usize, self.progress)?,
                };
                let stage = match &self.command {
                    Command::Teacher(_) => cli::Stage::Teacher,
                    Command::Head(_) => cli::Stage::Head,
                    _ => cli::Stage::Student,
                };
                cli::run_stage::<B, _, _>(&recipe, stage, devices)
            }
            Command::Eval(args) => {
                let classes = args.num_classes.unwrap_or(1000);
                let config = pair_defaults(&args.arch, &args.arch).with_num_classes(classes);
                let data = |dir: &Path, config: &ExperimentConfig| {
                    imagenet_data(dir, config, (size, self.progress))
                };
                let split = ("validation", self.progress);
                cli::evaluate_checkpoint::<B::InnerBackend, _, _>(
                    args,
                    &config,
                    data,
                    split,
                    &devices[0],
                )
            }
            #[cfg(feature = "collective")]
            Command::Orchestrator { .. } => unreachable!("handled before dispatch"),
            Command::Config { .. } => unreachable!("handled before dispatch"),
        }
    }
}

impl BackendJob for Job {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        self.stage::<Autodiff<B>>(&devices)
    }
}

/// The command's exit: 0, 75 after a stop on SIGTERM / SIGINT with a checkpoint
/// (`sskd::cli::signals`), else 1 with the error.
fn main() -> std::process::ExitCode {
    sskd::cli::signals::exit_status(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    cli.verbosity.init();
    if cli.image_size < 32 {
        bail!(
            "--image-size {} is too small: the ImageNet ResNets need at least 32",
            cli.image_size
        );
    }
    let devices = match &cli.command {
        Command::Config { config } => {
            let config = match config {
                Some(path) => load_experiment(path, pair_defaults)?,
                None => pair_defaults("resnet34", "resnet18"),
            };
            config.validate()?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            return Ok(());
        }
        Command::Teacher(args) | Command::Head(args) | Command::Student(args) => {
            args.device.clone()
        }
        Command::Eval(args) => DeviceList::from(args.main_device()),
        #[cfg(feature = "collective")]
        Command::Orchestrator { port } => {
            println!("orchestrator listening on port {port}; stop it with Ctrl-C after the run");
            return Ok(sskd::train::nodes::run_orchestrator(*port)?);
        }
    };
    let job = Job {
        command: cli.command,
        image_size: cli.image_size,
        progress: cli.verbosity.progress(),
    };
    dispatch(&devices, Precision::F32, job)?
}
