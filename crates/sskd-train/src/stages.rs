//! The three stages as whole runs over a dataset: [`train_teacher`], [`train_head`] and
//! [`train_student`], each an epoch loop of [`crate::fit::fit`] (schedule, evaluation after
//! every epoch, JSONL log, progress, checkpoints, resume) around one epoch function of
//! [`crate::epoch`].

use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use sskd_augment::loader::{
    batches_per_epoch, load_epoch, HostBatch, LoadError, LoaderConfig, SampleTransform,
};
use sskd_models::{BackboneWithHead, Model, SelfSupervisionHead};

use sskd_losses::{Distiller, Pretraining};

use crate::epoch::{
    evaluate, evaluate_with_head, head_epoch, student_objective_epoch, teacher_epoch, Student,
    StudentObjective,
};
use crate::fit::{fit, EpochAt, FitOutcome, FitPlan};
use crate::metrics::Evaluation;
use crate::run_dir::RunDir;
use crate::{SetupError, TrainError};

/// A per-sample transform: an item and its generator to a
/// [`Sample`](sskd_augment::loader::Sample) (one copy, or four rotations).
pub type Transform<I> = Arc<dyn SampleTransform<I>>;

/// The data of a run: train and test sets, the four transforms, batch sizes and the seed.
pub struct RunData<D, I> {
    /// Training set.
    pub train: Arc<D>,
    /// The class of every training sample, in dataset order (`ClassLabels::class_labels` of
    /// the training set): methods that draw samples by class (CRD) take them.
    pub train_labels: Arc<[usize]>,
    /// Test set (evaluated after every epoch).
    pub test: Arc<D>,
    /// Training augmentation, one copy per image (e.g. crop + flip).
    pub plain_train: Transform<I>,
    /// Training augmentation with four rotations per image.
    pub rotations_train: Transform<I>,
    /// Test transform, one copy.
    pub plain_test: Transform<I>,
    /// Test transform with four rotations (the SS-head accuracy).
    pub rotations_test: Transform<I>,
    /// Training batch in source images (64 in SSKD).
    pub batch_size: usize,
    /// Test batch in source images.
    pub test_batch_size: usize,
    /// Seed of sample order and augmentation.
    pub seed: u64,
}

impl<D, I> Clone for RunData<D, I> {
    fn clone(&self) -> Self {
        Self {
            train: self.train.clone(),
            train_labels: self.train_labels.clone(),
            test: self.test.clone(),
            plain_train: self.plain_train.clone(),
            rotations_train: self.rotations_train.clone(),
            plain_test: self.plain_test.clone(),
            rotations_test: self.rotations_test.clone(),
            ..*self
        }
    }
}

impl<D, I> RunData<D, I>
where
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    /// The batches of training epoch `epoch` from its batch `first_step` on (this node's part
    /// of each, with a node group).
    pub fn train_epoch(
        &self,
        rotations: bool,
        epoch: usize,
        first_step: usize,
    ) -> std::sync::mpsc::Receiver<Result<HostBatch, LoadError>> {
        let transform = if rotations {
            &self.rotations_train
        } else {
            &self.plain_train
        };
        let config = LoaderConfig {
            part: node_part(),
            first_batch: first_step,
            ..LoaderConfig::new(self.batch_size, self.seed)
        };
        load_epoch(self.train.clone(), transform.clone(), config, epoch as u64)
    }

    /// Training steps of an epoch: the batches of this node's part of the training set.
    pub fn train_steps(&self) -> usize {
        let config = LoaderConfig {
            part: node_part(),
            ..LoaderConfig::new(self.batch_size, self.seed)
        };
        batches_per_epoch(self.train.len(), &config)
    }

    /// A plan of the stage's epochs over this data: `plan` with the epoch's step count.
    pub fn plan(&self, plan: &FitPlan) -> FitPlan {
        FitPlan {
            steps_per_epoch: Some(self.train_steps()),
            ..plan.clone()
        }
    }

    /// The test batches, in order.
    pub fn test_batches(
        &self,
        rotations: bool,
    ) -> std::sync::mpsc::Receiver<Result<HostBatch, LoadError>> {
        let transform = if rotations {
            &self.rotations_test
        } else {
            &self.plain_test
        };
        let config = LoaderConfig {
            shuffle: false,
            ..LoaderConfig::new(self.test_batch_size, self.seed)
        };
        load_epoch(self.test.clone(), transform.clone(), config, 0)
    }

    /// Top-1/top-5 of `model` (inference mode) on the unrotated test set.
    pub fn evaluate_model<B: burn::tensor::backend::Backend>(
        &self,
        model: &Model<B>,
        device: &B::Device,
    ) -> Result<Evaluation, TrainError> {
        Ok(evaluate(model, self.test_batches(false), false, device)?.evaluation())
    }

    /// Top-1/top-5 of `network`'s backbone and its SS-head accuracy on the four-rotation test set.
    pub fn evaluate_network<B: burn::tensor::backend::Backend>(
        &self,
        network: &BackboneWithHead<B>,
        device: &B::Device,
    ) -> Result<Evaluation, TrainError> {
        evaluate_with_head(
            &network.backbone,
            &network.proj_head,
            self.test_batches(true),
            device,
        )
    }
}

