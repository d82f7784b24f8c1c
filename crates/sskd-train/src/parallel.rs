//! Data parallelism over the devices of one machine.
//!
//! With one device a training step is the plain one: forward, backward, optimiser step. With
//! several, [`train_step`] splits the batch by source images into one shard per device (the
//! four rotations of an image stay together), and in one thread per device runs the shard's
//! forward and backward on a replica of the model ([`Module::fork`]). Each shard's loss is
//! weighted by its share of the batch, so the summed gradients are those of the whole batch's
//! mean loss; Burn's [`MultiGradientsParams`] sums them and [`Optimizer::step_multi`] applies
//! them once. This is PyTorch `DistributedDataParallel` within one process: batch-level parts
//! of a loss (SSKD's similarity matrix and error ranking, batch-norm statistics) are computed
//! per shard, and the running statistics of batch norm become the mean of the shards' updates.
//!
//! Across machines (feature `collective`), [`crate::nodes`] sums the gradients of several such
//! processes with Burn 0.21's `burn-collective`.

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend, Device as _};
use burn::tensor::Tensor;
use sskd_augment::loader::HostBatch;

use crate::metrics::StepLog;
use crate::{SetupError, TrainError};

/// The result of one shard's forward: the loss to differentiate (`[1]`) and its log.
pub struct ShardOutput<B: Backend> {
    /// The loss of the shard (mean over its images).
    pub loss: Tensor<B, 1>,
    /// What to log.
    pub log: StepLog,
}

/// The forward of one shard: `step(model, shard, k)` runs `shard` through `model` on device
/// `k` and returns its loss and log. Any such closure is one.
pub trait ShardStep<B: AutodiffBackend, M>:
    Fn(&M, HostBatch, usize) -> Result<ShardOutput<B>, TrainError> + Sync
{
}

impl<B: AutodiffBackend, M, F> ShardStep<B, M> for F where
    F: Fn(&M, HostBatch, usize) -> Result<ShardOutput<B>, TrainError> + Sync
{
}

/// Splits `batch` into at most `parts` batches of consecutive source images, as equal as
/// possible (the first ones one image larger); every copy of an image stays with it.
pub fn split_batch(batch: HostBatch, parts: usize) -> Vec<HostBatch> {
    let samples = batch.labels.len();
    let parts = parts.clamp(1, samples.max(1));
    if parts == 1 {
        return vec![batch];
    }
    let rows_per_sample = batch.shape[0] / samples;
    let floats_per_sample = batch.pixels.len() / samples;
    let mut shards = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 0..parts {
        let size = samples / parts + usize::from(part < samples % parts);
        let end = start + size;
        shards.push(HostBatch {
            pixels: batch.pixels[start * floats_per_sample..end * floats_per_sample].to_vec(),
            shape: [
                size * rows_per_sample,
                batch.shape[1],
                batch.shape[2],
                batch.shape[3],
            ],
            labels: batch.labels[start..end].to_vec(),
            indices: batch.indices[start..end].to_vec(),
        });
        start = end;
    }
    shards
}

/// Checks that a method can be trained data-parallel: a memory bank indexed by dataset
/// sample (CRD) is updated by each shard (and each node) separately, and the replicas' updates
/// cannot be merged by averaging.
pub fn check_parallel_method(needs_sample_indices: bool, devices: usize) -> Result<(), TrainError> {
    if needs_sample_indices && (devices > 1 || over_nodes()) {
        let over = if over_nodes() {
            "several nodes".to_string()
        } else {
            format!("{devices} devices")
        };
        return Err(SetupError::MemoryBankInParallel { over }.into());
    }
    Ok(())
}

