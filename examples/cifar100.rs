//! SSKD on CIFAR-100, stage by stage, with the code's defaults or a pair's config.
//!
//! ```text
//! cifar100 teacher --config configs/cifar100/wrn_40_2-wrn_16_2.json --data DIR --out runs/w40
//! cifar100 head    --config ... --teacher runs/w40/teacher-best.mpk --data DIR --out runs/w40
//! cifar100 student --config ... --teacher runs/w40/teacher-with-head.mpk --data DIR --out runs/w40 \
//!                  [--method sskd|kd|crd|...] [--seeds 0,1,2]
//! cifar100 eval    --arch wrn_16_2 --weights runs/w40/student-best-backbone.mpk --data DIR
//! cifar100 config  --teacher wrn_40_2 --student wrn_16_2     # prints a full config
//! cifar100 report  runs/kd runs/sskd runs/plain --out runs/report   # one table over runs
//! ```
//! `--data` holds CIFAR-100 in either format (`train.bin`/`test.bin`, or the python pickles).
//! Teachers may also be PyTorch checkpoints: a RepDistiller `{"model": ...}` file for `head`,
//! an SSKD `teacher.pth` with its `proj_head` for `student`. `--set FIELD=VALUE` overrides any
//! config field (`--set student_stage.epochs=30 --set method.sskd.ss_weight=3`). `--resume`
//! continues a killed stage from its last checkpoint. Each stage logs every epoch to
//! `OUT/metrics.jsonl`, keeps `OUT/<stage>-best.mpk` and `OUT/<stage>-last.mpk`, and draws
//! `OUT/<stage>.png`. `--device cuda:0,cuda:1,…` trains a stage data-parallel over several
//! devices (each batch split between them, gradients summed; see `sskd::train::parallel`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::{Args as ClapArgs, Parser, Subcommand};
use rand::rngs::StdRng;
use sskd::augment::loader::Sample;
use sskd::augment::normalize::{CIFAR100_MEAN, CIFAR100_STD};
use sskd::augment::recipes::cifar_train;
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::cli::backend::{dispatch, main_device, BackendJob, DeviceChoice, DeviceList, Precision};
use sskd::cli::{self, EvalArgs, StageArgs};
use sskd::data::cifar::{cifar100, Split};
use sskd::data::{ClassLabels, LabeledImage, PlanarImages};
use sskd::experiment::load_experiment;
use sskd::experiment::{default_student_lr, ExperimentConfig, StageConfig};
use sskd::models::create_model;
use sskd::models::import::load_weights;
use sskd::recipe::{transform, Recipe};
use sskd::train::progress::{Meter, ProgressConfig};
use sskd::train::stages::{RunData, Transform};

#[derive(Parser, Debug)]
#[command(about = "SSKD on CIFAR-100: teacher, SS head, student, evaluation")]
struct Cli {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stage 1: train the teacher with cross-entropy.
    Teacher(StageArgs),
    /// Stage 2: train the teacher's SS head on its frozen backbone.
    Head(StageArgs),
    /// Stage 3: distil the student (one run per seed with --seeds).
    Student(StageArgs),
    /// Top-1/top-5 of a checkpoint on the test set.
    Eval(EvalArgs),
    /// Linear evaluation: a frozen CIFAR-100 model's features of STL-10 or Tiny-ImageNet
    /// (resized to 32×32), a linear classifier trained on them, its top-1.
    LinearEval(LinearEvalArgs),
    /// The correlation-difference heatmap: |C_teacher − C_student| of the normalised
    /// classifier weights, a PNG and the mean per student.
    Correlation(CorrelationArgs),
    /// One table and one picture over run folders (methods, seeds, pairs): best and last
    /// top-1, mean ± std over seeds, gain over the plain student, time; writes report.md,
    /// report.json and report.png.
    Report(ReportArgs),
    /// Print a full config as JSON: a pair's defaults, or a config file checked and completed.
    Config {
        /// Teacher architecture.
        #[arg(long, required_unless_present = "config")]
        teacher: Option<String>,
        /// Student architecture.
        #[arg(long, required_unless_present = "config")]
        student: Option<String>,
        /// A config file to check.
        #[arg(long, conflicts_with_all = ["teacher", "student"])]
        config: Option<PathBuf>,
    },
}

