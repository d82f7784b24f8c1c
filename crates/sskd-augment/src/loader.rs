//! A multi-threaded, prefetching batch loader with a fixed order per seed.
//!
//! A producer thread prepares batches ahead of the training step: it reads the items of a
//! batch, transforms them in parallel (rayon) with per-sample generators derived from
//! (seed, epoch, dataset index), and hands finished host batches over a bounded channel. The
//! order of samples, and every pixel, depend only on the seed and the epoch.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::rng::sample_rng;

/// Why a transform could not make a sample of an item (an image that does not decode, a file
/// that cannot be read): any error.
pub type SampleError = Box<dyn std::error::Error + Send + Sync>;

/// A transform of a dataset item into a [`Sample`], drawing from the sample's generator.
pub trait SampleTransform<I>:
    Fn(I, &mut StdRng) -> Result<Sample, SampleError> + Send + Sync
{
}

impl<I, F> SampleTransform<I> for F where
    F: Fn(I, &mut StdRng) -> Result<Sample, SampleError> + Send + Sync + ?Sized
{
}

/// Why the loader could not make a batch.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dataset has no item at an index of its range.
    #[error("dataset item {index} could not be read")]
    MissingItem {
        /// The dataset index.
        index: usize,
    },
    /// The transform of a sample failed.
    #[error("sample {index}: {source}")]
    Transform {
        /// The dataset index.
        index: usize,
        /// The transform's error.
        #[source]
        source: SampleError,
    },
    /// Samples of different shapes in one batch.
    #[error("sample {index} has shape {shape:?}, the batch {batch:?}")]
    Shape {
        /// The dataset index of the odd sample.
        index: usize,
        /// Its shape.
        shape: [usize; 4],
        /// The batch's (its first sample's).
        batch: [usize; 4],
    },
    /// A batch of no samples.
    #[error("empty batch")]
    Empty,
}

/// One transformed sample: planar floats of `copies × C × H × W` and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `copies · channels · height · width` floats.
    pub pixels: Vec<f32>,
    /// `[copies, channels, height, width]`.
    pub shape: [usize; 4],
    /// Class label.
    pub label: usize,
}

impl Sample {
    /// Normalised copies of one image (all of one size) as a sample: `[copies, 3, H, W]`.
    pub fn from_images(
        copies: &[image::RgbImage],
        mean: [f32; 3],
        std: [f32; 3],
        label: usize,
    ) -> Self {
        let (width, height) = copies.first().map_or((0, 0), |c| c.dimensions());
        let copy_len = 3 * width as usize * height as usize;
        let mut pixels = crate::memory::pixel_buffer(copies.len() * copy_len);
        for (copy, planes) in copies.iter().zip(pixels.chunks_exact_mut(copy_len.max(1))) {
            crate::normalize::normalize_into(copy, mean, std, planes);
        }
        Self {
            pixels,
            shape: [copies.len(), 3, height as usize, width as usize],
            label,
        }
    }
}

/// A batch on the host, ready to become tensors.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// `[samples · copies, C, H, W]` floats (row `copies·i + k` is copy `k` of sample `i`).
    pub pixels: Vec<f32>,
    /// The tensor shape of `pixels`.
    pub shape: [usize; 4],
    /// One label per sample.
    pub labels: Vec<i64>,
    /// Dataset indices of the samples.
    pub indices: Vec<i64>,
}

impl HostBatch {
    /// Images `[N·copies, C, H, W]`, labels `[N]` and indices `[N]` on `device`.
    pub fn to_tensors<B: Backend>(
        self,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 1, Int>, Tensor<B, 1, Int>) {
        let count = self.labels.len();
        (
            Tensor::from_data(TensorData::new(self.pixels, self.shape), device),
            Tensor::from_data(TensorData::new(self.labels, [count]), device),
            Tensor::from_data(TensorData::new(self.indices, [count]), device),
        )
    }
}

/// Loader settings.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle each epoch (seeded).
    pub shuffle: bool,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
    /// The run's seed.
    pub seed: u64,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// `(part, parts)`: this process loads part `part` of every batch (the samples at
    /// positions `part`, `part + parts`, …), for training across `parts` machines; a last
    /// batch smaller than `parts` is dropped so that every part has as many batches.
    /// `(0, 1)` loads whole batches.
    pub part: (usize, usize),
    /// The first batch of the epoch to load (0: all of them): the batches before it are
    /// skipped, neither read nor transformed, so that an epoch resumed after a checkpoint
    /// inside it gets the same later batches as the uninterrupted epoch.
    pub first_batch: usize,
}