/// One optimisation step of `model` on `batch` over `devices` (the first is the main one):
/// the [`Execution`] of `devices` (see [`Execution::of`]) runs it. Returns the updated model
/// and the step's log ([`TOTAL`](sskd_losses::TOTAL) included).
pub fn train_step<B, M, O, F>(
    model: M,
    optimizer: &mut O,
    lr: f64,
    batch: HostBatch,
    devices: &[B::Device],
    shard_step: &F,
) -> Result<(M, StepLog), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    F: ShardStep<B, M>,
{
    Execution::<B>::of(devices)?.step(model, optimizer, lr, batch, shard_step)
}

/// What a step is given: the model, its optimiser and learning rate, the batch, and the forward
/// of one shard (`shard_step(model, shard, k)` runs `shard` on device `k`).
pub struct StepInput<'a, M, O, F> {
    /// The model before the step.
    pub model: M,
    /// Its optimiser.
    pub optimizer: &'a mut O,
    /// The step's learning rate.
    pub lr: f64,
    /// The batch.
    pub batch: HostBatch,
    /// The forward of one shard.
    pub shard_step: &'a F,
}

/// The model after a step, and the step's log.
pub type StepOutcome<M> = Result<(M, StepLog), TrainError>;

/// How a stage's training steps run, chosen once from its devices and node group.
///
/// With several devices, the parameters of the model a step returns are spread over them
/// (each parameter is updated on one device, chosen by Burn by its id); [`gather`] brings the
/// model back to the main device, e.g. before evaluation.
pub enum Execution<'d, B: AutodiffBackend> {
    /// One device, no node group: forward, backward, optimiser step.
    Single(SingleDevice<'d, B>),
    /// Several devices of this machine: a thread per shard, the gradients summed.
    Devices(DeviceThreads<'d, B>),
    /// A node of a group training together (feature `collective`): the shards of this node's
    /// devices, the gradients summed over the nodes.
    #[cfg(feature = "collective")]
    Nodes(AcrossNodes<'d, B>),
}

impl<'d, B: AutodiffBackend> Execution<'d, B> {
    /// The execution over `devices` (the first is the main one) in the node group joined, if
    /// any.
    pub fn of(devices: &'d [B::Device]) -> Result<Self, TrainError> {
        let Some(main) = devices.first() else {
            return Err(SetupError::NoDevice.into());
        };
        #[cfg(feature = "collective")]
        if over_nodes() {
            return Ok(Self::Nodes(AcrossNodes { devices }));
        }
        Ok(match devices {
            [_] => Self::Single(SingleDevice { device: main }),
            _ => Self::Devices(DeviceThreads { devices }),
        })
    }

    /// One optimisation step of `model` on `batch`; `shard_step(model, shard, k)` runs the
    /// forward of a shard on device `k` and returns its loss.
    pub fn step<M, O, F>(
        &self,
        model: M,
        optimizer: &mut O,
        lr: f64,
        batch: HostBatch,
        shard_step: &F,
    ) -> StepOutcome<M>
    where
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        F: ShardStep<B, M>,
    {
        let input = StepInput {
            model,
            optimizer,
            lr,
            batch,
            shard_step,
        };
        match self {
            Self::Single(single) => single.step(input),
            Self::Devices(threads) => threads.step(input),
            #[cfg(feature = "collective")]
            Self::Nodes(nodes) => nodes.step(input),
        }
    }
}

/// The plain step on one device.
pub struct SingleDevice<'d, B: AutodiffBackend> {
    /// Where the model lives.
    pub device: &'d B::Device,
}

impl<B: AutodiffBackend> SingleDevice<'_, B> {
    fn step<M: AutodiffModule<B>, O: Optimizer<M, B>, F: ShardStep<B, M>>(
        &self,
        input: StepInput<'_, M, O, F>,
    ) -> StepOutcome<M> {
        let output = (input.shard_step)(&input.model, input.batch, 0)?;
        let mut log = output.log;
        log.record_total(&output.loss);
        let gradients = GradientsParams::from_grads(output.loss.backward(), &input.model);
        let model = input.optimizer.step(input.lr, input.model, gradients);
        Ok((model, log))
    }
}

