//! Times whole training steps (SSKD student, KD student, teacher, SS head) on one device and
//! prints one JSON object per configuration; `tools/gpu_bench_torch.py` prints the same for
//! PyTorch, and `tools/gpu_bench_table.py` joins the two into the ratio table.
//!
//! ```text
//! cargo run --release --features cuda,fusion,autotune --example gpu_bench -- \
//!     --device cuda --set core [--precision f32|f16|bf16] [--warmup 10] [--steps 50]
//! gpu_bench --device cpu sskd/resnet8/resnet8/4 --warmup 1 --steps 2
//! ```
//!
//! Each line holds the step time (median, p10, p90 of the timed steps; each step ends with a
//! device synchronisation), source images per second, the device memory the cubecl pools
//! reserved (peak over the steps), and the cold start: seconds from building the networks to
//! the end of the first step (compilation and autotuning included), and from process start,
//! and the process's CPU utilisation over the configuration (CPU seconds per wall second: 2.0
//! is both cores of a 2-core machine busy). On the CPU, `--cpu-kernels burn-flex` runs
//! burn-flex 0.21.0's own convolutions instead of sskd's, for a same-run comparison.
//! A configuration that fails prints its error and the run goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use serde_json::{json, Value};
use sskd::cli::backend::{
    device_memory, dispatch, main_device, BackendJob, DeviceChoice, Precision,
};
use sskd::train::parallel::panic_message;
use sskd_bench::step_bench::{config_set, time_config, StepConfig};

#[derive(Parser, Debug)]
#[command(about = "Time SSKD training steps on one device and print JSON lines")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Configurations `KIND/TEACHER[/STUDENT]/BATCH` (e.g. `sskd/wrn_40_2/wrn_16_2/64`,
    /// `teacher/wrn_40_2/64`); added to `--set`.
    configs: Vec<StepConfig>,
    /// A named set: `core` or `all` (default `core` when no configuration is named).
    #[arg(long)]
    set: Option<String>,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// f32, f16 (CUDA, wgpu) or bf16 (CUDA): the whole graph in that type.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Untimed steps first (the first is the cold start); at least one always runs.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 50, value_parser = sskd::cli::positive)]
    steps: usize,
    /// Skip the configurations left once this many seconds have passed (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    budget_s: f64,
    /// Kernels of the CPU backend: `sskd` (sskd-kernels' convolution and batch-norm kernels,
    /// the default) or `burn-flex` (burn-flex 0.21.0's own path), to compare both in one run.
    #[arg(long, value_enum, default_value_t = CpuKernels::Sskd)]
    cpu_kernels: CpuKernels,
    /// Print the configurations and exit.
    #[arg(long)]
    list: bool,
}

/// Which convolution kernels the CPU backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CpuKernels {
    Sskd,
    BurnFlex,
}

impl CpuKernels {
    fn name(self) -> &'static str {
        match self {
            CpuKernels::Sskd => "sskd",
            CpuKernels::BurnFlex => "burn-flex",
        }
    }

    /// Makes the CPU backend use these kernels.
    fn select(self) {
        #[cfg(feature = "flex")]
        sskd::kernels::set_enabled(self == CpuKernels::Sskd);
    }
}

/// This process's CPU time (user + system) in seconds, where `/proc` tells it.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends at the last ')'): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The process start, for the cold start from launch.
static LAUNCHED: OnceLock<Instant> = OnceLock::new();

struct Bench {
    args: Args,
    configs: Vec<StepConfig>,
}

impl BackendJob for Bench {
    type Output = ();

