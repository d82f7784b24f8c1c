//! The offline quickstart: SSKD against KD and plain training on the shipped Fashion-MNIST
//! subset, in the few-labels regime where the paper reports its largest gains.
//!
//! ```text
//! cargo run --release --example quickstart                  # students only (teacher shipped)
//! cargo run --release --example quickstart -- --train-teacher
//! ```
//! The teacher (resnet20 with its SS head) was trained by this project's own stages with
//! `--train-teacher` and ships as `data/quickstart/teacher.mpk`. Three resnet8 students learn
//! from `--labelled` class-balanced training images (by default 640, for 12 epochs of batch 16:
//! enough SGD steps for the paper's order, SSKD > KD > plain, in about 2.5 minutes on 2 cores;
//! docs/quickstart.md): plain cross-entropy, KD and SSKD, each evaluated after every epoch on
//! the test images. Every stage writes its metrics, checkpoints and best/last records under
//! `--out/<stage>`; `--resume` continues a killed run. `--seeds 0,1,2` trains every student once
//! per seed (under `--out/seed-N/<stage>`) and prints the mean ± std over them; every run writes
//! its table as `--out/quickstart.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::data::dataset::transform::SelectionDataset;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use clap::Parser;
use rand::rngs::StdRng;
use sskd::augment::recipes::crop_and_flip;
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::data::idx::idx_images;
use sskd::data::{ClassLabels, LabeledImage, PlanarImages};
use sskd::experiment::{ExperimentConfig, ScheduleShape, StageConfig};
use sskd::losses::MethodConfig;
use sskd::models::atomic::write_atomically;
use sskd::models::checkpoint::load_record;
use sskd::models::{create_model, BackboneWithHead};
use sskd::recipe::{Recipe, StageOptions};
use sskd::train::metrics::{EpochResult, Evaluation};
use sskd::train::report::mean_and_std;
use sskd::train::stages::{RunData, Transform};

type B = Autodiff<Flex>;
type Subset = SelectionDataset<PlanarImages, LabeledImage>;

const MEAN: [f32; 3] = [0.286, 0.286, 0.286];
const STD: [f32; 3] = [0.353, 0.353, 0.353];
/// The learning rate every stage starts from (cosine decay to 0 over its epochs).
const LR: f64 = 0.05;
/// The side of the images: Fashion-MNIST's 28×28 with a black border of 2, as LeNet took
/// MNIST (the CIFAR networks' reference models take no less than 29×29).
const SIDE: u32 = 32;

#[derive(Parser, Debug, Clone)]
#[command(about = "SSKD vs KD vs plain training on the shipped Fashion-MNIST subset")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    #[command(flatten)]
    stop: sskd::cli::signals::StopArgs,
    /// Train the teacher and its SS head again (and overwrite --teacher).
    #[arg(long)]
    train_teacher: bool,
    /// The teacher record (a resnet20 `BackboneWithHead`, 10 classes); by default the one
    /// shipped in the repository, wherever the binary runs from.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/quickstart/teacher.mpk"))]
    teacher: PathBuf,
    /// The Fashion-MNIST folder (IDX files); by default the subset shipped in the repository.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist"))]
    data: PathBuf,
    /// Labelled training images for the students (class-balanced, a multiple of 10).
    #[arg(long, default_value_t = 640, value_parser = sskd::cli::positive)]
    labelled: usize,
    /// Test images evaluated after every epoch (class-balanced, at most 2,000).
    #[arg(long, default_value_t = 1000, value_parser = sskd::cli::positive)]
    test_images: usize,
    /// Images per training batch (an SSKD batch holds each in four rotations).
    #[arg(long, default_value_t = 16, value_parser = sskd::cli::positive)]
    batch: usize,
    /// Student epochs (cosine learning rate from 0.05 to 0 over them).
    #[arg(long, default_value_t = 12, value_parser = sskd::cli::positive)]
    epochs: usize,
    /// Students to train, in order: `vanilla` or any method name (kd, sskd, dkd, crd, ...).
    #[arg(long, value_delimiter = ',', default_value = "vanilla,kd,sskd")]
    methods: Vec<String>,
    /// Teacher training images (with --train-teacher).
    #[arg(long, default_value_t = 8000, value_parser = sskd::cli::positive)]
    teacher_images: usize,
    /// Images per batch of the teacher and its SS head (with --train-teacher).
    #[arg(long, default_value_t = 64, value_parser = sskd::cli::positive)]
    teacher_batch: usize,
    /// Teacher epochs (with --train-teacher).
    #[arg(long, default_value_t = 6, value_parser = sskd::cli::positive)]
    teacher_epochs: usize,
    /// SS-head epochs (with --train-teacher).
    #[arg(long, default_value_t = 24, value_parser = sskd::cli::positive)]
    head_epochs: usize,
    /// Seed of weight initialisation, sample order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train every student once per seed (under `--out/seed-N`) and print the mean ± std over
    /// them, e.g. `--seeds 0,1,2`; replaces `--seed`.
    #[arg(long, value_delimiter = ',', conflicts_with = "seed")]
    seeds: Vec<u64>,
    /// Checkpoint every this many epochs (and after the last).
    #[arg(long, default_value_t = 1)]
    checkpoint_every: usize,
    /// Continue each stage from its checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Run folder.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
}