#[derive(ClapArgs, Debug)]
struct LinearEvalArgs {
    /// Architecture of the frozen model.
    #[arg(long)]
    arch: String,
    /// Its weights (.mpk, .pth, .safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Classes of its classifier.
    #[arg(long, default_value_t = 100)]
    num_classes: usize,
    /// `stl10` (binary files) or `tiny-imagenet` (the folder of tiny-imagenet-200).
    #[arg(long)]
    dataset: String,
    /// The dataset's folder.
    #[arg(long)]
    data: PathBuf,
    /// Epochs of the linear classifier.
    #[arg(long, default_value_t = 30, value_parser = sskd::cli::positive)]
    epochs: usize,
    /// Its initial learning rate (×0.1 at 60 % and 80 % of the epochs).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

#[derive(ClapArgs, Debug)]
struct ReportArgs {
    /// Run folders, or folders of them (`OUT` of a run over seeds holds `seed-N/`).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Folder for report.md, report.json and report.png.
    #[arg(long)]
    out: PathBuf,
}

#[derive(ClapArgs, Debug)]
struct CorrelationArgs {
    /// Teacher architecture.
    #[arg(long)]
    teacher_arch: String,
    /// Teacher weights.
    #[arg(long)]
    teacher: PathBuf,
    /// Student architecture.
    #[arg(long)]
    student_arch: String,
    /// Student weights, one heatmap each.
    #[arg(long, value_delimiter = ',', required = true)]
    students: Vec<PathBuf>,
    /// Number of classes.
    #[arg(long, default_value_t = 100)]
    num_classes: usize,
    /// Folder for the PNGs and `correlation.json`.
    #[arg(long)]
    out: PathBuf,
}

type Data = RunData<PlanarImages, LabeledImage>;

/// A transform normalised with CIFAR-100's mean and std.
fn cifar(
    make: impl Fn(&image::RgbImage, &mut StdRng) -> Vec<image::RgbImage> + Send + Sync + 'static,
) -> Transform<LabeledImage> {
    transform(CIFAR100_MEAN, CIFAR100_STD, make)
}

/// The config of a stage's arguments (default pair wrn_40_2 → wrn_16_2).
fn experiment(args: &StageArgs) -> Result<ExperimentConfig> {
    cli::experiment(args, ("wrn_40_2", "wrn_16_2"), pair_defaults)
}

/// CIFAR-100 with SSKD's transforms: crop + flip, four rotations (shared flip, independent crops).
fn cifar_data(dir: &Path, config: &ExperimentConfig) -> Result<Data> {
    let train = cifar100(dir, Split::Train)?;
    let test = cifar100(dir, Split::Test)?;
    let classes = train
        .classes
        .max(train.labels.iter().max().map_or(0, |&l| l + 1));
    if classes > config.num_classes {
        bail!(
            "{}: labels go up to {} but the config has num_classes = {}",
            dir.display(),
            classes - 1,
            config.num_classes
        );
    }
    Ok(RunData {
        train_labels: train.class_labels().into(),
        train: Arc::new(train),
        test: Arc::new(test),
        plain_train: cifar(|image, rng| vec![cifar_train(image, rng)]),
        rotations_train: cifar(|image, rng| sskd_rotations(image, true, rng).to_vec()),
        plain_test: cifar(|image, _| vec![image.clone()]),
        rotations_test: cifar(|image, rng| sskd_rotations(image, false, rng).to_vec()),
        batch_size: config.batch_size,
        test_batch_size: config.test_batch_size,
        seed: config.seed,
    })
}

/// SSKD's defaults for a pair (student lr 0.01 for MobileNetV2 / ShuffleNets).
fn pair_defaults(teacher: &str, student: &str) -> ExperimentConfig {
    let lr = default_student_lr(student);
    ExperimentConfig::new(teacher.to_string(), student.to_string())
        .with_student_stage(StageConfig::new(240, lr, vec![150, 180, 210]))
}

/// A training stage on CIFAR-100 (32×32 images).
fn stage<B: AutodiffBackend>(
    command: &Command,
    progress: ProgressConfig,
    devices: &[B::Device],
) -> Result<()> {
    let (Command::Teacher(args) | Command::Head(args) | Command::Student(args)) = command else {
        unreachable!("only the training stages run on several devices")
    };
    let config = experiment(args)?;
    let data = cifar_data(&args.data, &config)?;
    let recipe = Recipe {
        config: &config,
        data: &data,
        options: &args.options(32, progress)?,
    };
    let stage = match command {
        Command::Teacher(_) => cli::Stage::Teacher,
        Command::Head(_) => cli::Stage::Head,
        _ => cli::Stage::Student,
    };
    cli::run_stage::<B, _, _>(&recipe, stage, devices)
}

fn eval<B: Backend>(args: &EvalArgs, progress: ProgressConfig, device: &B::Device) -> Result<()> {
    let config = ExperimentConfig::new(args.arch.clone(), args.arch.clone())
        .with_num_classes(args.num_classes.unwrap_or(100));
    cli::evaluate_checkpoint::<B, _, _>(args, &config, cifar_data, ("test", progress), device)
}

/// Images per batch of the linear evaluation's feature extraction.
const RESIZED_BATCH: usize = 200;

/// Images of `data` resized to 32×32 (Pillow bilinear, as torchvision's `Resize(32)`), as
/// one-copy samples normalised like CIFAR-100.
fn resized_batches<D: Dataset<LabeledImage> + 'static>(
    data: Arc<D>,
) -> std::sync::mpsc::Receiver<
    Result<sskd::augment::loader::HostBatch, sskd::augment::loader::LoadError>,
