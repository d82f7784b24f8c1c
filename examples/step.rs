//! Runs training steps on a given batch, exactly as the trainer does, and writes the updated
//! state dict, so anyone can compare a step with the reference PyTorch code.
//!
//! ```text
//! cargo run --release --example step -- --stage student --method sskd \
//!     --teacher-arch wrn_40_2 --teacher teacher.pth --student-arch wrn_16_2 --student student.pth \
//!     --batch batch.safetensors --steps 2 --lr 0.05 --output out.safetensors [--terms terms.json]
//! cargo run --release --example step -- --stage teacher --arch wrn_40_2 --weights weights.pth \
//!     --batch batch.safetensors --steps 2 --lr 0.05 --output out.safetensors [--terms terms.json]
//! ```
//!
//! - `teacher.pth` / `student.pth`: SSKD layout (`{"state_dict": …}`, `backbone.*`,
//!   `proj_head.*`; a teacher without `proj_head.*` works for methods without the SS head);
//!   `weights.pth`: RepDistiller layout (`{"model": …}`); `.safetensors` state dicts and Burn
//!   records (`.mpk`) too.
//! - `batch.safetensors`: `x` f32 — `[4B, 3, H, W]` for a student with a rotation method (row
//!   `4i + k` is image `i` rotated `k`·90°, as the released code lays it out), `[B, 3, H, W]`
//!   otherwise and for the teacher stage — and `labels` i64 `[B]`. Used as given (no
//!   augmentation).
//! - The step is the trainer's own (`sskd::step`, over `teacher_epoch` / `student_epoch`):
//!   teacher in eval mode, student in train mode, SGD with momentum and weight decay, the
//!   method's default weights; `--steps N` applies N updates on the same batch.
//! - `out.safetensors`: the updated network's state dict — every parameter and batch-norm
//!   running statistic — under the key names of the input weight file, in the run's precision.
//!   `terms.json`: a list, one object per step, with the method's terms, `total` and the
//!   selection counts (`kept_tf`, `kept_ss` for SSKD).
//! - `--precision f64|f32`: the whole step (models, loss, optimizer) in that precision on the
//!   CPU backend.
//! - Any method of the registry on RepDistiller's setup (`helper/loops.py`): `--student` and
//!   `--teacher` may be RepDistiller checkpoints (`{"model": …}`, no SS head) for methods that
//!   do not distil the head; `--method-state FILE` holds the method's own modules under the
//!   names `train_student.py` gives them (`regress_s.`, `embed_s.`/`embed_t.`, `criterion_kd.N.`,
//!   `connector.`, `paraphraser.`/`translator.`, CRD's `contrast.memory_v1`/`memory_v2`/`params`;
//!   see `sskd::losses::torch_names`) and `--method-output FILE` receives them after the steps;
//!   for CRD the batch file also holds `index` `[B]` and `contrast_idx` `[B, K + 1]`.
//!   `--init` runs the method's pre-training step (`helper/pretrain.py`: AB, FT, FSP) instead
//!   of the main one; `--set method.NAME.FIELD=VALUE` changes a setting (the weights
//!   `ce`/`kd`/`beta`: RepDistiller's own `-r 1 -a 0` is `--set method.hint.ce=1 --set
//!   method.hint.kd=0`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::DType;
use clap::{Parser, ValueEnum};
use sskd::config::apply_assignment;
use sskd::losses::MethodConfig;
use sskd::models::atomic::write_atomically;
use sskd::step::{run_steps, terms_json, write_state_dict, StepOptions, StepStage};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Stage {
    Teacher,
    Student,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Precision {
    F32,
    F64,
}

#[derive(Parser, Debug)]
#[command(about = "Run training steps on a given batch and write the updated state dict")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Which network is trained.
    #[arg(long, value_enum)]
    stage: Stage,
    /// Teacher stage: the architecture.
    #[arg(long)]
    arch: Option<String>,
    /// Teacher stage: the weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Student stage: the distillation method (`sskd`, `kd`, …).
    #[arg(long, default_value = "sskd")]
    method: String,
    /// Student stage: a setting of the method, `method.NAME.FIELD=VALUE` (repeatable).
    #[arg(long = "set", value_name = "method.NAME.FIELD=VALUE")]
    settings: Vec<String>,
    /// Student stage: the method's own modules, under RepDistiller's names.
    #[arg(long)]
    method_state: Option<PathBuf>,
    /// Student stage: where to write the method's modules after the steps.
    #[arg(long)]
    method_output: Option<PathBuf>,
    /// Student stage: the method's pre-training step (AB, FT, FSP) instead of the main one.
    #[arg(long)]
    init: bool,
    /// Student stage: the teacher's architecture.
    #[arg(long)]
    teacher_arch: Option<String>,
    /// Student stage: the teacher's weights (backbone and SS head).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Student stage: the student's architecture.
    #[arg(long)]
    student_arch: Option<String>,
    /// Student stage: the student's weights (backbone and SS head).
    #[arg(long)]
    student: Option<PathBuf>,
    /// The batch (safetensors: `x`, `labels`).
    #[arg(long)]
    batch: PathBuf,
    /// Updates on the same batch.
    #[arg(long, default_value_t = 1, value_parser = sskd::cli::positive)]
    steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// SGD weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Float type of the whole step.
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Classes of the classifier(s).
    #[arg(long, default_value_t = 100)]
    num_classes: usize,
    /// Output safetensors file (the updated state dict).
    #[arg(long)]
    output: PathBuf,
    /// Optional JSON file with each step's terms and counts.
    #[arg(long)]
    terms: Option<PathBuf>,
}