impl LoaderConfig {
    /// Shuffled batches of `batch_size`, keeping the last partial batch, two batches ahead.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed,
            prefetch: 2,
            part: (0, 1),
            first_batch: 0,
        }
    }
}

/// The dataset indices of `chunk` (one batch of the epoch order) that `part` loads; `None`
/// when the batch must be dropped.
fn part_of(chunk: &[usize], config: &LoaderConfig) -> Option<Vec<usize>> {
    let (part, parts) = config.part;
    let parts = parts.max(1);
    if (config.drop_last && chunk.len() < config.batch_size) || chunk.len() < parts {
        return None;
    }
    Some(chunk.iter().copied().skip(part).step_by(parts).collect())
}

/// The number of batches [`load_epoch`] makes of `len` samples with `config` (this part's
/// batches: a last batch too small to share among the parts, or short with `drop_last`, is
/// dropped).
pub fn batches_per_epoch(len: usize, config: &LoaderConfig) -> usize {
    let (size, parts) = (config.batch_size.max(1), config.part.1.max(1));
    if size < parts {
        return 0;
    }
    let (full, rest) = (len / size, len % size);
    let last_kept = rest > 0 && !config.drop_last && rest >= parts;
    full + usize::from(last_kept)
}

/// The order of dataset indices in `epoch`.
pub fn epoch_order(len: usize, config: &LoaderConfig, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if config.shuffle {
        order.shuffle(&mut StdRng::seed_from_u64(
            config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED,
        ));
    }
    order
}

