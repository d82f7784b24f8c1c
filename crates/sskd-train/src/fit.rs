//! The epoch loop shared by the three stages ([`fit`]): learning-rate schedule, training with
//! progress inside the epoch ([`crate::progress`]), evaluation after every epoch, then one
//! [`EpochSummary`] handed to the epoch's listeners ([`crate::listeners`]: best record, metrics
//! log, checkpoint policy, plot, progress line) — and resume.
//!
//! Epochs are counted from 1 wherever a user sees them (log, files, lines, plots); the epoch
//! functions take the index from 0 that the schedule and the generators count with.
//!
//! Every random choice of training derives from (seed, epoch index, sample index)
//! (`sskd_augment::rng::sample_rng`), so the generator state of a run is its seed and the
//! epoch it resumes at: a resumed run repeats the uninterrupted one exactly.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use sskd_models::checkpoint::save_record;

use crate::checkpoint::{checkpoint_json, load_checkpoint, read_checkpoint, CheckpointState};
use crate::listeners::{Checkpoints, EpochEnd, EpochListener, MetricsLog, PlotRefresh, SaveBest};
use crate::metrics::{EpochReport, EpochResult, EpochSummary, Evaluation, SelectBy, StepObserver};
use crate::progress::{ProgressConfig, StageProgress};
use crate::run_dir::RunDir;
use crate::schedule::LrSchedule;
use crate::{ResumeMismatch, Stage, TrainError};

/// What a stage's loop does.
#[derive(Debug, Clone)]
pub struct FitPlan {
    /// The stage; its name starts the names of its files and is the `stage` of its log lines.
    pub stage: Stage,
    /// Number of epochs.
    pub epochs: usize,
    /// The learning rate per epoch index (from 0).
    pub schedule: LrSchedule,
    /// A checkpoint every this many epochs (and always after the last); 0 = only the last.
    pub checkpoint_every: usize,
    /// Seed of the run (recorded in checkpoints; a resume with another seed is refused).
    pub seed: u64,
    /// Continue from the stage's checkpoint if there is one.
    pub resume: bool,
    /// The evaluation figure the best epoch is chosen by (the SS-head accuracy in stage 2).
    pub select_by: SelectBy,
    /// Extra fields written into every log line (method, architectures, ...).
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// How progress is shown.
    pub progress: ProgressConfig,
    /// Training steps per epoch, when known (the progress's count and ETA).
    pub steps_per_epoch: Option<usize>,
}

impl FitPlan {
    /// A plan of `epochs` epochs of `stage` on `schedule`: a checkpoint after the last epoch
    /// only, best by the stage's figure ([`Stage::select_by`]), no tags, progress as
    /// [`ProgressConfig::default`].
    pub fn new(stage: Stage, epochs: usize, schedule: LrSchedule, seed: u64) -> Self {
        Self {
            stage,
            epochs,
            schedule,
            checkpoint_every: 0,
            seed,
            resume: false,
            select_by: stage.select_by(),
            tags: serde_json::Map::new(),
            progress: ProgressConfig::default(),
            steps_per_epoch: None,
        }
    }
}

/// What a finished stage returns.
#[derive(Debug)]
pub struct FitOutcome<M> {
    /// The module after the last epoch.
    pub module: M,
    /// The last epoch's evaluation.
    pub last: Option<EpochResult>,
    /// The best epoch (its module is in `S-best.mpk`).
    pub best: Option<EpochResult>,
}

/// The listeners of every stage, in the order they run: the best record first (the checkpoint
/// names it), the log line, the checkpoint, the plot.
fn stage_listeners<B, M, O>(plan: &FitPlan) -> Vec<Box<dyn EpochListener<B, M, O>>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    vec![
        Box::new(SaveBest),
        Box::new(MetricsLog {
            tags: plan.tags.clone(),
        }),
        Box::new(Checkpoints {
            every: plan.checkpoint_every,
        }),
        Box::new(PlotRefresh),
    ]
}