> {
    let to_32 = Arc::new(|item: LabeledImage, _: &mut StdRng| {
        let image = sskd::augment::resize::resize_bilinear(&item.image, 32, 32);
        Ok(Sample::from_images(
            &[image],
            CIFAR100_MEAN,
            CIFAR100_STD,
            item.label,
        ))
    });
    let config = sskd::augment::loader::LoaderConfig {
        shuffle: false,
        ..sskd::augment::loader::LoaderConfig::new(RESIZED_BATCH, 0)
    };
    sskd::augment::loader::load_epoch(data, to_32, config, 0)
}

/// The frozen `model`'s features of `data` resized to 32×32, the extraction's progress shown
/// under `label`.
fn features<B: Backend, D: Dataset<LabeledImage> + 'static>(
    model: &sskd::models::Model<B>,
    data: Arc<D>,
    (label, progress): (&str, ProgressConfig),
    device: &B::Device,
) -> Result<sskd::train::analysis::Features> {
    let batches = data.len().div_ceil(RESIZED_BATCH);
    let meter = Meter::new(&progress, label, Some(batches), "batches");
    let batches = meter.batches(resized_batches(data));
    Ok(sskd::train::analysis::extract_features(
        model, batches, device,
    )?)
}

fn linear_eval<B: AutodiffBackend>(
    args: &LinearEvalArgs,
    progress: ProgressConfig,
    device: &B::Device,
) -> Result<()> {
    use sskd::train::analysis::{linear_probe, LinearProbeConfig};
    let model = create_model::<B>(&args.arch, args.num_classes, device)?;
    let model = load_weights(model, &args.weights, device)?.valid();
    let label = |split: &str| format!("features of {} {split}", args.dataset);
    let (train, test, classes) = match args.dataset.as_str() {
        "stl10" => {
            use sskd::data::stl10::{stl10, Stl10Split};
            let train = Arc::new(stl10(&args.data, Stl10Split::Train)?);
            let test = Arc::new(stl10(&args.data, Stl10Split::Test)?);
            (
                features(&model, train, (&label("train"), progress), device)?,
                features(&model, test, (&label("test"), progress), device)?,
                10,
            )
        }
        "tiny-imagenet" => {
            use sskd::data::folders::ImageFiles;
            let train = ImageFiles::tiny_imagenet(&args.data, false)?;
            let classes = train.classes.len();
            let test = Arc::new(ImageFiles::tiny_imagenet(&args.data, true)?);
            (
                features(&model, Arc::new(train), (&label("train"), progress), device)?,
                features(&model, test, (&label("test"), progress), device)?,
                classes,
            )
        }
        other => bail!("unknown dataset `{other}`: expected stl10 or tiny-imagenet"),
    };
    let config = LinearProbeConfig::new()
        .with_epochs(args.epochs)
        .with_lr(args.lr);
    let result = linear_probe::<B>(&train, &test, classes, &config, &progress, device)?;
    println!(
        "linear evaluation of {} on {} ({} train / {} test images at 32×32): top-1 {:.2} % (train {:.2} %)",
        args.weights.display(), args.dataset, train.len(), test.len(), result.test_top1, result.train_top1
    );
    Ok(())
}

