//! SSKD on CIFAR-100, stage by stage, with the code's defaults (spec §6) or a pair's config.
//!
//! ```text
//! cifar100 teacher --config configs/cifar100/wrn_40_2-wrn_16_2.json --data DIR --out runs/w40
//! cifar100 head    --config ... --teacher runs/w40/teacher-best.mpk --data DIR --out runs/w40
//! cifar100 student --config ... --teacher runs/w40/teacher-with-head.mpk --data DIR --out runs/w40 \
//!                  [--method sskd|kd|crd|...] [--seeds 0,1,2]
//! cifar100 eval    --arch wrn_16_2 --weights runs/w40/student-best-backbone.mpk --data DIR
//! cifar100 config  --teacher wrn_40_2 --student wrn_16_2     # prints a full config
//! ```
//! `--data` holds CIFAR-100 in either format (`train.bin`/`test.bin`, or the python pickles).
//! Teachers may also be PyTorch checkpoints: a RepDistiller `{"model": ...}` file for `head`,
//! an SSKD `teacher.pth` with its `proj_head` for `student`. `--set FIELD=VALUE` overrides any
//! config field (`--set student_stage.epochs=30 --set sskd.ss_weight=3`). `--resume`
//! continues a killed stage from its last checkpoint. Each stage logs every epoch to
//! `OUT/metrics.jsonl`, keeps `OUT/<stage>-best.mpk` and `OUT/<stage>-last.mpk`, and draws
//! `OUT/<stage>.png`.

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
use sskd::augment::pipeline::{cifar_train, sskd_rotations, CIFAR100_MEAN, CIFAR100_STD};
use sskd::backend::{dispatch, BackendJob, DeviceChoice};
use sskd::config::{apply_assignment, load_overrides};
use sskd::data::cifar::{cifar100, Split};
use sskd::data::{LabeledImage, PlanarImages};
use sskd::experiment::{default_student_lr, ExperimentConfig, StageConfig};
use sskd::losses::{create_method, FeatureShapes, Method, MethodContext};
use sskd::models::checkpoint::{load_record, save_record};
use sskd::models::import::{load_weights, load_weights_with_head};
use sskd::models::{create_model, BackboneWithHead, SelfSupervisionHeadConfig};
use sskd::train::pipeline::{train_head, train_student, train_teacher, RunData, Transform};
use sskd::train::plot::plot_run;
use sskd::train::run::{EpochResult, FitPlan, RunDir};
use sskd::train::stages::Student;

#[derive(Parser, Debug)]
#[command(about = "SSKD on CIFAR-100: teacher, SS head, student, evaluation")]
struct Cli {
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

#[derive(ClapArgs, Debug, Clone)]
struct StageArgs {
    /// Experiment config (JSON); without it, --teacher-arch / --student-arch with the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Teacher architecture when no config is given.
    #[arg(long, default_value = "wrn_40_2")]
    teacher_arch: String,
    /// Student architecture when no config is given.
    #[arg(long, default_value = "wrn_16_2")]
    student_arch: String,
    /// Config overrides, FIELD=VALUE (dotted for nested fields).
    #[arg(long = "set")]
    overrides: Vec<String>,
    /// Distillation method (overrides the config's).
    #[arg(long)]
    method: Option<String>,
    /// Teacher weights: stage 1's record or a PyTorch checkpoint (head), with the SS head for
    /// the student stage.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// CIFAR-100 folder (binary or python version).
    #[arg(long)]
    data: PathBuf,
    /// Run folder.
    #[arg(long)]
    out: PathBuf,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Continue from the stage's last checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Seeds of the student stage (one run each under OUT/seed-N, then mean ± std).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
}

#[derive(ClapArgs, Debug)]
struct EvalArgs {
    /// Architecture.
    #[arg(long)]
    arch: String,
    /// Weights (.mpk, .pth, .safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// CIFAR-100 folder.
    #[arg(long)]
    data: PathBuf,
    /// Number of classes.
    #[arg(long, default_value_t = 100)]
    num_classes: usize,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
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
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Its initial learning rate (×0.1 at 60 % and 80 % of the epochs).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
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

fn transform(
    make: impl Fn(&image::RgbImage, &mut StdRng) -> Vec<image::RgbImage> + Send + Sync + 'static,
) -> Transform<LabeledImage> {
    Arc::new(move |item: LabeledImage, rng: &mut StdRng| {
        let copies = make(&item.image, rng);
        Ok(Sample::from_images(
            &copies,
            CIFAR100_MEAN,
            CIFAR100_STD,
            item.label,
        ))
    })
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
        train: Arc::new(train),
        test: Arc::new(test),
        plain_train: transform(|image, rng| vec![cifar_train(image, rng)]),
        rotations_train: transform(|image, rng| sskd_rotations(image, true, rng).to_vec()),
        plain_test: transform(|image, _| vec![image.clone()]),
        rotations_test: transform(|image, rng| sskd_rotations(image, false, rng).to_vec()),
        batch_size: config.batch_size,
        test_batch_size: config.test_batch_size,
        seed: config.seed,
    })
}

