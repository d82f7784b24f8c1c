//! JPEG decoders on the same files, on one thread: milliseconds per image to RGB for
//! - `image` (what `sskd_data::folders::decode_rgb` calls: zune-jpeg inside),
//! - zune-jpeg called directly (`sskd-jpeg`, a whole decode),
//! - jpeg-decoder (0.3, without its threads),
//! - `sskd-jpeg`'s region decoding of the windows `RandomResizedCrop(224, (0.08, 1),
//!   (3/4, 4/3))` draws (what the ImageNet training transforms decode).
//!
//! The files are read into memory first; the decoders take turns for `--rounds` rounds over
//! them, and the median round of each is printed as one JSON object.
//!
//! ```text
//! cargo run --release --example jpeg_decoders -- --data DIR [--images 300] [--rounds 5]
//! ```
//! `DIR` is an ImageNet-layout folder (its `train/` split), e.g. one `data_bench --generate`
//! wrote.

use std::hint::black_box;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::SeedableRng;
use serde_json::json;
use sskd::augment::recipes::imagenet_train_draws;
use sskd::data::folders::ImageFiles;
use sskd::data::window::jpeg_decoder as zune;
use sskd_jpeg::Region;

#[derive(Parser, Debug)]
struct Args {
    /// The ImageNet-layout folder (`train/<class>/*.JPEG`).
    #[arg(long)]
    data: PathBuf,
    /// Files to decode (spread over the folder's list).
    #[arg(long, default_value_t = 300, value_parser = sskd::cli::positive)]
    images: usize,
    /// Rounds each decoder runs, taking turns.
    #[arg(long, default_value_t = 5, value_parser = sskd::cli::positive)]
    rounds: usize,
}

/// One decoder: its name and how it decodes file `index` of the set.
type Decoder<'a> = (&'static str, Box<dyn Fn(usize) -> Result<usize> + 'a>);

/// The four decoders over `files` (their bytes) and `windows` (one training window each).
fn decoders<'a>(files: &'a [Vec<u8>], windows: &'a [Region]) -> Vec<Decoder<'a>> {
    vec![
        (
            "image",
            Box::new(move |i| {
                let image = image::load_from_memory(&files[i])?.into_rgb8();
                Ok(image.len())
            }),
        ),
        (
            "zune_jpeg_whole",
            Box::new(move |i| {
                Ok(zune(&files[i])
                    .decode()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .len())
            }),
        ),
        (
            "jpeg_decoder",
            Box::new(move |i| {
                let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(&files[i]));
                Ok(decoder.decode()?.len())
            }),
        ),
        (
            "sskd_jpeg_region",
            Box::new(move |i| {
                let mut decoder = zune(&files[i]);
                decoder
                    .decode_headers()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let mut pixels = vec![0; decoder.output_buffer_size().unwrap_or(0)];
                decoder
                    .decode_region_into(windows[i], &mut pixels)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(pixels.len())
            }),
        ),
    ]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let listed = ImageFiles::image_folder(&args.data.join("train"))?.files;
    if listed.is_empty() {
        bail!("{}: no images under train/", args.data.display());
    }
    let step = (listed.len() as f64 / args.images as f64).max(1.0);
    let paths: Vec<PathBuf> = (0..args.images.min(listed.len()))
        .map(|k| listed[(k as f64 * step) as usize].0.clone())
        .collect();
    let files = paths
        .iter()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let windows = files
        .iter()
        .zip(&paths)
        .map(|(bytes, path)| {
            let mut decoder = zune(bytes);
            decoder
                .decode_headers()
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
            let (width, height) = decoder.dimensions().unwrap_or((1, 1));
            let ((top, left, h, w), _) =
                imagenet_train_draws(width as u32, height as u32, &mut rng);
            Ok(Region::new(
                left as usize,
                top as usize,
                w as usize,
                h as usize,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let decoders = decoders(&files, &windows);
    let mut rounds_ms = vec![Vec::new(); decoders.len()];
    for _ in 0..args.rounds {
        for ((_, decode), rounds) in decoders.iter().zip(&mut rounds_ms) {
            let started = Instant::now();
            for (index, path) in paths.iter().enumerate() {
                black_box(decode(index).with_context(|| path.display().to_string())?);
            }
            rounds.push(1e3 * started.elapsed().as_secs_f64() / files.len() as f64);
        }
    }
    let median_ms = |rounds: &mut Vec<f64>| {
        rounds.sort_by(f64::total_cmp);
        rounds[rounds.len() / 2]
    };
    let per_image: serde_json::Map<String, serde_json::Value> = decoders
        .iter()
        .zip(&mut rounds_ms)
        .map(|((name, _), rounds)| (name.to_string(), json!(median_ms(rounds))))
        .collect();
    println!(
        "{}",
        json!({
            "data": args.data.display().to_string(), "images": files.len(),
            "rounds": args.rounds, "ms_per_image_median_round": per_image,
        })
    );
    Ok(())
}
