//! Builds every architecture of the zoo (or the ones named), runs one batch through it on the
//! chosen device and prints its parameter count, embedding width, feature-map shapes and the
//! forward time.
//!
//! ```text
//! cargo run --example zoo                       # every model, CPU
//! cargo run --example zoo -- wrn_40_2 ShuffleV1 --batch 8
//! ```

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{backend::Backend, Tensor};
use clap::Parser;
use sskd::cli::backend::{dispatch, main_device, BackendJob, DeviceChoice, Precision};
use sskd::models::{create_model, model_names, trainable_parameter_count};

#[derive(Parser, Debug)]
#[command(about = "List the model zoo: parameters, embedding width, feature shapes, forward time")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Architectures to build (default: all registered ones).
    names: Vec<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 2, value_parser = sskd::cli::positive)]
    batch: usize,
    /// Number of classes (ImageNet ResNets `resnet18/34/50` use 1000 unless this is given).
    #[arg(long)]
    num_classes: Option<usize>,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

struct Zoo(Args);

impl BackendJob for Zoo {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        let device = main_device(devices);
        let args = self.0;
        let names: Vec<String> = if args.names.is_empty() {
            model_names().iter().map(|n| n.to_string()).collect()
        } else {
            args.names.clone()
        };
        println!(
            "{:<14} {:>12} {:>6} {:>9}  feature maps (C×H×W)",
            "model", "params", "d", "fwd ms"
        );
        for name in names {
            let imagenet = ["resnet18", "resnet34", "resnet50"].contains(&name.as_str());
            let classes = args
                .num_classes
                .unwrap_or(if imagenet { 1000 } else { 100 });
            let size = if imagenet { 224 } else { 32 };
            let model = create_model::<B>(&name, classes, &device)?;
            let input = Tensor::<B, 4>::zeros([args.batch, 3, size, size], &device);
            let start = Instant::now();
            let output = model.forward(input);
            let _ = output.logits.clone().into_data();
            let millis = start.elapsed().as_secs_f64() * 1e3;
            let shapes: Vec<String> = output
                .features
                .iter()
                .map(|f| {
                    let [_, c, h, w] = f.dims();
                    format!("{c}×{h}×{w}")
                })
                .collect();
            println!(
                "{:<14} {:>12} {:>6} {:>9.1}  {}",
                name,
                trainable_parameter_count(&model),
                model.embedding_dim(),
                millis,
                shapes.join(", ")
            );
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let device = args.device;
    dispatch(&device.into(), Precision::F32, Zoo(args))?
}
