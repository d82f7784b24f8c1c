//! The epoch loop shared by the three stages ([`fit`]): learning-rate schedule, training with
//! progress inside the epoch ([`crate::progress`]), evaluation after every epoch, then one
//! [`EpochSummary`] handed to the epoch's listeners ([`crate::listeners`]: best record, metrics
//! log, checkpoint policy, plot, progress line) — and resume.
//!
//! Epochs are counted from 1 wherever a user sees them (log, files, lines, plots); the epoch
//! functions take the index from 0 that the schedule and the generators count with.
//!
//! Every random choice of training derives from (seed, epoch index, sample index)
//! (`sskd_augment::rng::sample_rng`), and the sample order of an epoch from (seed, epoch
//! index), so the generator state of a run is its seed and the step it resumes at: a run
//! resumed at an epoch's end or inside an epoch ([`crate::pause`]) repeats the uninterrupted
//! one exactly.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use sskd_models::checkpoint::save_record;

use crate::checkpoint::{
    checkpoint_json, load_checkpoint, read_checkpoint, recommit, remove_leftovers,
    write_checkpoint, CheckpointState, WithinEpoch,
};
use crate::listeners::{Checkpoints, EpochEnd, EpochListener, MetricsLog, PlotRefresh, SaveBest};
use crate::metrics::{EpochReport, EpochResult, EpochSummary, Evaluation, SelectBy, StepObserver};
use crate::pause::{EpochWatch, Pause, StepCheckpoints, StopRequest};
use crate::progress::{ProgressConfig, StageProgress};
use crate::run_dir::RunDir;
use crate::schedule::LrSchedule;
use crate::{ResumeMismatch, Stage, StepPlace, TrainError};

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
    /// Checkpoints inside an epoch (every N steps, every M seconds); none by default.
    pub within_epoch: StepCheckpoints,
    /// A stop to honour after any step (a signal handler sets it): a checkpoint there, then
    /// [`TrainError::Stopped`].
    pub stop: StopRequest,
}

/// Where an epoch function starts: the epoch's index (from 0), its learning rate, and the
/// first step to run (0, or the step after a checkpoint inside the epoch: the batches before
/// it are skipped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochAt {
    /// The epoch, from 0 (as the schedule and the generators count).
    pub index: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Steps of the epoch already done.
    pub first_step: usize,
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
            within_epoch: StepCheckpoints::default(),
            stop: StopRequest::new(),
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
            keep_previous: in_node_group(),
        }),
        Box::new(PlotRefresh),
    ]
}

