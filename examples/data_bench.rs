//! Throughput of the SSKD four-rotation CIFAR pipeline (decode from the in-memory dataset,
//! shared flip, four rotations, independent pad-4 crops, normalisation, batching), through the
//! prefetching loader, in source images per second and per core. Prints one JSON object.
//!
//! ```text
//! cargo run --release --example data_bench -- [--images 20000] [--threads N]
//! ```
//! The images are synthetic 32×32 CIFAR records (the pipeline's cost does not depend on the
//! pixel values).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use sskd::augment::loader::{load_epoch, LoaderConfig, Sample};
use sskd::augment::normalize::{normalize, CIFAR100_MEAN, CIFAR100_STD};
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::data::{LabeledImage, PlanarImages};

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Source images to push through.
    #[arg(long, default_value_t = 20_000, value_parser = sskd::cli::positive)]
    images: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = sskd::cli::positive)]
    threads: Option<usize>,
    /// Batch size (source images).
    #[arg(long, default_value_t = 64, value_parser = sskd::cli::positive)]
    batch: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let pixels: Vec<u8> = (0..args.images * 3072)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    let dataset = Arc::new(PlanarImages {
        pixels,
        labels: (0..args.images).map(|i| i % 100).collect(),
        height: 32,
        width: 32,
        classes: 100,
    });
    let transform = Arc::new(|item: LabeledImage, rng: &mut rand::rngs::StdRng| {
        let copies = sskd_rotations(&item.image, true, rng);
        let pixels = copies
            .iter()
            .flat_map(|copy| normalize(copy, CIFAR100_MEAN, CIFAR100_STD))
            .collect();
        Ok(Sample {
            pixels,
            shape: [4, 3, 32, 32],
            label: item.label,
        })
    });
    let start = Instant::now();
    let mut images = 0;
    for batch in load_epoch(dataset, transform, LoaderConfig::new(args.batch, 0), 0) {
        images += batch.map_err(anyhow::Error::msg)?.labels.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    let per_second = images as f64 / seconds;
    println!(
        "{}",
        serde_json::json!({
            "pipeline": "sskd four-rotation CIFAR (flip, rot90 x4, pad-4 crops, normalise, batch)",
            "images": images, "threads": threads, "seconds": seconds,
            "images_per_second": per_second, "images_per_second_per_core": per_second / threads as f64,
            "reference_pytorch_per_worker": 700.0, "ratio_to_reference_per_core": per_second / threads as f64 / 700.0
        })
    );
    Ok(())
}