/// Runs the epochs of `plan`: for each, `train_epoch(module, optimizer, index, lr, steps)`
/// (`index` from 0; `steps` observes each training step for the progress display), then
/// `evaluate(module)`, the best-so-far choice by `plan.select_by`, and the epoch's summary to
/// each listener. With `plan.resume` and a committed checkpoint of the stage, module and
/// optimizer are restored from it and the loop continues at the next epoch.
pub fn fit<B, M, O, T, E>(
    run: &RunDir,
    plan: &FitPlan,
    module: M,
    optimizer: O,
    mut train_epoch: T,
    mut evaluate: E,
    device: &B::Device,
) -> Result<FitOutcome<M>, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    T: FnMut(M, &mut O, usize, f64, &mut dyn StepObserver) -> Result<(M, EpochReport), TrainError>,
    E: FnMut(&M) -> Result<Evaluation, TrainError>,
{
    let (mut module, mut optimizer, mut state) = restore(run, plan, module, optimizer, device)?;
    if state.epochs_done > 0 {
        let resumed = serde_json::json!({"event": "resume", "stage": plan.stage.name(), "epochs_done": state.epochs_done});
        run.log().append(&resumed)?;
    }
    let mut listeners = stage_listeners::<B, M, O>(plan);
    let mut progress = StageProgress::new(
        plan.progress,
        plan.stage.name(),
        plan.epochs,
        plan.steps_per_epoch,
    );
    for index in state.epochs_done..plan.epochs {
        let (started, epoch, lr) = (Instant::now(), index + 1, plan.schedule.lr(index));
        let (next, report) = train_epoch(
            module,
            &mut optimizer,
            index,
            lr,
            &mut progress.epoch(epoch),
        )?;
        module = next;
        progress.evaluating();
        let evaluation = evaluate(&module)?;
        let score = |result: &EpochResult| plan.select_by.of(&result.evaluation);
        let result = EpochResult { epoch, evaluation };
        let improved = state
            .best
            .as_ref()
            .is_none_or(|best| score(&result) > score(best));
        if improved {
            state.best = Some(result);
        }
        state.last = Some(result);
        state.epochs_done = epoch;
        let summary = EpochSummary {
            stage: plan.stage.name().to_string(),
            epoch,
            epochs: plan.epochs,
            lr,
            report,
            evaluation,
            best: state.best,
            improved,
            select_by: plan.select_by,
            seconds: started.elapsed().as_secs_f64(),
        };
        let end = EpochEnd {
            run,
            summary: &summary,
            state: &state,
            module: &module,
            optimizer: &optimizer,
        };
        for listener in listeners.iter_mut() {
            listener.epoch_end(&end)?;
        }
        EpochListener::<B, M, O>::epoch_end(&mut progress, &end)?;
    }
    save_record(
        module.clone(),
        &run.path(&format!("{}-last.mpk", plan.stage)),
    )?;
    Ok(FitOutcome {
        module,
        last: state.last,
        best: state.best,
    })
}

type Restored<M, O> = (M, O, CheckpointState);

/// The starting point of a stage: fresh, or its committed checkpoint when resuming.
fn restore<B, M, O>(
    run: &RunDir,
    plan: &FitPlan,
    module: M,
    optimizer: O,
    device: &B::Device,
) -> Result<Restored<M, O>, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let fresh = CheckpointState {
        stage: plan.stage.name().to_string(),
        epochs_done: 0,
        seed: plan.seed,
        best: None,
        last: None,
        model_file: String::new(),
        optimizer_file: String::new(),
    };
    if plan.resume {
        // A run killed while writing a checkpoint leaves its temporary file behind.
        let removed = sskd_models::atomic::remove_partial_files(run.root())?;
        if !removed.is_empty() {
            tracing::info!(
                "removed {} unfinished checkpoint file(s) of a killed run",
                removed.len()
            );
        }
    }
    let existing = read_checkpoint(run, plan.stage.name())?;
    let (stage, folder) = (plan.stage.name(), run.root().display());
    let Some(state) = existing.as_ref().filter(|_| plan.resume).cloned() else {
        match existing {
            None if plan.resume => {
                tracing::warn!("no checkpoint of stage {stage} in {folder}: starting fresh")
            }
            Some(old) => tracing::warn!(
                "{folder} holds a checkpoint of stage {stage} after epoch {}: starting fresh \
                 over it (--resume continues it)",
                old.epochs_done
            ),
            None => {}
        }
        return Ok((module, optimizer, fresh));
    };
    let mismatch = if state.seed != plan.seed {
        Some(ResumeMismatch::Seed {
            stored: state.seed,
            given: plan.seed,
        })
    } else if state.epochs_done > plan.epochs {
        Some(ResumeMismatch::Epochs {
            done: state.epochs_done,
            planned: plan.epochs,
        })
    } else {
        None
    };
    if let Some(mismatch) = mismatch {
        return Err(TrainError::Resume {
            path: checkpoint_json(run, plan.stage.name()),
            mismatch,
        });
    }
    let (module, optimizer) = load_checkpoint(run, &state, module, optimizer, device)?;
    tracing::info!(
        "resuming stage {stage} in {folder} after epoch {} of {}",
        state.epochs_done,
        plan.epochs
    );
    Ok((module, optimizer, state))
}
