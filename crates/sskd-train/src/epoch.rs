//! One epoch of each SSKD stage, and evaluation. Every function takes the batches of one epoch
//! (from `sskd_augment::loader::load_epoch`) and returns the updated module and a report.
//!
//! Frozen networks run on the inner (non-autodiff) backend — batch norm then uses its running
//! statistics, which stay untouched, and no graph is built — and their outputs are lifted to the
//! autodiff backend as constants.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Int, Tensor};
use sskd_augment::loader::{HostBatch, LoadError};
use sskd_losses::functional::{cross_entropy, split_rotations};
use sskd_losses::{
    ss_head_loss, BatchLayout, DistillInputs, Distiller, Method, Needs, NetworkOutputs,
};
use sskd_models::precision::float_dtype;
use sskd_models::{BackboneWithHead, InputLimits, Model, ReferenceCall, SelfSupervisionHead};

use crate::metrics::{Accuracy, EpochReport, EpochTally, Evaluation, StepLog, StepObserver};
use crate::parallel::{check_parallel_method, gather, Execution, ShardOutput, ShardStep};
use crate::{BatchError, SetupError, Stage, TrainError};

/// An epoch of `shard_step` steps over `batches` on `devices` ([`Execution`]), each step
/// shown to `observer`; stops at the first bad batch or at a loss that is not finite, and
/// pauses where `observer` asks ([`StepObserver::pause`]).
fn run_epoch<B, M, O, F>(
    mut model: M,
    optimizer: &mut O,
    (batches, observer): (
        impl IntoIterator<Item = Result<HostBatch, LoadError>>,
        Observer<'_>,
    ),
    lr: f64,
    devices: &[B::Device],
    stage: Stage,
    shard_step: F,
) -> Result<(M, EpochReport), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    F: ShardStep<B, M>,
{
    let started = Instant::now();
    let execution = Execution::<B>::of(devices)?;
    let mut tally = EpochTally::default();
    for batch in batches {
        let (next, step) = execution.step(model, optimizer, lr, batch?, &shard_step)?;
        model = next;
        let total = step.total();
        if !total.is_finite() {
            return Err(TrainError::Diverged {
                stage,
                value: total,
            });
        }
        observer.step(&step);
        tally.add_step(&step);
        if observer.pause() {
            let report = tally.report(started.elapsed().as_secs_f64());
            return Ok((gather(model, devices), report));
        }
    }
    let model = gather(model, devices);
    #[cfg(feature = "collective")]
    let model = crate::nodes::average_running_states(model)?;
    Ok((model, tally.report(started.elapsed().as_secs_f64())))
}

/// What sees each step of an epoch (its progress display; `&mut ()` for nothing).
pub type Observer<'a> = &'a mut dyn StepObserver;

/// The images, labels and indices of a batch as tensors.
type BatchTensors<B> = (Tensor<B, 4>, Tensor<B, 1, Int>, Tensor<B, 1, Int>);

/// A batch's images, labels and indices on `device`, the images in the network's float type
/// (`dtype`: see [`float_dtype`]; `None` keeps the loader's `f32`). Before any tensor sees
/// them, images smaller than one of the networks takes (`limits`) are an error naming the
/// minimum, and with `classes` (the classifier's) a label outside `0..classes` is an error
/// naming it, its row and the limit.
fn batch_tensors<B: Backend>(
    batch: HostBatch,
    device: &B::Device,
    dtype: Option<DType>,
    limits: &[InputLimits],
    classes: Option<usize>,
) -> Result<BatchTensors<B>, TrainError> {
    let [_, _, height, width] = batch.shape;
    for limit in limits {
        limit
            .check([height, width])
            .map_err(|error| BatchError::TooSmall(Box::new(error)))?;
    }
    let outside = |label: &i64| *label < 0 || classes.is_some_and(|c| *label >= c as i64);
    if let Some((row, &label)) = batch.labels.iter().enumerate().find(|(_, l)| outside(l)) {
        return Err(BatchError::Label {
            label,
            row,
            classes,
        }
        .into());
    }
    let (images, labels, indices) = batch.to_tensors::<B>(device);
    let images = match dtype {
        Some(dtype) => images.cast(dtype),
        None => images,
    };
    Ok((images, labels, indices))
}

/// Replicas of a frozen network, one per device (the first is `network` itself).
fn replicas<B: Backend, M: Module<B>>(network: &M, devices: &[B::Device]) -> Vec<M> {
    let mut copies = vec![network.clone()];
    copies.extend(devices.iter().skip(1).map(|d| network.clone().fork(d)));
    copies
}