/// `count` class-balanced images of `images` (the first `count / 10` of each class).
fn subset(images: &Arc<PlanarImages>, count: usize) -> Arc<Subset> {
    let indices = images.class_balanced((count / 10).max(1));
    Arc::new(SelectionDataset::from_indices_checked(
        images.clone(),
        indices,
    ))
}

fn transform(
    make: impl Fn(&image::RgbImage, &mut StdRng) -> Vec<image::RgbImage> + Send + Sync + 'static,
) -> Transform<LabeledImage> {
    sskd::recipe::transform(MEAN, STD, make)
}

/// Crop + flip (train) or nothing (test), one copy or four rotations; 32×32 throughout.
fn run_data(train: Arc<Subset>, test: Arc<Subset>, args: &Args) -> RunData<Subset, LabeledImage> {
    RunData {
        train_labels: train.class_labels().into(),
        train,
        test,
        plain_train: transform(|image, rng| vec![crop_and_flip(image, SIDE, 4, rng)]),
        rotations_train: transform(|image, rng| sskd_rotations(image, true, rng).to_vec()),
        plain_test: transform(|image, _| vec![image.clone()]),
        rotations_test: transform(|image, rng| sskd_rotations(image, false, rng).to_vec()),
        batch_size: args.batch,
        test_batch_size: 250,
        seed: args.seed,
    }
}

/// The quickstart's experiment: the resnet20 teacher, resnet8 students of `method`, 10 classes,
/// SGD (momentum 0.9, weight decay 5e-4) with a cosine learning rate from 0.05 to 0 in every
/// stage.
fn experiment(args: &Args, method: MethodConfig) -> ExperimentConfig {
    let cosine = |epochs| StageConfig::new(epochs, LR, vec![]).with_shape(ScheduleShape::Cosine);
    ExperimentConfig::new("resnet20".into(), "resnet8".into())
        .with_num_classes(10)
        .with_teacher_stage(cosine(args.teacher_epochs))
        .with_head_stage(cosine(args.head_epochs))
        .with_student_stage(cosine(args.epochs))
        .with_batch_size(args.batch)
        .with_test_batch_size(250)
        .with_seed(args.seed)
        .with_checkpoint_every(args.checkpoint_every)
        .with_method(method)
}

/// Where a stage of the quickstart runs: `--out/<name>`, images of 32×32.
fn options(args: &Args, name: &str) -> Result<StageOptions> {
    Ok(StageOptions {
        out: args.out.join(name),
        resume: args.resume,
        teacher: Some(args.teacher.clone()),
        image_size: SIDE as usize,
        progress: args.verbosity.progress(),
        stop: args.stop.stop_request()?,
        ..StageOptions::default()
    })
}

/// Stages 1 and 2 on `data` (the teacher's images) in `--out/teacher`; the teacher with its
/// head (the last epoch of each stage, as SSKD keeps them) is written to `--teacher`.
fn train_teacher_and_head(
    args: &Args,
    data: &RunData<Subset, LabeledImage>,
    devices: &[burn::tensor::Device<B>],
) -> Result<()> {
    let config = experiment(args, MethodConfig::default());
    let teacher_options = options(args, "teacher")?;
    let head_options = StageOptions {
        teacher: Some(teacher_options.out.join("teacher-last.mpk")),
        ..teacher_options.clone()
    };
    let recipe = |options| Recipe {
        config: &config,
        data,
        options,
    };
    recipe(&teacher_options).teacher::<B>(devices)?;
    let with_head = recipe(&head_options).head::<B>(devices)?;
    let record = std::fs::read(&with_head.record)
        .with_context(|| format!("cannot read {}", with_head.record.display()))?;
    if let Some(parent) = args.teacher.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomically(&args.teacher, &record)?;
    Ok(())
}

