//! The epoch loop shared by the three stages: learning-rate schedule, evaluation after every
//! epoch, the JSONL log, a progress bar, best/last tracking, checkpoints and resume.
//!
//! A run folder holds, per stage `S`:
//! - `metrics.jsonl`: one line per finished epoch (`"stage": S`), synced before the next epoch
//!   starts, plus `{"event": "resume"}` lines; when a resumed run redoes an epoch, the later
//!   line for that epoch is the one that counts ([`latest_epochs`]);
//! - `S-checkpoint.json`: the committed checkpoint (epochs done, best so far, seed) naming
//!   `S-e{N}.model.mpk` and `S-e{N}.optim.mpk`. Those two are written first and the JSON last,
//!   each atomically, so a run killed at any instant resumes from a whole checkpoint;
//! - `S-best.mpk` (the module at the best evaluation so far) and `S-last.mpk` (after the last
//!   epoch).
//!
//! Every random choice of training derives from (seed, epoch, sample index)
//! (`sskd_augment::rng::sample_rng`), so the generator state of a run is its seed and the
//! epoch it resumes at: a resumed run repeats the uninterrupted one exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sskd_models::checkpoint::{read_record, save_record, write_atomically, write_record};

use crate::metrics::JsonlLog;
use crate::schedule::LrSchedule;
use crate::stages::EpochReport;
use crate::TrainError;

/// A run folder (created if missing).
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens or creates the folder `root`.
    pub fn create(root: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(root).map_err(|e| TrainError::Io {
            path: root.to_path_buf(),
            reason: format!("cannot create the run folder: {e}"),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the run.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The per-epoch metrics log, `metrics.jsonl`.
    pub fn log(&self) -> JsonlLog {
        JsonlLog::new(&self.path("metrics.jsonl"))
    }
}

/// Accuracies of one evaluation, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Top-1 of the classifier (0 when the stage has none).
    pub top1: f64,
    /// Top-5 of the classifier.
    pub top5: f64,
    /// Accuracy of the SS head (stages 2 and 3), when measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ss_top1: Option<f64>,
}

impl Evaluation {
    /// The number the stage is selected on: top-1, or the SS-head accuracy for stage 2.
    fn score(&self, by_ss: bool) -> f64 {
        if by_ss {
            self.ss_top1.unwrap_or(0.0)
        } else {
            self.top1
        }
    }
}

/// An epoch and its evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochResult {
    /// 0-based epoch.
    pub epoch: usize,
    /// Its evaluation.
    pub evaluation: Evaluation,
}

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

/// The committed state of a checkpoint, `S-checkpoint.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Stage name.
    pub stage: String,
    /// Epochs finished (the next epoch to run).
    pub epochs_done: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Best epoch so far.
    pub best: Option<EpochResult>,
    /// The last finished epoch.
    pub last: Option<EpochResult>,
    /// Module record file (in the run folder).
    pub model_file: String,
    /// Optimizer record file (in the run folder).
    pub optimizer_file: String,
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

fn io_error(path: &Path, reason: impl ToString) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn checkpoint_json(run: &RunDir, stage: &str) -> PathBuf {
    run.path(&format!("{stage}-checkpoint.json"))
}

/// The committed checkpoint of `stage` in `run`, if any.
pub fn read_checkpoint(run: &RunDir, stage: &str) -> Result<Option<CheckpointState>, TrainError> {
    let path = checkpoint_json(run, stage);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| io_error(&path, format!("not a checkpoint description: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, e)),
    }
}

/// Writes a checkpoint: the two records, then the JSON that commits them, then removes the
/// records of the previous checkpoint.
fn write_checkpoint<B, M, O>(
    run: &RunDir,
    state: &CheckpointState,
    module: &M,
    optimizer: &O,
) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let previous = read_checkpoint(run, &state.stage)?;
    save_record(module.clone(), &run.path(&state.model_file))?;
    write_record::<B, _>(optimizer.to_record(), &run.path(&state.optimizer_file))?;
    let json = checkpoint_json(run, &state.stage);
    let text = serde_json::to_string_pretty(state).map_err(|e| io_error(&json, e))?;
    write_atomically(&json, text.as_bytes())?;
    if let Some(previous) = previous {
        for file in [previous.model_file, previous.optimizer_file] {
            if file != state.model_file && file != state.optimizer_file {
                let _ = std::fs::remove_file(run.path(&file));
            }
        }
    }
    Ok(())
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
        let removed = sskd_models::checkpoint::remove_partial_files(run.root())?;
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
    let module =
        sskd_models::checkpoint::load_record(module, &run.path(&state.model_file), device)?;
    let record = read_record::<B, O::Record>(&run.path(&state.optimizer_file), device)?;
    Ok((module, optimizer.load_record(record), state))
}

/// The latest log line of each (stage, epoch) in `lines` (a resumed run may log an epoch
/// twice; the later line wins), in order of stage first appearance and epoch.
pub fn latest_epochs(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut latest: Vec<serde_json::Value> = Vec::new();
    for line in lines
        .iter()
        .filter(|l| l.get("epoch").is_some() && l.get("stage").is_some())
    {
        let key = (&line["stage"], &line["epoch"]);
        match latest
            .iter_mut()
            .find(|l| (&l["stage"], &l["epoch"]) == key)
        {
            Some(slot) => *slot = line.clone(),
            None => latest.push(line.clone()),
        }
    }
    latest
}