/// Stage 1: one epoch of cross-entropy training of `model` on plain batches, data-parallel
/// over `devices` (one device: the plain step).
pub fn teacher_epoch<B, O>(
    model: Model<B>,
    optimizer: &mut O,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    observer: Observer<'_>,
    lr: f64,
    devices: &[B::Device],
) -> Result<(Model<B>, EpochReport), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<Model<B>, B>,
{
    let dtype = float_dtype(&model);
    run_epoch(
        model,
        optimizer,
        (batches, observer),
        lr,
        devices,
        Stage::Teacher,
        |model: &Model<B>, batch: HostBatch, k: usize| {
            let (limits, classes) = ([model.input_limits()], Some(model.num_classes()));
            let (images, labels, _) =
                batch_tensors::<B>(batch, &devices[k], dtype, &limits, classes)?;
            let logits = model.forward(images).logits;
            let loss = cross_entropy(logits.clone(), labels.clone());
            let mut log = StepLog {
                images: labels.dims()[0],
                ..StepLog::default()
            };
            log.record("ce", &loss);
            log.accuracy.add(logits.detach(), labels);
            Ok(ShardOutput { loss, log })
        },
    )
}

/// Stage 2: one epoch of SS-head training on four-rotation batches, the teacher frozen.
pub fn head_epoch<B, O>(
    teacher: &Model<B::InnerBackend>,
    head: SelfSupervisionHead<B>,
    optimizer: &mut O,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    observer: Observer<'_>,
    lr: f64,
    devices: &[B::Device],
) -> Result<(SelfSupervisionHead<B>, EpochReport), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<SelfSupervisionHead<B>, B>,
{
    let teachers = replicas(teacher, devices);
    let (dtype, limits) = (float_dtype(teacher), [teacher.input_limits()]);
    run_epoch(
        head,
        optimizer,
        (batches, observer),
        lr,
        devices,
        Stage::Head,
        |head: &SelfSupervisionHead<B>, batch: HostBatch, k: usize| {
            let (images, labels, _) =
                batch_tensors::<B::InnerBackend>(batch, &devices[k], dtype, &limits, None)?;
            let embedding = Tensor::<B, 2>::from_inner(teachers[k].forward(images).embedding);
            let (loss, correct) =
                ss_head_loss(head.forward(embedding)).map_err(TrainError::Loss)?;
            let images = labels.dims()[0];
            let mut log = StepLog {
                images,
                ..StepLog::default()
            };
            log.record("ss_head", &loss);
            log.accuracy.top1 = correct;
            log.accuracy.total = 3 * images;
            Ok(ShardOutput { loss, log })
        },
    )
}

/// The student, its SS head and the method's trainable parts, optimised together.
#[derive(Module, Debug)]
pub struct Student<B: Backend> {
    /// Backbone and SS head.
    pub network: BackboneWithHead<B>,
    /// The distillation method (regressors, embeddings, memories).
    pub method: Method<B>,
}

/// A network's outputs for `images` as a method `needs` them: its SS head's output when it
/// needs the head (the head sees the embedding with its gradient), the reference's `preact`
/// call when it needs pre-activation features; `feature_layers_only` for a pre-training stage
/// that trains the student's feature layers (see [`ReferenceCall`]).
fn outputs<B: Backend>(
    network: &BackboneWithHead<B>,
    images: Tensor<B, 4>,
    needs: Needs,
    feature_layers_only: bool,
) -> NetworkOutputs<B> {
    let call = ReferenceCall {
        preact: needs.preact_features,
        feature_layers_only,
    };
    let output = network.backbone.forward_call(images, call);
    let head = needs
        .head
        .then(|| network.proj_head.forward(output.embedding.clone()));
    NetworkOutputs::from_model(output, head)
}

/// Which loss a student epoch trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudentObjective {
    /// The method's loss ([`Distiller::loss`]): the student stage proper.
    Distill,
    /// The method's pre-training loss ([`Distiller::pretrain_loss`]), before the main stage.
    Pretrain,
}

impl StudentObjective {
    /// The stage whose epochs it trains.
    pub fn stage(self) -> Stage {
        match self {
            Self::Distill => Stage::Student,
            Self::Pretrain => Stage::Pretraining,
        }
    }
}

/// Stage 3: one epoch of distillation with the student's method, one forward over each batch
/// (four-rotation batches when the method needs them), data-parallel over `devices`.
#[allow(clippy::too_many_arguments)]
pub fn student_epoch<B, O>(
    student: Student<B>,
    teacher: &BackboneWithHead<B::InnerBackend>,
    optimizer: &mut O,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    observer: Observer<'_>,
    epoch: usize,
    lr: f64,
    devices: &[B::Device],
) -> Result<(Student<B>, EpochReport), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<Student<B>, B>,
{
    let args = (epoch, lr, StudentObjective::Distill);
    student_objective_epoch(
        student, teacher, optimizer, batches, observer, args, devices,
    )
}

/// What a step of `objective` needs computed, and whether the student trains in it.
fn objective_needs<B: Backend>(
    method: &Method<B>,
    objective: StudentObjective,
) -> Result<(Needs, bool), TrainError> {
    match objective {
        StudentObjective::Distill => Ok((method.needs(), true)),
        StudentObjective::Pretrain => method
            .pretraining()
            .map(|stage| (stage.needs, stage.trains_student))
            .ok_or(TrainError::Setup(SetupError::NoPretraining {
                method: method.name(),
            })),
    }
}