/// The config of `args`: the file or the defaults of the pair, the method, the overrides.
fn experiment(args: &StageArgs) -> Result<ExperimentConfig> {
    let mut config = match &args.config {
        Some(path) => load_experiment(path)?,
        None => pair_defaults(&args.teacher_arch, &args.student_arch),
    };
    if let Some(method) = &args.method {
        config.method = method.clone();
    }
    for assignment in &args.overrides {
        config = apply_assignment(config, assignment).map_err(anyhow::Error::msg)?;
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// A config file: its `teacher` and `student` pick the defaults, its other fields override them.
fn load_experiment(path: &Path) -> Result<ExperimentConfig> {
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
    let defaults = pair_defaults(&arch("teacher")?, &arch("student")?);
    let config = load_overrides(path, defaults).map_err(anyhow::Error::msg)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    Ok(config)
}

/// SSKD's defaults for a pair (student lr 0.01 for MobileNetV2 / ShuffleNets).
fn pair_defaults(teacher: &str, student: &str) -> ExperimentConfig {
    let lr = default_student_lr(student);
    ExperimentConfig::new(teacher.to_string(), student.to_string())
        .with_student_stage(StageConfig::new(240, lr, vec![150, 180, 210]))
}

fn plan(stage: &str, config: &StageConfig, experiment: &ExperimentConfig, resume: bool) -> FitPlan {
    let mut tags = serde_json::Map::new();
    tags.insert("teacher_arch".into(), experiment.teacher.clone().into());
    tags.insert("student_arch".into(), experiment.student.clone().into());
    tags.insert("method".into(), experiment.method.clone().into());
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

fn required<'a>(path: &'a Option<PathBuf>, what: &str) -> Result<&'a Path> {
    path.as_deref()
        .with_context(|| format!("--teacher is required: {what}"))
}

fn report(stage: &str, best: Option<EpochResult>, last: Option<EpochResult>) {
    let show = |label: &str, result: Option<EpochResult>| {
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
    };
    show("best", best);
    show("last", last);
}

fn sgd(config: &ExperimentConfig) -> (f64, f64) {
    (config.momentum, config.weight_decay)
}

fn seed_backend<B: Backend>(device: &B::Device, seed: u64) {
    B::seed(device, seed);
}

fn teacher_stage<B: AutodiffBackend>(args: &StageArgs, device: &B::Device) -> Result<()> {
    let config = experiment(args)?;
    seed_backend::<B>(device, config.seed);
    let data = cifar_data(&args.data, &config)?;
    let run = RunDir::create(&args.out)?;
    let model = create_model::<B>(&config.teacher, config.num_classes, device)?;
    let plan = plan("teacher", &config.teacher_stage, &config, args.resume);
    let outcome = train_teacher(&run, &plan, model, &data, sgd(&config), device)?;
    report("teacher", outcome.best, outcome.last);
    plot_run(&run)?;
    println!(
        "SSKD uses the best teacher: {}",
        run.path("teacher-best.mpk").display()
    );
    Ok(())
}

fn head_stage<B: AutodiffBackend>(args: &StageArgs, device: &B::Device) -> Result<()> {
    let config = experiment(args)?;
    seed_backend::<B>(device, config.seed);
    let weights = required(&args.teacher, "the teacher backbone to train a head on")?;
    let data = cifar_data(&args.data, &config)?;
    let run = RunDir::create(&args.out)?;
    let teacher = create_model::<B>(&config.teacher, config.num_classes, device)?;
    let teacher = load_weights(teacher, weights, device)?;
    let frozen = teacher.valid();
    let head = SelfSupervisionHeadConfig::new(frozen.embedding_dim()).init::<B>(device);
    let plan = plan("head", &config.head_stage, &config, args.resume);
    let outcome = train_head(&run, &plan, &frozen, head, &data, sgd(&config), device)?;
    report("head", outcome.best, outcome.last);
    // SSKD keeps the head of the last epoch.
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

/// A fresh student of `config`: backbone, SS head and the method's modules.
fn build_student<B: AutodiffBackend>(
    config: &ExperimentConfig,
    teacher: &BackboneWithHead<B::InnerBackend>,
    n_data: usize,
    device: &B::Device,
) -> Result<Student<B>> {
    let backbone = create_model::<B>(&config.student, config.num_classes, device)?;
    let context = MethodContext {
        student: FeatureShapes::probe(&backbone.valid(), 32, 32, device),
        teacher: FeatureShapes::probe(&teacher.backbone, 32, 32, device),
        n_data,
        with_kd: config.with_kd,
    };
    let method = if config.method == "sskd" {
        Method::Sskd(config.sskd.init()?)
    } else {
        create_method::<B>(&config.method, &context, device)?
    };
    Ok(Student {
        network: BackboneWithHead::new(backbone, device),
        method,
    })
}

/// One student run of `config` in `run`; returns its best and last epochs. Besides the whole
/// student records (`student-best.mpk`, `student-last.mpk`, with the head and the method's
/// modules) it writes the classifiers alone, `student-best-backbone.mpk` and
/// `student-last-backbone.mpk`, for `eval` and for use as a model of the zoo.
fn student_run<B: AutodiffBackend>(
    config: &ExperimentConfig,
    teacher: &BackboneWithHead<B::InnerBackend>,
    data: &Data,
    run: &RunDir,
    resume: bool,
    device: &B::Device,
) -> Result<(Option<EpochResult>, Option<EpochResult>)> {
    seed_backend::<B>(device, config.seed);
    let student = build_student::<B>(config, teacher, data.train.len(), device)?;
    let plan = plan("student", &config.student_stage, config, resume);
    let outcome = train_student(run, &plan, student, teacher, data, sgd(config), device)?;
    report("student", outcome.best, outcome.last);
    let shell = build_student::<B>(config, teacher, data.train.len(), device)?;
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

fn student_stage<B: AutodiffBackend>(args: &StageArgs, device: &B::Device) -> Result<()> {
    let config = experiment(args)?;
    let weights = required(&args.teacher, "the teacher with its SS head (the head stage's teacher-with-head.mpk, or SSKD's teacher.pth)")?;
    let data = cifar_data(&args.data, &config)?;
    let teacher = BackboneWithHead::new(
        create_model::<B>(&config.teacher, config.num_classes, device)?,
        device,
    );
    let teacher = load_weights_with_head(teacher, weights, device)?.valid();
    if args.seeds.is_empty() {
        student_run::<B>(
            &config,
            &teacher,
            &data,
            &RunDir::create(&args.out)?,
            args.resume,
            device,
        )?;
        return Ok(());
    }
    let mut results = Vec::new();
    for &seed in &args.seeds {
        let mut config = config.clone();
        config.seed = seed;
        let data = RunData {
            seed,
            ..data.clone()
        };
        let run = RunDir::create(&args.out.join(format!("seed-{seed}")))?;
        let (best, last) = student_run::<B>(&config, &teacher, &data, &run, args.resume, device)?;
        results.push((seed, best, last));
    }
    summarise_seeds(&args.out, &results)
}

/// Mean ± sample standard deviation of the seeds' best and last top-1, printed and written to
/// `OUT/seeds.json`.
fn summarise_seeds(
    out: &Path,
    results: &[(u64, Option<EpochResult>, Option<EpochResult>)],
) -> Result<()> {
    let stats = |values: Vec<f64>| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, var.sqrt())
    };
    let top1 =
        |pick: fn(&(u64, Option<EpochResult>, Option<EpochResult>)) -> Option<EpochResult>| {
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
    let path = out.join("seeds.json");
    sskd::models::checkpoint::write_atomically(
        &path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(())
}

fn eval<B: Backend>(args: &EvalArgs, device: &B::Device) -> Result<()> {
    let model = create_model::<B>(&args.arch, args.num_classes, device)?;
    let model = load_weights(model, &args.weights, device)?;
    let config = ExperimentConfig::new(args.arch.clone(), args.arch.clone())
        .with_num_classes(args.num_classes);
    let data = cifar_data(&args.data, &config)?;
    let evaluation = data.evaluate_model(&model, device)?;
    println!(
        "{} on {} test images: top-1 {:.2} %, top-5 {:.2} %",
        args.weights.display(),
        data.test.len(),
        evaluation.top1,
        evaluation.top5
    );
    Ok(())
}

/// Images of `data` resized to 32×32 (Pillow bilinear, as torchvision's `Resize(32)`), as
/// one-copy samples normalised like CIFAR-100.
fn resized_batches<D: Dataset<LabeledImage> + 'static>(
    data: Arc<D>,
) -> std::sync::mpsc::Receiver<Result<sskd::augment::loader::HostBatch, String>> {
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
        ..sskd::augment::loader::LoaderConfig::new(200, 0)
    };
    sskd::augment::loader::load_epoch(data, to_32, config, 0)
}

fn linear_eval<B: AutodiffBackend>(args: &LinearEvalArgs, device: &B::Device) -> Result<()> {
    use sskd::train::analysis::{extract_features, linear_probe, LinearProbeConfig};
    let model = create_model::<B>(&args.arch, args.num_classes, device)?;
    let model = load_weights(model, &args.weights, device)?.valid();
    let (train, test, classes) = match args.dataset.as_str() {
        "stl10" => {
            use sskd::data::stl10::{stl10, Stl10Split};
            let train = Arc::new(stl10(&args.data, Stl10Split::Train)?);
            let test = Arc::new(stl10(&args.data, Stl10Split::Test)?);
            (
                extract_features(&model, resized_batches(train), device)?,
                extract_features(&model, resized_batches(test), device)?,
                10,
            )
        }
        "tiny-imagenet" => {
            use sskd::data::folders::ImageFiles;
            let train = ImageFiles::tiny_imagenet(&args.data, false)?;
            let classes = train.classes.len();
            let test = Arc::new(ImageFiles::tiny_imagenet(&args.data, true)?);
            (
                extract_features(&model, resized_batches(Arc::new(train)), device)?,
                extract_features(&model, resized_batches(test), device)?,
                classes,
            )
        }
        other => bail!("unknown dataset `{other}`: expected stl10 or tiny-imagenet"),
    };
    let config = LinearProbeConfig::new()
        .with_epochs(args.epochs)
        .with_lr(args.lr);
    let result = linear_probe::<B>(&train, &test, classes, &config, device)?;
    println!(
        "linear evaluation of {} on {} ({} train / {} test images at 32×32): top-1 {:.2} % (train {:.2} %)",
        args.weights.display(), args.dataset, train.len(), test.len(), result.test_top1, result.train_top1
    );
    Ok(())
}

fn correlation<B: Backend>(args: &CorrelationArgs, device: &B::Device) -> Result<()> {
    use sskd::train::analysis::correlation_difference;
    use sskd::train::plot::plot_heatmap;
    let teacher = create_model::<B>(&args.teacher_arch, args.num_classes, device)?;
    let teacher = load_weights(teacher, &args.teacher, device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut summary = Vec::new();
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
        summary.push(serde_json::json!({"student": path, "mean_difference": mean, "heatmap": png}));
    }
    let json = args.out.join("correlation.json");
    sskd::models::checkpoint::write_atomically(
        &json,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(())
}

struct Job(Command);

impl BackendJob for Job {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        match &self.0 {
            Command::Teacher(args) => teacher_stage::<Autodiff<B>>(args, &device),
            Command::Head(args) => head_stage::<Autodiff<B>>(args, &device),
            Command::Student(args) => student_stage::<Autodiff<B>>(args, &device),
            Command::Eval(args) => eval::<B>(args, &device),
            Command::LinearEval(args) => linear_eval::<Autodiff<B>>(args, &device),
            Command::Correlation(args) => correlation::<B>(args, &device),
            Command::Config { .. } => unreachable!("handled before dispatch"),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let device = match &cli.command {
        Command::Config {
            teacher,
            student,
            config,
        } => {
            let config = match (config, teacher, student) {
                (Some(path), _, _) => load_experiment(path)?,
                (None, Some(teacher), Some(student)) => pair_defaults(teacher, student),
                _ => bail!("give --config, or --teacher and --student"),
            };
            config.validate().map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            return Ok(());
        }
        Command::Teacher(a) | Command::Head(a) | Command::Student(a) => a.device,
        Command::Eval(a) => a.device,
        Command::LinearEval(a) => a.device,
        Command::Correlation(_) => DeviceChoice::Cpu,
    };
    dispatch(device, Job(cli.command)).map_err(anyhow::Error::msg)?
}