/// Data parallelism over the devices of this machine: the batch split by source images, one
/// thread per shard on a replica of the model ([`Module::fork`]), each shard's loss weighted
/// by its share of the batch so that the summed gradients are the whole batch's.
pub struct DeviceThreads<'d, B: AutodiffBackend> {
    /// The devices; the first is the main one.
    pub devices: &'d [B::Device],
}

impl<B: AutodiffBackend> DeviceThreads<'_, B> {
    fn step<M: AutodiffModule<B>, O: Optimizer<M, B>, F: ShardStep<B, M>>(
        &self,
        input: StepInput<'_, M, O, F>,
    ) -> StepOutcome<M> {
        let mut shards = split_batch(input.batch, self.devices.len());
        if shards.len() == 1 {
            // One image: the plain step on the main device.
            let input = StepInput {
                batch: shards.remove(0),
                ..input
            };
            return SingleDevice::<B> {
                device: &self.devices[0],
            }
            .step(input);
        }
        let StepInput {
            model,
            optimizer,
            lr,
            shard_step,
            ..
        } = input;
        let images = shards.iter().map(|shard| shard.labels.len()).sum();
        let (gradients, log) = run_shards(&model, shards, self.devices, images, shard_step)?;
        let model = optimizer.step_multi(lr, model, gradients);
        flush_running_states(&model);
        Ok((model, log))
    }
}

/// A node of a group training together: this node's shards as [`DeviceThreads`] runs them,
/// each weighted by its share of the images of all nodes, the gradients summed over the nodes
/// ([`crate::nodes`]) before the optimiser step.
#[cfg(feature = "collective")]
pub struct AcrossNodes<'d, B: AutodiffBackend> {
    /// This node's devices; the first is the main one.
    pub devices: &'d [B::Device],
}

#[cfg(feature = "collective")]
impl<B: AutodiffBackend> AcrossNodes<'_, B> {
    fn step<M: AutodiffModule<B>, O: Optimizer<M, B>, F: ShardStep<B, M>>(
        &self,
        input: StepInput<'_, M, O, F>,
    ) -> StepOutcome<M> {
        use burn::tensor::ElementConversion;
        let main = &self.devices[0];
        let shards = split_batch(input.batch, self.devices.len());
        let local: usize = shards.iter().map(|shard| shard.labels.len()).sum();
        let count = Tensor::<B::InnerBackend, 1>::from_floats([local as f32], main);
        let global = crate::nodes::sum_over_nodes(count)?
            .into_scalar()
            .elem::<f64>()
            .round() as usize;
        let model = input.model;
        let (gradients, log) = run_shards(&model, shards, self.devices, global, input.shard_step)?;
        let reduced = crate::nodes::reduce_gradients(&model, gradients, main)?;
        let model = input.optimizer.step(input.lr, model, reduced);
        flush_running_states(&model);
        Ok((model, log))
    }
}