/// An epoch of the student's `objective` at `(epoch, lr)`: [`student_epoch`], or one epoch of
/// the method's pre-training stage ([`Distiller::pretraining`]: its loss alone; the student
/// runs in training mode when the stage trains its layers, else in inference mode).
pub fn student_objective_epoch<B, O>(
    student: Student<B>,
    teacher: &BackboneWithHead<B::InnerBackend>,
    optimizer: &mut O,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    observer: Observer<'_>,
    (epoch, lr, objective): (usize, f64, StudentObjective),
    devices: &[B::Device],
) -> Result<(Student<B>, EpochReport), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<Student<B>, B>,
{
    let (needs, trains_student) = objective_needs(&student.method, objective)?;
    check_parallel_method(needs.sample_indices, devices.len())?;
    let layout = if needs.rotations {
        BatchLayout::Rotations4
    } else {
        BatchLayout::Plain
    };
    let teachers = replicas(teacher, devices);
    let dtype = float_dtype(&student.network);
    let teacher_limits = teacher.backbone.input_limits();
    run_epoch(
        student,
        optimizer,
        (batches, observer),
        lr,
        devices,
        objective.stage(),
        |student: &Student<B>, batch: HostBatch, k: usize| {
            let classes = Some(student.network.backbone.num_classes());
            let limits = [student.network.backbone.input_limits(), teacher_limits];
            let (images, labels, indices) =
                batch_tensors::<B>(batch, &devices[k], dtype, &limits, classes)?;
            let pretraining = objective == StudentObjective::Pretrain;
            let student_outputs = if trains_student {
                outputs(&student.network, images.clone(), needs, pretraining)
            } else {
                outputs(
                    &student.network.valid(),
                    images.clone().inner(),
                    needs,
                    false,
                )
                .lift()
            };
            let inputs = DistillInputs {
                student: student_outputs,
                teacher: outputs(&teachers[k], images.inner(), needs, false).lift(),
                labels: labels.clone(),
                sample_indices: Some(indices),
                contrast_indices: None,
                ss_labels: None,
                layout,
                epoch,
            };
            let terms = match objective {
                StudentObjective::Distill => student.method.loss(&inputs),
                StudentObjective::Pretrain => student.method.pretrain_loss(&inputs),
            }
            .map_err(TrainError::Loss)?;
            let mut log = StepLog {
                images: labels.dims()[0],
                ..StepLog::default()
            };
            for term in &terms.terms {
                log.record(term.name, &term.value);
            }
            for (name, value) in &terms.counts {
                log.counts.insert(name.to_string(), *value as f64);
            }
            let logits = match layout {
                BatchLayout::Plain => inputs.student.logits.clone(),
                BatchLayout::Rotations4 => split_rotations(inputs.student.logits.clone()).0,
            };
            log.accuracy.add(logits.detach(), labels);
            Ok(ShardOutput {
                loss: terms.total(),
                log,
            })
        },
    )
}

/// Top-1/top-5 accuracy of `model` (inference mode: pass the inner-backend model) on
/// `batches`; with `rotations`, only each image's unrotated row is classified.
pub fn evaluate<B: Backend>(
    model: &Model<B>,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    rotations: bool,
    device: &B::Device,
) -> Result<Accuracy, TrainError> {
    let (mut accuracy, dtype) = (Accuracy::default(), float_dtype(model));
    let (limits, classes) = ([model.input_limits()], Some(model.num_classes()));
    for batch in batches {
        let batch = batch?;
        let (images, labels, _) = batch_tensors::<B>(batch, device, dtype, &limits, classes)?;
        let logits = model.forward(images).logits;
        let logits = if rotations {
            split_rotations(logits).0
        } else {
            logits
        };
        accuracy.add(logits, labels);
    }
    Ok(accuracy)
}

/// Top-1/top-5 of `backbone` on the unrotated rows of four-rotation `batches` and the
/// accuracy of `head` on the SS task (each rotated row picks its source among the batch's
/// unrotated rows), in percent. Pass inner-backend (inference-mode) modules.
pub fn evaluate_with_head<B: Backend>(
    backbone: &Model<B>,
    head: &SelfSupervisionHead<B>,
    batches: impl IntoIterator<Item = Result<HostBatch, LoadError>>,
    device: &B::Device,
) -> Result<Evaluation, TrainError> {
    let (mut accuracy, dtype) = (Accuracy::default(), float_dtype(backbone));
    let (mut ss_correct, mut ss_rows) = (0, 0);
    let (limits, classes) = ([backbone.input_limits()], Some(backbone.num_classes()));
    for batch in batches {
        let batch = batch?;
        let (images, labels, _) = batch_tensors::<B>(batch, device, dtype, &limits, classes)?;
        let output = backbone.forward(images);
        let (_, correct) =
            ss_head_loss(head.forward(output.embedding)).map_err(TrainError::Loss)?;
        ss_correct += correct;
        ss_rows += 3 * labels.dims()[0];
        accuracy.add(split_rotations(output.logits).0, labels);
    }
    Ok(Evaluation {
        top1: accuracy.top1_percent(),
        top5: accuracy.top5_percent(),
        ss_top1: Some(100.0 * ss_correct as f64 / ss_rows.max(1) as f64),
    })
}