/// This node's part of every training batch: `(rank, nodes)` with a node group joined
/// (feature `collective`), else the whole batch.
fn node_part() -> (usize, usize) {
    #[cfg(feature = "collective")]
    if let Some((rank, nodes)) = crate::nodes::current() {
        return (rank as usize, nodes as usize);
    }
    (0, 1)
}

/// The first of `devices`, where the model lives between steps and is evaluated.
fn main_device<D>(devices: &[D]) -> Result<&D, TrainError> {
    devices
        .first()
        .ok_or(TrainError::Setup(SetupError::NoDevice))
}

/// Stage 1: cross-entropy training of `model` (SGD with `momentum` and `weight_decay`),
/// data-parallel over `devices` (the first is the main one: evaluation, checkpoints).
pub fn train_teacher<B, D, I>(
    run: &RunDir,
    plan: &FitPlan,
    model: Model<B>,
    data: &RunData<D, I>,
    (momentum, weight_decay): (f64, f64),
    devices: &[B::Device],
) -> Result<FitOutcome<Model<B>>, TrainError>
where
    B: AutodiffBackend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    let device = main_device(devices)?;
    fit(
        run,
        &data.plan(plan),
        model,
        crate::sgd(momentum, weight_decay).init(),
        |model, optimizer, at: EpochAt, steps| {
            let batches = data.train_epoch(false, at.index, at.first_step);
            teacher_epoch(model, optimizer, batches, steps, at.lr, devices)
        },
        |model| data.evaluate_model(&model.valid(), device),
        device,
    )
}

/// Stage 2: the SS head on the frozen `teacher` (inference mode), four-rotation batches,
/// over `devices`.
pub fn train_head<B, D, I>(
    run: &RunDir,
    plan: &FitPlan,
    teacher: &Model<B::InnerBackend>,
    head: SelfSupervisionHead<B>,
    data: &RunData<D, I>,
    (momentum, weight_decay): (f64, f64),
    devices: &[B::Device],
) -> Result<FitOutcome<SelfSupervisionHead<B>>, TrainError>
where
    B: AutodiffBackend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    let device = main_device(devices)?;
    fit(
        run,
        &data.plan(plan),
        head,
        crate::sgd(momentum, weight_decay).init(),
        |head, optimizer, at: EpochAt, steps| {
            let batches = data.train_epoch(true, at.index, at.first_step);
            head_epoch(teacher, head, optimizer, batches, steps, at.lr, devices)
        },
        |head| {
            let batches = data.test_batches(true);
            evaluate_with_head(teacher, &head.valid(), batches, device)
        },
        device,
    )
}

/// Stage 3: the student (backbone, head and the method's modules) against the frozen
/// `teacher`; four-rotation batches when the method needs them; over `devices`. A method with a
/// pre-training stage ([`Distiller::pretraining`]: AB, FT, FSP) runs it first as the stage
/// `{plan.stage}-init` (its own epochs, constant learning rate, optimiser, checkpoints and log
/// lines), as RepDistiller's `init` does before its main loop.
pub fn train_student<B, D, I>(
    run: &RunDir,
    plan: &FitPlan,
    student: Student<B>,
    teacher: &BackboneWithHead<B::InnerBackend>,
    data: &RunData<D, I>,
    (momentum, weight_decay): (f64, f64),
    devices: &[B::Device],
) -> Result<FitOutcome<Student<B>>, TrainError>
where
    B: AutodiffBackend,
    I: Send + 'static,
    D: Dataset<I> + 'static,
{
    let device = main_device(devices)?;
    let rotations = student.method.needs().rotations;
    let evaluate = |student: &Student<B>| {
        let network = student.network.valid();
        if rotations {
            data.evaluate_network(&network, device)
        } else {
            data.evaluate_model(&network.backbone, device)
        }
    };
    // One stage of `plan` training `objective` on batches with or without rotations.
    let stage = |student, plan: &FitPlan, objective, rotations| {
        fit(
            run,
            &data.plan(plan),
            student,
            crate::sgd(momentum, weight_decay).init(),
            |student, optimizer, at: EpochAt, steps| {
                let batches = data.train_epoch(rotations, at.index, at.first_step);
                let args = (at.index, at.lr, objective);
                student_objective_epoch(student, teacher, optimizer, batches, steps, args, devices)
            },
            evaluate,
            device,
        )
    };
    let student = match student.method.pretraining() {
        Some(pretraining) => {
            let init_plan = pretraining_plan(plan, pretraining);
            let rotations = pretraining.needs.rotations;
            stage(student, &init_plan, StudentObjective::Pretrain, rotations)?.module
        }
        None => student,
    };
    stage(student, plan, StudentObjective::Distill, rotations)
}

/// The plan of a method's pre-training stage before the student stage of `plan`:
/// [`Stage::Pretraining`](crate::Stage::Pretraining), the method's epochs at a constant learning rate (the method's, else the
/// student stage's initial one).
pub fn pretraining_plan(plan: &FitPlan, stage: Pretraining) -> FitPlan {
    let lr = stage.learning_rate.unwrap_or_else(|| plan.schedule.lr(0));
    FitPlan {
        stage: crate::Stage::Pretraining,
        epochs: stage.epochs,
        schedule: crate::schedule::LrSchedule::multi_step(lr, &[]),
        select_by: crate::metrics::SelectBy::Top1,
        ..plan.clone()
    }
}