/// Runs each shard's forward and backward on its device (a thread each when there are
/// several; one shard runs on `model` itself), its loss weighted by its share of
/// `global_images`: the shards' gradients, and their logs merged by image share.
fn run_shards<B, M, F>(
    model: &M,
    shards: Vec<HostBatch>,
    devices: &[B::Device],
    global_images: usize,
    shard_step: &F,
) -> Result<(MultiGradientsParams, StepLog), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: ShardStep<B, M>,
{
    let local_images: usize = shards.iter().map(|shard| shard.labels.len()).sum();
    let run_shard = |k: usize, shard: HostBatch, replica: M| {
        let images = shard.labels.len() as f64;
        let output = shard_step(&replica, shard, k)?;
        let mut log = output.log;
        log.record_total(&output.loss);
        let loss = output.loss.mul_scalar(images / global_images as f64);
        let gradients = GradientsParams::from_grads(loss.backward(), &replica);
        Ok::<_, TrainError>((
            gradients,
            devices[k].to_id(),
            log,
            images / local_images as f64,
        ))
    };
    let results = if let [_] = shards.as_slice() {
        let shard = shards.into_iter().next().expect("one shard");
        vec![run_shard(0, shard, model.clone())]
    } else {
        // A clone of a lazily initialised parameter would initialise to its own values.
        model.visit(&mut Initialise);
        let replicas = devices[..shards.len()]
            .iter()
            .map(|device| model.clone().fork(device));
        let run_shard = &run_shard;
        std::thread::scope(|scope| {
            let workers: Vec<_> = shards
                .into_iter()
                .zip(replicas)
                .enumerate()
                .map(|(k, (shard, replica))| scope.spawn(move || run_shard(k, shard, replica)))
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker.join().unwrap_or_else(|panic| {
                        let panic = panic_message(&panic)
                            .unwrap_or_else(|| "a training thread panicked".to_string());
                        Err(TrainError::Worker { panic })
                    })
                })
                .collect::<Vec<_>>()
        })
    };
    let mut gradients = MultiGradientsParams::default();
    let mut log = StepLog::default();
    for result in results {
        let (shard_gradients, device_id, shard_log, weight) = result?;
        gradients.grads.push((shard_gradients, device_id));
        log.merge(shard_log, weight);
    }
    Ok((gradients, log))
}

/// Initialises every lazy parameter of the module it visits, in place.
struct Initialise;

impl<B: Backend> ModuleVisitor<B> for Initialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        drop(param.val());
    }
}

/// Whether a node group is joined (feature `collective`).
fn over_nodes() -> bool {
    #[cfg(feature = "collective")]
    return crate::nodes::current().is_some();
    #[cfg(not(feature = "collective"))]
    false
}

/// Merges the running statistics the replicas' threads recorded (each thread's update is kept
/// apart by Burn's `RunningState` until a record is taken; the merge is their mean).
fn flush_running_states<B: Backend, M: Module<B>>(model: &M) {
    drop(model.clone().into_record());
}

/// `model` with every parameter and running statistic on `device` (after [`train_step`] over
/// several devices).
pub fn gather<B: Backend, M: Module<B>>(model: M, devices: &[B::Device]) -> M {
    match devices {
        [main, _, ..] => model.fork(main),
        _ => model,
    }
}

/// The message a panic carried (`panic!` with a string or a format), if any.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> Option<String> {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(samples: usize, copies: usize) -> HostBatch {
        let floats = copies * 3 * 2 * 2;
        HostBatch {
            pixels: (0..samples * floats).map(|v| v as f32).collect(),
            shape: [samples * copies, 3, 2, 2],
            labels: (0..samples as i64).collect(),
            indices: (100..100 + samples as i64).collect(),
        }
    }

    #[test]
    fn split_keeps_each_image_with_its_copies_and_balances_shards() {
        let whole = batch(5, 4);
        let shards = split_batch(whole.clone(), 2);
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].labels, vec![0, 1, 2]);
        assert_eq!(shards[1].labels, vec![3, 4]);
        assert_eq!(shards[1].indices, vec![103, 104]);
        assert_eq!(shards[0].shape, [12, 3, 2, 2]);
        assert_eq!(shards[1].shape, [8, 3, 2, 2]);
        let rejoined: Vec<f32> = shards.iter().flat_map(|s| s.pixels.clone()).collect();
        assert_eq!(rejoined, whole.pixels);
        // Never an empty shard: more devices than images gives one shard per image.
        assert_eq!(split_batch(batch(2, 1), 4).len(), 2);
        assert_eq!(split_batch(batch(3, 1), 1)[0].labels, vec![0, 1, 2]);
    }

    #[test]
    fn memory_bank_methods_stay_on_one_device() {
        assert!(check_parallel_method(true, 2).is_err());
        assert!(check_parallel_method(true, 1).is_ok());
        assert!(check_parallel_method(false, 4).is_ok());
    }
}
