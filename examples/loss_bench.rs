//! Times every loss's forward + backward at the paper's shapes on the backend this build has,
//! and prints one JSON object per workload (median of `--runs` after `--warmup` runs).
//!
//! ```text
//! cargo run --release --example loss_bench -- [--device cpu|cuda|wgpu] [--runs 20] [NAME …]
//! ```

use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use sskd::cli::backend::{dispatch, main_device, BackendJob, DeviceChoice, Precision};
use sskd_bench::loss_workloads::{workload_names, LossStep};

#[derive(Parser, Debug)]
#[command(about = "Time each distillation loss (forward + backward) and print JSON lines")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Workloads to run (default: all).
    names: Vec<String>,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Timed runs per workload.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
}

struct Bench(Args);

impl BackendJob for Bench {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        let device = main_device(devices);
        let args = self.0;
        let names = if args.names.is_empty() {
            workload_names()
        } else {
            args.names.clone()
        };
        for name in names {
            let step = LossStep::<Autodiff<B>>::new(&name, &device)?;
            for _ in 0..args.warmup {
                step.step();
            }
            let mut times: Vec<f64> = (0..args.runs.max(1))
                .map(|_| {
                    let start = Instant::now();
                    step.step();
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(|a, b| a.total_cmp(b));
            let median = times[times.len() / 2];
            println!(
                "{}",
                serde_json::json!({"workload": name, "backend": B::name(&device), "median_ms": median, "runs": times.len()})
            );
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let device = args.device;
    dispatch(&device.into(), Precision::F32, Bench(args))?
}
