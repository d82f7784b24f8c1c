//! Throughput of the SSKD training input pipelines through the prefetching loader the trainer
//! uses, in source images per second and per core. Prints one JSON object.
//!
//! ```text
//! # CIFAR (the default): synthetic 32×32 records, shared flip, four rotations, independent
//! # pad-4 crops, normalisation, batching
//! cargo run --release --example data_bench -- [--images 20000] [--threads N]
//! # ImageNet: JPEG decode, RandomResizedCrop(224, (0.08, 1), (3/4, 4/3)), flip, four
//! # rotations, normalisation, batching, over an ImageNet-layout folder (its train/ split);
//! # --generate writes a synthetic one first (ImageNet's sizes, JPEG quality 90)
//! cargo run --release --example data_bench -- --pipeline imagenet --data DIR \
//!     [--generate 50 --classes 20] [--images 1000] [--threads N] [--decode window|whole]
//! ```
//! The ImageNet figures also time each stage of the pipeline on one thread (`stages_ms`:
//! `decode`, `crop_resize`, `flip_rotations_normalise`, per source image, over 64 of the
//! files), so that a gap to torchvision (`tools/bench_imagenet_pipeline_torch.py`, the same
//! split) can be told stage by stage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::data::dataset::Dataset;
use clap::{Parser, ValueEnum};
use rand::SeedableRng;
use serde_json::{json, Value};
use sskd::augment::loader::{load_epoch, LoaderConfig, Sample};
use sskd::augment::normalize::{normalize, CIFAR100_MEAN, CIFAR100_STD};
use sskd::augment::resize::resize_window_bilinear;
use sskd::augment::ss_tasks::sskd_rotations;
use sskd::data::folders::ImageFiles;
use sskd::data::{LabeledImage, PlanarImages};
use sskd::imagenet::{
    decode_train_crop, rotations_sample, write_synthetic_folder, Decoding, ImageFolderFiles,
    ImageNetTransforms,
};

/// Which pipeline to measure.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Pipeline {
    /// SSKD's four-rotation CIFAR pipeline on synthetic 32×32 records.
    Cifar,
    /// SSKD's four-rotation ImageNet pipeline on the JPEG files of `--data`.
    Imagenet,
}

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// The pipeline.
    #[arg(long, value_enum, default_value = "cifar")]
    pipeline: Pipeline,
    /// The ImageNet-layout folder (`train/<class>/*.JPEG`), for `--pipeline imagenet`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Write a synthetic ImageNet-layout folder at --data first, with this many training
    /// images per class (when it has no train/ yet).
    #[arg(long, value_parser = sskd::cli::positive)]
    generate: Option<usize>,
    /// Classes of a generated folder.
    #[arg(long, default_value_t = 10, value_parser = sskd::cli::positive)]
    classes: usize,
    /// Source images to push through (ImageNet: at most the folder's).
    #[arg(long, default_value_t = 20_000, value_parser = sskd::cli::positive)]
    images: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = sskd::cli::positive)]
    threads: Option<usize>,
    /// Batch size (source images).
    #[arg(long, default_value_t = 64, value_parser = sskd::cli::positive)]
    batch: usize,
    /// The ImageNet crop size.
    #[arg(long, default_value_t = 224, value_parser = sskd::cli::positive)]
    size: usize,
    /// How the ImageNet pipeline decodes its JPEGs: as far as the crop window reaches (the
    /// default) or whole (the same samples; for comparison).
    #[arg(long, value_enum, default_value = "window")]
    decode: DecodeArg,
}

/// `--decode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DecodeArg {
    /// Only as far as the crop window reaches.
    Window,
    /// The whole image.
    Whole,
}

impl From<DecodeArg> for Decoding {
    fn from(decode: DecodeArg) -> Self {
        match decode {
            DecodeArg::Window => Decoding::Window,
            DecodeArg::Whole => Decoding::Whole,
        }
    }
}

/// Source images through `load_epoch` of `dataset` with `transform`, and the seconds it took.
fn run_loader<I, D, F>(dataset: Arc<D>, transform: Arc<F>, batch: usize) -> Result<(usize, f64)>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
    F: sskd::augment::loader::SampleTransform<I> + ?Sized + 'static,
{
    let start = Instant::now();
    let mut images = 0;
    for loaded in load_epoch(dataset, transform, LoaderConfig::new(batch, 0), 0) {
        images += loaded?.labels.len();
    }
    Ok((images, start.elapsed().as_secs_f64()))
}