fn correlation<B: Backend>(
    args: &CorrelationArgs,
    progress: ProgressConfig,
    device: &B::Device,
) -> Result<()> {
    use sskd::train::analysis::correlation_difference;
    use sskd::train::plot::plot_heatmap;
    let teacher = create_model::<B>(&args.teacher_arch, args.num_classes, device)?;
    let teacher = load_weights(teacher, &args.teacher, device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut summary = Vec::new();
    let mut meter = Meter::new(
        &progress,
        "correlation",
        Some(args.students.len()),
        "students",
    );
    for path in &args.students {
        let student = create_model::<B>(&args.student_arch, args.num_classes, device)?;
        let student = load_weights(student, path, device)?;
        let (difference, mean) = correlation_difference(&teacher, &student)?;
        let name = path
            .file_stem()
            .map_or("student".into(), |s| s.to_string_lossy().into_owned());
        let png = args.out.join(format!("correlation-{name}.png"));
        let title = format!("|C_teacher − C_student|, {name}: mean {mean:.4}");
        plot_heatmap(
            &png,
            &title,
            &difference,
            (args.num_classes, args.num_classes),
        )?;
        println!(
            "{}: mean |difference| {mean:.5} → {}",
            path.display(),
            png.display()
        );
        meter.advance(1, 0, |_| String::new());
        summary.push(serde_json::json!({"student": path, "mean_difference": mean, "heatmap": png}));
    }
    meter.finish();
    let json = args.out.join("correlation.json");
    sskd::models::atomic::write_atomically(
        &json,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(())
}

/// A command on its devices: the training stages over one or several (data-parallel), the
/// others on the first.
struct Job(Command, ProgressConfig);

impl BackendJob for Job {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        let Job(command, progress) = &self;
        match command {
            Command::Teacher(_) | Command::Head(_) | Command::Student(_) => {
                stage::<Autodiff<B>>(command, *progress, &devices)
            }
            Command::Eval(args) => eval::<B>(args, *progress, &main_device(devices)),
            Command::LinearEval(args) => {
                linear_eval::<Autodiff<B>>(args, *progress, &main_device(devices))
            }
            Command::Correlation(args) => correlation::<B>(args, *progress, &main_device(devices)),
            Command::Config { .. } | Command::Report(_) => unreachable!("handled before dispatch"),
        }
    }
}

/// The report over run folders, printed and written to `--out`.
fn report(args: &ReportArgs) -> Result<()> {
    let report = sskd::train::report::write_report(&args.runs, &args.out)?;
    print!("{}", report.to_markdown());
    println!(
        "written: {0}/report.md, {0}/report.json, {0}/report.png",
        args.out.display()
    );
    Ok(())
}

/// The command's exit: 0, 75 after a stop on SIGTERM / SIGINT with a checkpoint
/// (`sskd::cli::signals`), else 1 with the error.
fn main() -> std::process::ExitCode {
    sskd::cli::signals::exit_status(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    cli.verbosity.init();
    let devices: DeviceList = match &cli.command {
        Command::Config {
            teacher,
            student,
            config,
        } => {
            let config = match (config, teacher, student) {
                (Some(path), _, _) => load_experiment(path, pair_defaults)?,
                (None, Some(teacher), Some(student)) => pair_defaults(teacher, student),
                _ => bail!("give --config, or --teacher and --student"),
            };
            config.validate()?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            return Ok(());
        }
        Command::Report(args) => return report(args),
        Command::Teacher(a) | Command::Head(a) | Command::Student(a) => a.device.clone(),
        Command::Eval(a) => a.main_device().into(),
        Command::LinearEval(a) => a.device.into(),
        Command::Correlation(_) => DeviceChoice::Cpu.into(),
    };
    let job = Job(cli.command, cli.verbosity.progress());
    dispatch(&devices, Precision::F32, job)?
}
