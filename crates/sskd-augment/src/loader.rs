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
        Self {
            pixels: copies
                .iter()
                .flat_map(|copy| crate::pipeline::normalize(copy, mean, std))
                .collect(),
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
        }
    }
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
/// sample whose item is missing or whose transform fails ends the epoch with that error.
pub fn load_epoch<I, D, F>(
    dataset: Arc<D>,
    transform: Arc<F>,
    config: LoaderConfig,
    epoch: u64,
) -> Receiver<Result<HostBatch, String>>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
    F: Fn(I, &mut StdRng) -> Result<Sample, String> + Send + Sync + ?Sized + 'static,
{
    let (sender, receiver) = sync_channel(config.prefetch.max(1));
    std::thread::spawn(move || {
        let order = epoch_order(dataset.len(), &config, epoch);
        for chunk in order.chunks(config.batch_size.max(1)) {
            if config.drop_last && chunk.len() < config.batch_size {
                break;
            }
            let samples: Result<Vec<Sample>, String> = chunk
                .par_iter()
                .map(|&index| {
                    let item = dataset
                        .get(index)
                        .ok_or_else(|| format!("dataset item {index} could not be read"))?;
                    transform(item, &mut sample_rng(config.seed, epoch, index as u64))
                })
                .collect();
            let batch = samples.and_then(|samples| assemble(&samples, chunk));
            let failed = batch.is_err();
            if sender.send(batch).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Concatenates samples of one shape into a batch.
fn assemble(samples: &[Sample], indices: &[usize]) -> Result<HostBatch, String> {
    let shape = samples.first().map(|s| s.shape).ok_or("empty batch")?;
    if let Some((position, odd)) = samples.iter().enumerate().find(|(_, s)| s.shape != shape) {
        return Err(format!(
            "sample {} has shape {:?}, the batch {:?}",
            indices[position], odd.shape, shape
        ));
    }
    let mut pixels = Vec::with_capacity(samples.len() * samples[0].pixels.len());
    for sample in samples {
        pixels.extend_from_slice(&sample.pixels);
    }
    Ok(HostBatch {
        pixels,
        shape: [samples.len() * shape[0], shape[1], shape[2], shape[3]],
        labels: samples.iter().map(|s| s.label as i64).collect(),
        indices: indices.iter().map(|&i| i as i64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;
    use rand::Rng;

    fn noisy(item: usize, rng: &mut StdRng) -> Result<Sample, String> {
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
    fn a_failing_sample_ends_the_epoch_with_its_error() {
        let dataset = Arc::new(InMemDataset::new((0..6usize).collect::<Vec<_>>()));
        let failing = |item: usize, _: &mut StdRng| {
            if item == 4 {
                Err("bad pixels in item 4".to_string())
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
        assert!(results[2].as_ref().unwrap_err().contains("item 4"));
    }
}
