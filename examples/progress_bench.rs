//! What showing progress costs a training step: epochs of teacher steps (resnet8 on synthetic
//! CIFAR batches) run with no observer, with the line display and with the bar, interleaved
//! round by round in one process, and the observer's own cost per step measured alone. Prints
//! one JSON object: the median epoch time of each display and its ratio to none.
//!
//! ```text
//! cargo run --example progress_bench -- [--arch resnet8] [--batch 64] [--steps 10] [--rounds 5]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use sskd::cli::backend::{dispatch, main_device, BackendJob, DeviceChoice, Precision};
use sskd::models::create_model;
use sskd::train::epoch::teacher_epoch;
use sskd::train::metrics::{StepLog, StepObserver};
use sskd::train::progress::{ProgressConfig, ProgressMode, StageProgress};
use sskd_bench::step_bench::{synthetic_batch, StepConfig};

#[derive(Parser, Debug)]
#[command(about = "Time training epochs with and without the progress display; print JSON")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// The network trained.
    #[arg(long, default_value = "resnet8")]
    arch: String,
    /// Images per step.
    #[arg(long, default_value_t = 64, value_parser = sskd::cli::positive)]
    batch: usize,
    /// Steps per timed epoch.
    #[arg(long, default_value_t = 10, value_parser = sskd::cli::positive)]
    steps: usize,
    /// Timed epochs of each display (interleaved).
    #[arg(long, default_value_t = 5, value_parser = sskd::cli::positive)]
    rounds: usize,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

/// The displays compared: none, lines (the batch-log default), the bar.
const DISPLAYS: [(&str, Option<ProgressMode>); 3] = [
    ("none", None),
    ("lines", Some(ProgressMode::Lines)),
    ("bar", Some(ProgressMode::Bar)),
];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds the epoch observer takes per step, alone (a step log of five terms).
fn observer_ns_per_step(mode: ProgressMode) -> f64 {
    let config = ProgressConfig {
        mode,
        every: Duration::from_secs(30),
    };
    let mut progress = StageProgress::new(config, "bench", 1, Some(1_000_000));
    let mut observer = progress.epoch(1);
    let terms = ["ce", "kd", "tf", "ss", "total"].map(|t| (t.to_string(), 1.5));
    let step = StepLog {
        terms: BTreeMap::from(terms),
        images: 64,
        ..StepLog::default()
    };
    let calls = 200_000;
    let started = Instant::now();
    for _ in 0..calls {
        observer.step(&step);
    }
    started.elapsed().as_secs_f64() * 1e9 / calls as f64
}

struct Bench(Args);

impl BackendJob for Bench {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        type A<B> = Autodiff<B>;
        let args = self.0;
        let device = main_device(devices);
        let config: StepConfig = format!("teacher/{}/{}", args.arch, args.batch)
            .parse()
            .map_err(anyhow::Error::msg)?;
        let mut model = create_model::<A<B>>(&args.arch, 100, &device)?;
        let mut optimizer = sskd::train::sgd(0.9, 5e-4).init();
        let devices = [device.clone()];
        let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        // One untimed epoch first (allocations, kernel caches), then the rounds.
        for round in 0..=args.rounds {
            for (name, mode) in DISPLAYS {
                let batches = (0..args.steps).map(|s| Ok(synthetic_batch(&config, s as u64)));
                let progress_config = ProgressConfig {
                    mode: mode.unwrap_or(ProgressMode::Off),
                    every: Duration::from_secs(30),
                };
                let mut progress =
                    StageProgress::new(progress_config, "bench", 1, Some(args.steps));
                let mut meter = progress.epoch(1);
                let observer: &mut dyn StepObserver = match mode {
                    None => &mut (),
                    Some(_) => &mut meter,
                };
                let started = Instant::now();
                let (next, _) =
                    teacher_epoch(model, &mut optimizer, batches, observer, 0.05, &devices)?;
                model = next;
                if round > 0 {
                    times
                        .entry(name)
                        .or_default()
                        .push(started.elapsed().as_secs_f64());
                }
            }
        }
        let none = median(times["none"].clone());
        let mut result = serde_json::json!({
            "workload": format!("{} teacher epochs of {} steps, batch {}", args.arch, args.steps, args.batch),
            "backend": B::name(&device), "rounds": args.rounds,
        });
        for (name, _) in DISPLAYS {
            let seconds = median(times[name].clone());
            result[name] = serde_json::json!({
                "median_epoch_seconds": seconds,
                "ratio_to_none": seconds / none,
            });
        }
        result["observer_ns_per_step"] = serde_json::json!({
            "lines": observer_ns_per_step(ProgressMode::Lines),
            "bar": observer_ns_per_step(ProgressMode::Bar),
        });
        println!("{result}");
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let device = args.device;
    dispatch(&device.into(), Precision::F32, Bench(args))?
}