/// Runs the epochs of `plan`: for each, `train_epoch(module, optimizer, at, steps)` (`at`: the
/// epoch's index from 0, learning rate and first step; `steps` sees each training step and may
/// pause the epoch, [`StepObserver::pause`]), then `evaluate(module)`, the best-so-far choice
/// by `plan.select_by`, and the epoch's summary to each listener.
///
/// Inside an epoch, where `plan.within_epoch` falls due, the epoch pauses for a checkpoint and
/// goes on (`train_epoch` is called again at the next step); when `plan.stop` is requested it
/// pauses for a checkpoint and the run ends with [`TrainError::Stopped`]. With `plan.resume`
/// and a committed checkpoint of the stage, module and optimizer are restored from it and the
/// loop continues at the step after it. Leftovers of checkpoint writes that did not finish are
/// removed first ([`remove_leftovers`]).
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
    T: FnMut(M, &mut O, EpochAt, &mut dyn StepObserver) -> Result<(M, EpochReport), TrainError>,
    E: FnMut(&M) -> Result<Evaluation, TrainError>,
{
    let (mut module, mut optimizer, mut state) = restore(run, plan, module, optimizer, device)?;
    if state.epochs_done > 0 || state.within_epoch.is_some() {
        let resumed = serde_json::json!({"event": "resume", "stage": plan.stage.name(),
            "epochs_done": state.epochs_done, "steps_done": state.steps_done()});
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
        let tally = state
            .within_epoch
            .take()
            .map(|w| w.tally)
            .unwrap_or_default();
        let report = {
            let mut display = progress.epoch_from(epoch, tally.steps);
            let mut watch = EpochWatch::<B::InnerBackend>::new(
                &mut display,
                tally,
                (plan.within_epoch, &plan.stop),
                device,
            );
            loop {
                let first_step = watch.steps_done();
                let at = EpochAt {
                    index,
                    lr,
                    first_step,
                };
                let place = |steps_done| StepPlace {
                    stage: plan.stage,
                    epoch,
                    steps_done,
                };
                module = train_epoch(module, &mut optimizer, at, &mut watch)
                    .map_err(|e| e.at(place(watch.steps_done())))?
                    .0;
                let Some(pause) = watch
                    .take_pause()
                    .map_err(|e| e.at(place(watch.steps_done())))?
                else {
                    break;
                };
                let within = WithinEpoch {
                    steps_per_epoch: plan.steps_per_epoch,
                    tally: watch.tally(),
                };
                let checkpoint = write_step_checkpoint(run, &state, within, &module, &optimizer)?;
                if pause == Pause::Stop {
                    return Err(TrainError::Stopped {
                        stage: plan.stage,
                        epoch,
                        step: watch.steps_done(),
                        checkpoint,
                    });
                }
            }
            watch.report()
        };
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

/// Writes the checkpoint of a pause inside the epoch after `state`'s epochs (`within`: where
/// in it), the state otherwise as at the last epoch's end. Returns its `S-checkpoint.json`.
fn write_step_checkpoint<B, M, O>(
    run: &RunDir,
    state: &CheckpointState,
    within: WithinEpoch,
    module: &M,
    optimizer: &O,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let mut paused = CheckpointState {
        within_epoch: Some(within),
        ..state.clone()
    };
    (paused.model_file, paused.optimizer_file) = paused.record_files();
    write_checkpoint(run, &paused, module, optimizer, in_node_group())?;
    tracing::info!(
        "checkpoint of stage {} inside epoch {} after step {}",
        paused.stage,
        paused.epochs_done + 1,
        paused.steps_done()
    );
    Ok(checkpoint_json(run, &paused.stage))
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
    let fresh = CheckpointState::fresh(plan.stage.name(), plan.seed);
    // A run killed while writing a checkpoint leaves files that no checkpoint names.
    let removed = remove_leftovers(run, plan.stage.name())?;
    for path in &removed {
        tracing::warn!(
            "removed {}: the leftover of a checkpoint write that did not finish",
            path.display()
        );
    }
    let existing = read_checkpoint(run, plan.stage.name())?;
    let existing = match plan.resume {
        true => checkpoint_of_the_group::<B>(run, existing, device)?,
        false => existing,
    };
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
    } else if let Some((stored, given)) = steps_per_epoch_differ(&state, plan) {
        Some(ResumeMismatch::StepsPerEpoch { stored, given })
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
        "resuming stage {stage} in {folder} after epoch {} of {}, step {} of the next",
        state.epochs_done,
        plan.epochs,
        state.steps_done()
    );
    Ok((module, optimizer, state))
}

/// Whether this process trains in a node group (feature `collective`).
fn in_node_group() -> bool {
    #[cfg(feature = "collective")]
    return crate::nodes::current().is_some();
    #[cfg(not(feature = "collective"))]
    false
}

/// The checkpoint a node group resumes from: the newest position every node holds (this
/// node's newest or the one before it, [`CheckpointState::previous`]); none when some node
/// holds none of them (the group starts fresh). Without a group, `newest` itself.
fn checkpoint_of_the_group<B: AutodiffBackend>(
    run: &RunDir,
    newest: Option<CheckpointState>,
    device: &B::Device,
) -> Result<Option<CheckpointState>, TrainError> {
    if !in_node_group() {
        return Ok(newest);
    }
    let held: Vec<CheckpointState> = newest
        .iter()
        .flat_map(|state| {
            let previous = state.previous.as_deref().cloned();
            [Some(state.clone()), previous]
        })
        .flatten()
        .collect();
    let positions: Vec<(usize, usize)> = held.iter().map(CheckpointState::position).collect();
    let common = newest_common_position::<B::InnerBackend>(&positions, device)?;
    let chosen = held.into_iter().find(|s| Some(s.position()) == common);
    if let Some(state) = &chosen {
        if Some(state.position()) != newest.as_ref().map(CheckpointState::position) {
            recommit(run, state)?;
            tracing::warn!(
                "resuming from the checkpoint before this node's newest (epoch {}, step {}): \
                 the newest one every node of the group holds",
                state.epochs_done,
                state.steps_done()
            );
        }
    }
    Ok(chosen)
}

/// The newest of `positions` that every node of the group holds.
#[cfg(feature = "collective")]
fn newest_common_position<B: burn::tensor::backend::Backend>(
    positions: &[(usize, usize)],
    device: &B::Device,
) -> Result<Option<(usize, usize)>, TrainError> {
    let every_nodes = crate::nodes::positions_of_every_node::<B>(positions, device)?;
    let mut common: Vec<(usize, usize)> = positions
        .iter()
        .copied()
        .filter(|p| every_nodes.iter().all(|held| held.contains(p)))
        .collect();
    common.sort();
    Ok(common.pop())
}

#[cfg(not(feature = "collective"))]
fn newest_common_position<B: burn::tensor::backend::Backend>(
    positions: &[(usize, usize)],
    _device: &B::Device,
) -> Result<Option<(usize, usize)>, TrainError> {
    Ok(positions.iter().copied().max())
}

/// The epoch lengths of a checkpoint inside an epoch and of `plan`, where both are known and
/// differ.
fn steps_per_epoch_differ(state: &CheckpointState, plan: &FitPlan) -> Option<(usize, usize)> {
    let stored = state.within_epoch.as_ref()?.steps_per_epoch?;
    let given = plan.steps_per_epoch?;
    (stored != given).then_some((stored, given))
}