/// The CIFAR pipeline's figures.
fn cifar(args: &Args) -> Result<Value> {
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
    let (images, seconds) = run_loader(dataset, transform, args.batch)?;
    Ok(json!({
        "pipeline": "sskd four-rotation CIFAR (flip, rot90 x4, pad-4 crops, normalise, batch)",
        "images": images, "seconds": seconds,
        "reference_pytorch_per_worker": 700.0,
    }))
}

/// At most `count` of `files`, spread evenly over the list (so over its classes).
fn spread(files: &ImageFiles, count: usize) -> ImageFiles {
    let mut spread = files.clone();
    if files.files.len() > count {
        let step = files.files.len() as f64 / count as f64;
        spread.files = (0..count)
            .map(|k| files.files[(k as f64 * step) as usize].clone())
            .collect();
    }
    spread
}

/// Milliseconds per source image of each stage of the ImageNet training transform, on this
/// thread, over `files`: decoding (`decoding`: the window drawn from the image's size first),
/// the resized crop, and the flip, four rotations and normalisation (one pass).
fn imagenet_stages(files: &ImageFiles, size: u32, decoding: Decoding) -> Result<Value> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut seconds = [0.0f64; 3];
    let mut lap =
        |stage: usize, started: Instant| seconds[stage] += started.elapsed().as_secs_f64();
    for (path, _) in &files.files {
        let started = Instant::now();
        let (image, window, mirror) = decode_train_crop(path, decoding, &mut rng)?;
        lap(0, started);
        let started = Instant::now();
        let crop = resize_window_bilinear(&image, window, size, size);
        lap(1, started);
        let started = Instant::now();
        std::hint::black_box(rotations_sample(&crop, mirror, 0));
        lap(2, started);
    }
    let per_image = |s: f64| 1e3 * s / files.files.len().max(1) as f64;
    Ok(json!({
        "decode": per_image(seconds[0]), "crop_resize": per_image(seconds[1]),
        "flip_rotations_normalise": per_image(seconds[2]),
    }))
}

/// The ImageNet pipeline's figures over `--data` (generated first with `--generate`).
fn imagenet(args: &Args) -> Result<Value> {
    let Some(root) = &args.data else {
        bail!("--pipeline imagenet needs --data DIR (an ImageNet layout, or --generate one)");
    };
    if let Some(per_class) = args.generate {
        if !root.join("train").is_dir() {
            write_synthetic_folder(root, args.classes, per_class, (90, 0))
                .with_context(|| format!("generating {}", root.display()))?;
        }
    }
    let files = spread(&ImageFiles::image_folder(&root.join("train"))?, args.images);
    let size = u32::try_from(args.size).context("--size")?;
    let decoding = Decoding::from(args.decode);
    let stages = imagenet_stages(&spread(&files, 64), size, decoding)?;
    let transform = ImageNetTransforms::with_decoding(size, decoding).rotations_train;
    let (images, seconds) = run_loader(Arc::new(ImageFolderFiles(files)), transform, args.batch)?;
    Ok(json!({
        "pipeline": format!("sskd four-rotation ImageNet (JPEG decode, RandomResizedCrop({size}), \
                     flip, rot90 x4, normalise, batch) over {}", root.display()),
        "images": images, "seconds": seconds, "stages_ms": stages,
        "decode": format!("{decoding:?}").to_lowercase(),
    }))
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
    let mut figures = match args.pipeline {
        Pipeline::Cifar => cifar(&args)?,
        Pipeline::Imagenet => imagenet(&args)?,
    };
    let images = figures["images"].as_f64().unwrap_or(0.0);
    let per_second = images / figures["seconds"].as_f64().unwrap_or(1.0).max(1e-9);
    if let Value::Object(fields) = &mut figures {
        fields.insert("threads".into(), threads.into());
        fields.insert("images_per_second".into(), per_second.into());
        let per_core = per_second / threads as f64;
        fields.insert("images_per_second_per_core".into(), per_core.into());
        if let Some(reference) = fields
            .get("reference_pytorch_per_worker")
            .and_then(Value::as_f64)
        {
            fields.insert(
                "ratio_to_reference_per_core".into(),
                (per_core / reference).into(),
            );
        }
    }
    println!("{figures}");
    Ok(())
}
