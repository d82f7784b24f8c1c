//! Applies a named transform to an image file with a given seed and writes the result(s) as
//! PNG, so a person can look at what the network sees.
//!
//! ```text
//! cargo run --example augment -- --input cat.jpg --transform sskd --seed 3 --out out/
//! ```
//! Transforms: `cifar_train`, `sskd` (the four rotated copies), `sskd_test`, `pool` (the
//! supplementary's policy: the image and three pool-transformed copies), `color_drop`,
//! `crop_resize`, `color_jitter`, `rotation`, `imagenet_train`, `imagenet_val`, `jigsaw`,
//! `exemplar`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use image::RgbImage;
use sskd::augment::recipes::{cifar_train, imagenet_train, imagenet_val};
use sskd::augment::rng::sample_rng;
use sskd::augment::ss_tasks::{
    apply_pool_transform, exemplar, jigsaw_task, rotation_task, sskd_pool, sskd_rotations,
    PoolTransform,
};
use sskd::data::folders::decode_rgb;

#[derive(Parser, Debug)]
#[command(about = "Apply an augmentation to an image and write PNGs")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Input image (JPEG or PNG).
    #[arg(long)]
    input: PathBuf,
    /// Transform name.
    #[arg(long, default_value = "sskd")]
    transform: String,
    /// Seed of the random draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "augmented")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let image = decode_rgb(&args.input)?;
    let mut rng = sample_rng(args.seed, 0, 0);
    let outputs: Vec<(String, RgbImage)> = match args.transform.as_str() {
        "cifar_train" => vec![("cifar_train".into(), cifar_train(&image, &mut rng))],
        "sskd" | "sskd_test" => sskd_rotations(&image, args.transform == "sskd", &mut rng)
            .into_iter()
            .enumerate()
            .map(|(k, copy)| (format!("rotation_{}", 90 * k), copy))
            .collect(),
        "pool" => sskd_pool(&image, &mut rng)
            .into_iter()
            .enumerate()
            .map(|(k, copy)| (format!("copy_{k}"), copy))
            .collect(),
        "color_drop" => vec![(
            "color_drop".into(),
            apply_pool_transform(&image, PoolTransform::ColorDrop, &mut rng),
        )],
        "crop_resize" => vec![(
            "crop_resize".into(),
            apply_pool_transform(&image, PoolTransform::CropResize, &mut rng),
        )],
        "color_jitter" => vec![(
            "color_jitter".into(),
            apply_pool_transform(&image, PoolTransform::ColorJitter, &mut rng),
        )],
        "rotation" => rotation_task(&image)
            .into_iter()
            .map(|(copy, label)| (format!("rotation_label_{label}"), copy))
            .collect(),
        "imagenet_train" => vec![("imagenet_train".into(), imagenet_train(&image, &mut rng))],
        "imagenet_val" => vec![("imagenet_val".into(), imagenet_val(&image))],
        "jigsaw" => {
            let (tiles, label) = jigsaw_task(&image, &mut rng);
            vec![(format!("jigsaw_label_{label}"), tiles)]
        }
        "exemplar" => vec![("exemplar".into(), exemplar(&image, &mut rng))],
        other => bail!("unknown transform `{other}`; see --help for the list"),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, output) in outputs {
        let path = args.out.join(format!("{name}.png"));
        output
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