    fn run<B: Backend>(self, devices: Vec<B::Device>) {
        let device = main_device(devices);
        let launched = *LAUNCHED.get().expect("set in main");
        let started = Instant::now();
        for config in &self.configs {
            let mut line = describe::<B>(&self.args, config, &device);
            if self.args.budget_s > 0.0 && started.elapsed().as_secs_f64() > self.args.budget_s {
                line["skipped"] = json!("time budget spent");
                println!("{line}");
                continue;
            }
            let measured = catch_unwind(AssertUnwindSafe(|| {
                measure::<B>(&self.args, config, &device, launched)
            }));
            match measured {
                Ok(Ok(fields)) => merge(&mut line, fields),
                Ok(Err(error)) => line["error"] = json!(format!("{error:#}")),
                Err(panic) => {
                    let message = panic_message(&panic).unwrap_or_else(|| "unknown panic".into());
                    line["error"] = json!(format!("panicked: {message}"));
                }
            }
            println!("{line}");
            B::memory_cleanup(&device);
        }
    }
}

/// The fields that say what was run.
fn describe<B: Backend>(args: &Args, config: &StepConfig, device: &B::Device) -> Value {
    json!({
        "impl": "burn",
        "version": "burn 0.21.0",
        "backend": B::name(device),
        "device": args.device.to_string(),
        "fusion": cfg!(feature = "fusion"),
        "autotune": cfg!(feature = "autotune"),
        "autotune_level": std::env::var("CUBECL_AUTOTUNE_LEVEL").unwrap_or_else(|_| "default".into()),
        "precision": args.precision.to_string(),
        "config": config.to_string(),
        "kind": config.kind.name(),
        "teacher": config.teacher,
        "student": config.student,
        "batch": config.batch,
        "rows": config.rows(),
        "cpu_kernels": args.cpu_kernels.name(),
    })
}

/// Times `config` and returns the measured fields.
fn measure<B: Backend>(
    args: &Args,
    config: &StepConfig,
    device: &B::Device,
    launched: Instant,
) -> Result<Value> {
    let before = device_memory(args.device);
    let mut peak_reserved = before.map(|m| m.reserved);
    let mut sample = || {
        if let Some(now) = device_memory(args.device) {
            peak_reserved = Some(peak_reserved.unwrap_or(0).max(now.reserved));
        }
    };
    let (cpu_before, wall_before) = (process_cpu_seconds(), Instant::now());
    let times = time_config::<Autodiff<B>>(config, device, args.warmup, args.steps, &mut sample)?;
    let cpu_seconds = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let median = times.quantile_ms(0.5);
    Ok(json!({
        "warmup": args.warmup.max(1),
        "steps": times.steps_ms.len(),
        "step_ms": median,
        "step_ms_p10": times.quantile_ms(0.1),
        "step_ms_p90": times.quantile_ms(0.9),
        "images_per_s": config.batch as f64 / (median / 1e3),
        "first_step_s": times.first_step_s,
        "first_step_since_launch_s": (times.first_step_at - launched).as_secs_f64(),
        "memory_reserved_before_bytes": before.map(|m| m.reserved),
        "peak_memory_reserved_bytes": peak_reserved,
        "caller_in_pool": rayon::current_thread_index().is_some(),
        "freed_memory_kept": sskd::provenance::freed_memory_kept(),
        "cpu_utilisation": cpu_seconds.map(|cpu| cpu / wall_before.elapsed().as_secs_f64()),
    }))
}

fn merge(line: &mut Value, fields: Value) {
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
}

fn main() -> Result<()> {
    LAUNCHED.get_or_init(Instant::now);
    let args = Args::parse();
    args.verbosity.init();
    let mut configs = match (&args.set, args.configs.is_empty()) {
        (Some(set), _) => config_set(set)?,
        (None, true) => config_set("core")?,
        (None, false) => Vec::new(),
    };
    configs.extend(args.configs.iter().cloned());
    if args.list {
        configs.iter().for_each(|c| println!("{c}"));
        return Ok(());
    }
    args.cpu_kernels.select();
    let (device, precision) = (args.device, args.precision);
    Ok(dispatch(
        &device.into(),
        precision,
        Bench { args, configs },
    )?)
}