fn required<T: Clone>(value: &Option<T>, flag: &str, stage: &str) -> Result<T> {
    match value {
        Some(value) => Ok(value.clone()),
        None => bail!("--stage {stage} needs {flag}"),
    }
}

fn stage(args: &Args) -> Result<StepStage> {
    Ok(match args.stage {
        Stage::Teacher => StepStage::Teacher {
            arch: required(&args.arch, "--arch", "teacher")?,
            weights: required(&args.weights, "--weights", "teacher")?,
        },
        Stage::Student => StepStage::Student {
            method: method_config(args)?,
            teacher_arch: required(&args.teacher_arch, "--teacher-arch", "student")?,
            teacher: required(&args.teacher, "--teacher", "student")?,
            student_arch: required(&args.student_arch, "--student-arch", "student")?,
            student: required(&args.student, "--student", "student")?,
            method_state: args.method_state.clone(),
        },
    })
}

/// The method with its published defaults and the `--set method.…` changes.
fn method_config(args: &Args) -> Result<MethodConfig> {
    let mut method = MethodConfig::published(&args.method)?;
    for setting in &args.settings {
        let Some(assignment) = setting.strip_prefix("method.") else {
            bail!(
                "--set {setting}: the step takes the method's settings, `method.NAME.FIELD=VALUE`"
            );
        };
        method = apply_assignment(method, assignment)
            .map_err(|e| anyhow::anyhow!("--set {setting}: {e}"))?;
    }
    method
        .validate()
        .map_err(|e| anyhow::anyhow!("method `{}`: {e}", method.name()))?;
    Ok(method)
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    sskd::cli::backend::prepare_cpu(true);
    let options = StepOptions {
        stage: stage(&args)?,
        batch: args.batch.clone(),
        steps: args.steps,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        precision: match args.precision {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        },
        num_classes: args.num_classes,
        init: args.init,
    };
    let outcome = run_steps(&options)?;
    write_state_dict(&args.output, &outcome.state_dict)?;
    if let Some(path) = &args.method_output {
        write_state_dict(path, &outcome.method_state)?;
    }
    if let Some(path) = &args.terms {
        let json = serde_json::to_string_pretty(&terms_json(&outcome.reports))?;
        write_atomically(path, json.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    eprintln!(
        "{} steps; {} tensors written to {}",
        outcome.reports.len(),
        outcome.state_dict.len(),
        args.output.display()
    );
    Ok(())
}
