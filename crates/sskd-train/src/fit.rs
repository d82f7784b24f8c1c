//! The epoch loop shared by the three stages ([`fit`]): learning-rate schedule, evaluation after
//! every epoch, a line of the run folder's JSONL log, a progress bar, best/last tracking,
//! checkpoints ([`crate::checkpoint`]) and resume.
//!
//! Every random choice of training derives from (seed, epoch, sample index)
//! (`sskd_augment::rng::sample_rng`), so the generator state of a run is its seed and the
//! epoch it resumes at: a resumed run repeats the uninterrupted one exactly.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use sskd_models::checkpoint::save_record;

use crate::checkpoint::{
    checkpoint_json, io_error, load_checkpoint, read_checkpoint, write_checkpoint, CheckpointState,
};
use crate::metrics::{EpochReport, EpochResult, Evaluation};
use crate::run_dir::RunDir;
use crate::schedule::LrSchedule;
use crate::TrainError;

/// What a stage's loop does.
#[derive(Debug, Clone)]
pub struct FitPlan {
    /// Stage name, used in file names and log lines (`teacher`, `head`, `student`, ...).
    pub stage: String,
    /// Number of epochs.
    pub epochs: usize,
    /// The learning rate per epoch.
    pub schedule: LrSchedule,
    /// A checkpoint every this many epochs (and always after the last); 0 = only the last.
    pub checkpoint_every: usize,
    /// Seed of the run (recorded in checkpoints; a resume with another seed is refused).
    pub seed: u64,
    /// Continue from the stage's checkpoint if there is one.
    pub resume: bool,
    /// Select the best epoch by the SS-head accuracy instead of top-1 (stage 2).
    pub select_by_ss: bool,
    /// Extra fields written into every log line (method, architectures, ...).
    pub tags: serde_json::Map<String, serde_json::Value>,
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

fn progress_bar(stage: &str, epochs: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} epochs, {elapsed} elapsed, eta {eta} {msg}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_string());
    bar.set_position(done as u64);
    bar.reset_eta();
    bar
}

/// Runs the epochs of `plan`: for each, `train_epoch(module, optimizer, epoch, lr)`, then
/// `evaluate(module)`, a log line, the best-so-far record, and a checkpoint when due. With
/// `plan.resume` and a committed checkpoint of the stage, module and optimizer are restored
/// from it and the loop continues at the next epoch.
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
    T: FnMut(M, &mut O, usize, f64) -> Result<(M, EpochReport), TrainError>,
    E: FnMut(&M) -> Result<Evaluation, TrainError>,
{
    let log = run.log();
    let (mut module, mut optimizer, mut state) = restore(run, plan, module, optimizer, device)?;
    if state.epochs_done > 0 {
        log.append(&serde_json::json!({"event": "resume", "stage": plan.stage, "from_epoch": state.epochs_done}))?;
    }
    let bar = progress_bar(&plan.stage, plan.epochs, state.epochs_done);
    for epoch in state.epochs_done..plan.epochs {
        let started = Instant::now();
        let lr = plan.schedule.lr(epoch);
        let (next, report) = train_epoch(module, &mut optimizer, epoch, lr)?;
        module = next;
        let evaluation = evaluate(&module)?;
        let result = EpochResult { epoch, evaluation };
        let improved = state.best.is_none_or(|best| {
            evaluation.score(plan.select_by_ss) > best.evaluation.score(plan.select_by_ss)
        });
        if improved {
            state.best = Some(result);
            save_record(
                module.clone(),
                &run.path(&format!("{}-best.mpk", plan.stage)),
            )?;
        }
        state.last = Some(result);
        state.epochs_done = epoch + 1;
        let mut line = plan.tags.clone();
        let fields = serde_json::json!({
            "stage": plan.stage, "epoch": epoch, "lr": lr, "train": report.to_json(),
            "test": evaluation, "best": state.best, "wall_seconds": started.elapsed().as_secs_f64(),
        });
        if let serde_json::Value::Object(fields) = fields {
            line.extend(fields);
        }
        log.append(&serde_json::Value::Object(line))?;
        let last_epoch = epoch + 1 == plan.epochs;
        let due = plan.checkpoint_every > 0 && (epoch + 1) % plan.checkpoint_every == 0;
        if due || last_epoch {
            state.model_file = format!("{}-e{}.model.mpk", plan.stage, epoch + 1);
            state.optimizer_file = format!("{}-e{}.optim.mpk", plan.stage, epoch + 1);
            write_checkpoint(run, &state, &module, &optimizer)?;
        }
        bar.set_message(format!(
            "loss {:.3}, test {:.2}% (best {:.2}%)",
            report
                .terms
                .get("total")
                .or(report.terms.values().next())
                .copied()
                .unwrap_or(0.0),
            evaluation.score(plan.select_by_ss),
            state
                .best
                .map_or(0.0, |b| b.evaluation.score(plan.select_by_ss)),
        ));
        bar.inc(1);
    }
    bar.finish();
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
        stage: plan.stage.clone(),
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
    let existing = read_checkpoint(run, &plan.stage)?;
    let Some(state) = existing.filter(|_| plan.resume) else {
        if plan.resume {
            tracing::warn!(
                "no checkpoint of stage {} in {}: starting fresh",
                plan.stage,
                run.root().display()
            );
        }
        return Ok((module, optimizer, fresh));
    };
    let json = checkpoint_json(run, &plan.stage);
    if state.seed != plan.seed {
        return Err(io_error(
            &json,
            format!(
                "the checkpoint was made with seed {}, this run uses seed {}",
                state.seed, plan.seed
            ),
        ));
    }
    if state.epochs_done > plan.epochs {
        return Err(io_error(
            &json,
            format!(
                "the checkpoint has {} epochs done, more than the {} planned",
                state.epochs_done, plan.epochs
            ),
        ));
    }
    let (module, optimizer) = load_checkpoint(run, &state, module, optimizer, device)?;
    Ok((module, optimizer, state))
}