fn load_teacher(path: &Path, device: &burn::tensor::Device<B>) -> Result<BackboneWithHead<B>> {
    let shell = BackboneWithHead::new(create_model::<B>("resnet20", 10, device)?, device);
    load_record(shell, path, device)
        .with_context(|| "run with --train-teacher to make the teacher".to_string())
}

/// A result row: name, best and last epoch, seconds.
struct Row {
    name: String,
    /// Whether it is a student that learnt from no teacher (the baseline of the gains).
    plain_student: bool,
    best: Option<EpochResult>,
    last: Option<EpochResult>,
    seconds: f64,
}

impl Row {
    /// The top-1 of an epoch's result, in percent.
    fn top1(result: Option<EpochResult>) -> Option<f64> {
        result.map(|r| r.evaluation.top1)
    }

    /// The SS head's accuracy: at the best epoch, else the last.
    fn ss_top1(&self) -> Option<f64> {
        self.best.or(self.last).and_then(|r| r.evaluation.ss_top1)
    }

    /// The best top-1 minus the plain student's best.
    fn gain(&self, plain: Option<&Row>) -> Option<f64> {
        Some(Self::top1(self.best)? - Self::top1(plain?.best)?)
    }
}

/// The plain student of `rows` (a method that uses no teacher), if it was trained.
fn plain_row(rows: &[Row]) -> Option<&Row> {
    rows.iter().find(|row| row.plain_student)
}