/// Starts preparing the batches of `epoch`; iterate the receiver to get them in order. A
/// sample whose item is missing or whose transform fails ends the epoch with that error (any
/// error, a message included: `Err("…".into())`).
pub fn load_epoch<I, D, F>(
    dataset: Arc<D>,
    transform: Arc<F>,
    config: LoaderConfig,
    epoch: u64,
) -> Receiver<Result<HostBatch, LoadError>>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
    F: SampleTransform<I> + ?Sized + 'static,
{
    let (sender, receiver) = sync_channel(config.prefetch.max(1));
    std::thread::spawn(move || {
        let order = epoch_order(dataset.len(), &config, epoch);
        for chunk in order
            .chunks(config.batch_size.max(1))
            .skip(config.first_batch)
        {
            let Some(chunk) = part_of(chunk, &config) else {
                break;
            };
            let chunk = chunk.as_slice();
            let samples: Result<Vec<Sample>, LoadError> = chunk
                .par_iter()
                .map(|&index| {
                    let item = dataset.get(index).ok_or(LoadError::MissingItem { index })?;
                    let mut rng = sample_rng(config.seed, epoch, index as u64);
                    transform(item, &mut rng)
                        .map_err(|source| LoadError::Transform { index, source })
                })
                .collect();
            let batch = samples.and_then(|samples| assemble(samples, chunk));
            let failed = batch.is_err();
            if sender.send(batch).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Concatenates samples of one shape into a batch, copying them in parallel, and keeps their
/// buffers for the next samples.
fn assemble(samples: Vec<Sample>, indices: &[usize]) -> Result<HostBatch, LoadError> {
    let shape = samples.first().map(|s| s.shape).ok_or(LoadError::Empty)?;
    if let Some((position, odd)) = samples.iter().enumerate().find(|(_, s)| s.shape != shape) {
        return Err(LoadError::Shape {
            index: indices[position],
            shape: odd.shape,
            batch: shape,
        });
    }
    let sample_len = shape.iter().product::<usize>();
    let labels: Vec<i64> = samples.iter().map(|s| s.label as i64).collect();
    // Zeroed by the system as the copies first touch its pages, in parallel.
    let mut pixels = crate::memory::zeroed_floats(samples.len() * sample_len);
    pixels
        .par_chunks_mut(sample_len.max(1))
        .zip(samples.into_par_iter())
        .for_each(|(slot, sample)| {
            slot.copy_from_slice(&sample.pixels);
            crate::memory::recycle(sample.pixels);
        });
    Ok(HostBatch {
        shape: [labels.len() * shape[0], shape[1], shape[2], shape[3]],
        pixels,
        labels,
        indices: indices.iter().map(|&i| i as i64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;
    use rand::Rng;

    fn noisy(item: usize, rng: &mut StdRng) -> Result<Sample, SampleError> {
        Ok(Sample {
            pixels: vec![item as f32, rng.random::<f32>()],
            shape: [1, 1, 1, 2],
            label: item % 3,
        })
    }

    fn collect(threads: usize) -> Vec<HostBatch> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let dataset = Arc::new(InMemDataset::new((0..10usize).collect::<Vec<_>>()));
            load_epoch(dataset, Arc::new(noisy), LoaderConfig::new(4, 7), 1)
                .into_iter()
                .map(Result::unwrap)
                .collect()
        })
    }

    #[test]
    fn the_batch_count_is_what_an_epoch_loads() {
        let data = Arc::new(InMemDataset::new((0..10).collect::<Vec<usize>>()));
        let transform = Arc::new(noisy);
        for (batch_size, drop_last, part) in [
            (3, false, (0, 1)),
            (3, true, (0, 1)),
            (5, false, (0, 1)),
            (4, false, (1, 3)),
            (3, false, (0, 2)),
            (2, false, (0, 3)),
        ] {
            let config = LoaderConfig {
                drop_last,
                part,
                ..LoaderConfig::new(batch_size, 0)
            };
            let loaded = load_epoch(data.clone(), transform.clone(), config, 0)
                .into_iter()
                .count();
            assert_eq!(batches_per_epoch(10, &config), loaded, "{config:?}");
        }
    }

    #[test]
    fn an_epoch_started_at_a_later_batch_gets_the_whole_epochs_later_batches() {
        let data = Arc::new(InMemDataset::new((0..10).collect::<Vec<usize>>()));
        let transform = Arc::new(noisy);
        let epoch = |first_batch: usize| -> Vec<(Vec<f32>, Vec<i64>)> {
            let config = LoaderConfig {
                first_batch,
                ..LoaderConfig::new(3, 7)
            };
            load_epoch(data.clone(), transform.clone(), config, 2)
                .into_iter()
                .map(|batch| batch.map(|b| (b.pixels, b.indices)).unwrap())
                .collect()
        };
        let whole = epoch(0);
        assert_eq!(whole.len(), 4);
        assert_eq!(epoch(2), whole[2..]);
        assert!(epoch(4).is_empty());
    }

    #[test]
    fn same_seed_same_batches_whatever_the_thread_count() {
        let one = collect(1);
        let four = collect(4);
        assert_eq!(one.len(), 3);
        assert_eq!(
            one.iter().map(|b| b.labels.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        for (a, b) in one.iter().zip(&four) {
            assert_eq!((&a.pixels, &a.indices), (&b.pixels, &b.indices));
        }
        let mut seen: Vec<i64> = one.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn parts_split_every_batch_and_drop_a_last_batch_too_small_to_split() {
        let dataset = Arc::new(InMemDataset::new((0..11usize).collect::<Vec<_>>()));
        let indices = |part: usize| -> Vec<Vec<i64>> {
            let config = LoaderConfig {
                part: (part, 3),
                ..LoaderConfig::new(5, 9)
            };
            load_epoch(dataset.clone(), Arc::new(noisy), config, 1)
                .into_iter()
                .map(|b| b.unwrap().indices)
                .collect()
        };
        let parts: Vec<Vec<Vec<i64>>> = (0..3).map(indices).collect();
        // Batches of 5, 5 and 1: the last is dropped (fewer samples than parts).
        assert!(parts.iter().all(|p| p.len() == 2), "{parts:?}");
        assert_eq!(
            parts.iter().map(|p| p[0].len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let order = epoch_order(11, &LoaderConfig::new(5, 9), 1);
        let mut first_batch: Vec<i64> = parts.iter().flat_map(|p| p[0].clone()).collect();
        first_batch.sort();
        let mut expected: Vec<i64> = order[..5].iter().map(|&i| i as i64).collect();
        expected.sort();
        assert_eq!(first_batch, expected);
    }

    #[test]
    fn a_failing_sample_ends_the_epoch_with_its_error() {
        let dataset = Arc::new(InMemDataset::new((0..6usize).collect::<Vec<_>>()));
        let failing = |item: usize, _: &mut StdRng| {
            if item == 4 {
                Err("bad pixels in item 4".into())
            } else {
                Ok(Sample {
                    pixels: vec![0.0],
                    shape: [1, 1, 1, 1],
                    label: 0,
                })
            }
        };
        let results: Vec<_> = load_epoch(
            dataset,
            Arc::new(failing),
            LoaderConfig {
                shuffle: false,
                ..LoaderConfig::new(2, 0)
            },
            0,
        )
        .into_iter()
        .collect();
        assert_eq!(results.len(), 3);
        assert!(results[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("item 4"));
    }
}