/// Trains one resnet8 student with `method` (`vanilla`: cross-entropy only, no teacher) in
/// `--out/<method>`.
fn train_one(
    args: &Args,
    method: &str,
    data: &RunData<Subset, LabeledImage>,
    devices: &[burn::tensor::Device<B>],
) -> Result<Row> {
    let started = Instant::now();
    let options = options(args, method)?;
    let config = experiment(args, MethodConfig::published(method)?);
    let recipe = Recipe {
        config: &config,
        data,
        options: &options,
    };
    let result = recipe.student::<B>(devices)?.runs.remove(0).result;
    Ok(Row {
        name: format!("student resnet8, {method}"),
        plain_student: !config.method.uses_teacher(),
        best: result.best,
        last: result.last,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The rows of one seed: the teacher's evaluation, then every student of `--methods`.
fn train_students(
    args: &Args,
    data: &RunData<Subset, LabeledImage>,
    teacher_eval: Evaluation,
    devices: &[burn::tensor::Device<B>],
) -> Result<Vec<Row>> {
    let mut rows = vec![Row {
        name: "teacher resnet20".to_string(),
        plain_student: false,
        best: None,
        last: Some(EpochResult {
            epoch: 0,
            evaluation: teacher_eval,
        }),
        seconds: 0.0,
    }];
    for method in &args.methods {
        rows.push(train_one(args, method, data, devices)?);
    }
    Ok(rows)
}

fn check_methods(methods: &[String]) -> Result<()> {
    for method in methods {
        MethodConfig::published(method)?;
    }
    Ok(())
}

/// The table of one seed's run: each model's best (and its epoch) and last top-1, the best's
/// gain over the plain student, the SS head's accuracy (the teacher's; a student's own head
/// where its method trains one), the training seconds; the teacher first, then the students
/// from the best top-1 down.
fn print_table(rows: &[Row], args: &Args, labelled: usize, test: usize) {
    println!(
        "\nFashion-MNIST, {test} test images; students on {labelled} labelled images, {} epochs \
         of batch {}, seed {} (best first):",
        args.epochs, args.batch, args.seed
    );
    println!(
        "{:<28} {:>16} {:>10} {:>13} {:>10} {:>9}",
        "model", "best top-1 (ep)", "last top-1", "gain vs plain", "SS head %", "train s"
    );
    let plain = plain_row(rows);
    let dash = || "-".to_string();
    for row in best_first(rows.iter().collect(), |row| Row::top1(row.best)) {
        let best = row
            .best
            .map_or_else(dash, |b| format!("{:.2} ({})", b.evaluation.top1, b.epoch));
        let last = Row::top1(row.last).map_or_else(dash, |l| format!("{l:.2}"));
        let gain = row.gain(plain).map_or_else(dash, |g| format!("{g:+.2}"));
        let ss_head = row.ss_top1().map_or_else(dash, |ss| format!("{ss:.2}"));
        println!(
            "{:<28} {best:>16} {last:>10} {gain:>13} {ss_head:>10} {:>9.1}",
            row.name, row.seconds
        );
    }
}

/// `items` ordered by `top1`, highest first, those without one (the teacher) ahead of all; ties
/// keep their order.
fn best_first<T>(mut items: Vec<T>, top1: impl Fn(&T) -> Option<f64>) -> Vec<T> {
    let key = |item: &T| top1(item).unwrap_or(f64::INFINITY);
    items.sort_by(|a, b| key(b).total_cmp(&key(a)));
    items
}

/// Mean ± sample standard deviation of `value` over the seeds' rows of one model.
fn over_seeds(rows: &[&Row], value: impl Fn(&Row) -> Option<f64>) -> Option<(f64, f64)> {
    let values: Option<Vec<f64>> = rows.iter().map(|row| value(row)).collect();
    values.map(|values| mean_and_std(&values))
}

/// One model's columns over the seeds, each `(mean, std)` where every seed has it.
struct SeedColumns {
    best: Option<(f64, f64)>,
    last: Option<(f64, f64)>,
    gain: Option<(f64, f64)>,
    ss_head: Option<(f64, f64)>,
    seconds: Option<(f64, f64)>,
}

impl SeedColumns {
    /// The columns of `rows` (one model, a row per seed) with the gains over `plains` (the
    /// plain student of the same seed).
    fn of(rows: &[&Row], plains: &[Option<&Row>]) -> Self {
        let gains: Option<Vec<f64>> = rows
            .iter()
            .zip(plains)
            .map(|(row, plain)| row.gain(*plain))
            .collect();
        Self {
            best: over_seeds(rows, |row| Row::top1(row.best)),
            last: over_seeds(rows, |row| Row::top1(row.last)),
            gain: gains.map(|gains| mean_and_std(&gains)),
            ss_head: over_seeds(rows, Row::ss_top1),
            seconds: over_seeds(rows, |row| Some(row.seconds)),
        }
    }

    /// The columns under their names in `quickstart.json`.
    fn named(&self) -> [(&'static str, Option<(f64, f64)>); 5] {
        [
            ("best_top1", self.best),
            ("last_top1", self.last),
            ("gain_vs_plain", self.gain),
            ("ss_head", self.ss_head),
            ("seconds", self.seconds),
        ]
    }
}

/// The rows of model `index` in every seed's table, and every seed's plain student.
fn across_seeds(tables: &[Vec<Row>], index: usize) -> (Vec<&Row>, Vec<Option<&Row>>) {
    let rows = tables.iter().map(|rows| &rows[index]).collect();
    let plains = tables.iter().map(|rows| plain_row(rows)).collect();
    (rows, plains)
}

/// Every model's columns over the seeds, in the order of the tables' rows.
fn seed_columns(tables: &[Vec<Row>]) -> Vec<SeedColumns> {
    let models = tables.first().map_or(0, Vec::len);
    (0..models)
        .map(|index| {
            let (rows, plains) = across_seeds(tables, index);
            SeedColumns::of(&rows, &plains)
        })
        .collect()
}

/// The mean ± std table over the seeds (`columns`: [`seed_columns`] of `tables`).
fn print_seed_summary(tables: &[Vec<Row>], seeds: &[u64], columns: &[SeedColumns]) {
    let seed_list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    println!(
        "\nMean ± std over {} seeds ({}), best first:",
        seeds.len(),
        seed_list.join(", ")
    );
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>10} {:>9}",
        "model", "best top-1", "last top-1", "gain vs plain", "SS head %", "train s"
    );
    let cell = |stat: Option<(f64, f64)>, signed: bool| match stat {
        Some((mean, std)) if signed => format!("{mean:+.2} ± {std:.2}"),
        Some((mean, std)) => format!("{mean:.2} ± {std:.2}"),
        None => "-".to_string(),
    };
    let models = tables[0].iter().zip(columns);
    let ranked = best_first(models.collect(), |(_, columns)| {
        columns.best.map(|(mean, _)| mean)
    });
    for (row, columns) in ranked {
        println!(
            "{:<28} {:>14} {:>14} {:>14} {:>10} {:>9.1}",
            row.name,
            cell(columns.best, false),
            cell(columns.last, false),
            cell(columns.gain, true),
            columns
                .ss_head
                .map_or_else(|| "-".to_string(), |(mean, _)| format!("{mean:.2}")),
            columns.seconds.map_or(0.0, |(mean, _)| mean)
        );
    }
}

/// `--out/quickstart.json`: the regime, every seed's rows and, per model, the mean and std of
/// each column over the seeds (`columns`: [`seed_columns`] of `tables`; std 0 for one seed).
fn write_report(
    args: &Args,
    seeds: &[u64],
    (tables, columns): (&[Vec<Row>], &[SeedColumns]),
    seconds: f64,
) -> Result<PathBuf> {
    let epoch_json = |result: Option<EpochResult>| {
        result.map(|r| {
            let evaluation = r.evaluation;
            serde_json::json!({"epoch": r.epoch, "top1": evaluation.top1,
                               "ss_top1": evaluation.ss_top1})
        })
    };
    let models: Vec<serde_json::Value> = tables[0]
        .iter()
        .zip(columns)
        .enumerate()
        .map(|(index, (row, columns))| {
            let (rows, _) = across_seeds(tables, index);
            let runs: Vec<serde_json::Value> = rows
                .iter()
                .zip(seeds)
                .map(|(row, seed)| {
                    serde_json::json!({"seed": seed, "best": epoch_json(row.best),
                                       "last": epoch_json(row.last), "seconds": row.seconds})
                })
                .collect();
            let mut model = serde_json::json!({"model": row.name, "runs": runs});
            for (column, stat) in columns.named() {
                if let Some((mean, std)) = stat {
                    model[format!("{column}_mean")] = mean.into();
                    model[format!("{column}_std")] = std.into();
                }
            }
            model
        })
        .collect();
    let report = serde_json::json!({
        "regime": {"labelled": args.labelled, "test_images": args.test_images,
                   "epochs": args.epochs, "batch": args.batch, "image_side": SIDE,
                   "lr": LR, "schedule": "cosine", "teacher": args.teacher},
        "seeds": seeds,
        "models": models,
        "wall_seconds": seconds,
    });
    let path = args.out.join("quickstart.json");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    write_atomically(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(path)
}

/// The command's exit: 0, 75 after a stop on SIGTERM / SIGINT with a checkpoint
/// (`sskd::cli::signals`), else 1 with the error.
fn main() -> std::process::ExitCode {
    sskd::cli::signals::exit_status(run())
}

fn run() -> Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    args.verbosity.init();
    sskd::cli::backend::prepare_cpu(true);
    check_methods(&args.methods)?;
    // Every stage seeds the backend's generator with the seed before it initialises weights,
    // so each student starts from the same weights whatever ran before it.
    let devices = [Default::default()];
    let fashion =
        |prefix| Ok::<_, anyhow::Error>(Arc::new(idx_images(&args.data, prefix, 10)?.padded(2)));
    let train = fashion("train")?;
    let test = subset(&fashion("t10k")?, args.test_images);

    if args.train_teacher {
        let args = Args {
            batch: args.teacher_batch,
            ..args.clone()
        };
        let data = run_data(subset(&train, args.teacher_images), test.clone(), &args);
        train_teacher_and_head(&args, &data, &devices)?;
    }
    let teacher = load_teacher(&args.teacher, &devices[0])?;
    let labelled = subset(&train, args.labelled);
    let frozen = teacher.valid();
    let teacher_eval =
        run_data(labelled.clone(), test.clone(), &args).evaluate_network(&frozen, &devices[0])?;
    println!(
        "teacher: top-1 {:.2} %, SS-head accuracy {:.2} % on the test set",
        teacher_eval.top1,
        teacher_eval.ss_top1.unwrap_or(0.0)
    );
    let seeds = if args.seeds.is_empty() {
        vec![args.seed]
    } else {
        args.seeds.clone()
    };
    let per_seed_folders = !args.seeds.is_empty();
    let mut tables = Vec::new();
    for &seed in &seeds {
        let out = if per_seed_folders {
            args.out.join(format!("seed-{seed}"))
        } else {
            args.out.clone()
        };
        let args = Args {
            seed,
            out,
            ..args.clone()
        };
        let data = run_data(labelled.clone(), test.clone(), &args);
        let rows = train_students(&args, &data, teacher_eval, &devices)?;
        print_table(&rows, &args, labelled.len(), test.len());
        tables.push(rows);
    }
    let columns = seed_columns(&tables);
    if seeds.len() > 1 {
        print_seed_summary(&tables, &seeds, &columns);
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = write_report(&args, &seeds, (&tables, &columns), seconds)?;
    let out = args.out.display();
    let each = if per_seed_folders { "seed-N/" } else { "" };
    println!(
        "curves: {out}/{each}<student>/student.png; metrics: {out}/{each}<student>/metrics.jsonl; \
         results: {}",
        report.display()
    );
    Ok(())
}
