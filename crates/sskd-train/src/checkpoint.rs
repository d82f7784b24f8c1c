//! A stage's checkpoint in its run folder, written so that a run killed at any instant resumes
//! from a whole one.
//!
//! `S-checkpoint.json` commits the checkpoint of stage `S` (epochs done, best so far, seed) and
//! names `S-e{N}.model.mpk` and `S-e{N}.optim.mpk` (after epoch `N`), or
//! `S-e{N}-s{K}.model.mpk` and `S-e{N}-s{K}.optim.mpk` (inside epoch `N`, after its step `K`).
//! Those two are written first and the JSON last, each atomically, so the JSON only ever names
//! complete records. A record file that no `S-checkpoint.json` names is the leftover of a write
//! that did not finish ([`remove_leftovers`]); it is never loaded.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sskd_models::atomic::write_atomically;
use sskd_models::checkpoint::{load_record, read_record, save_record, write_record};

use crate::metrics::{EpochResult, EpochTally};
use crate::run_dir::RunDir;
use crate::TrainError;

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
    /// Set when the checkpoint is inside epoch `epochs_done + 1`: where in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_epoch: Option<WithinEpoch>,
    /// The checkpoint before this one, its records kept, in a node group: the group resumes
    /// from the newest checkpoint every node holds, and a node killed while writing one holds
    /// only the one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<CheckpointState>>,
}

/// Where inside an epoch a checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithinEpoch {
    /// Steps of the run's epochs, when known (a resume with another count is refused).
    pub steps_per_epoch: Option<usize>,
    /// The epoch's steps done and their running sums.
    pub tally: EpochTally,
}

impl CheckpointState {
    /// The state of `stage` before its first epoch: nothing done, no records.
    pub fn fresh(stage: &str, seed: u64) -> Self {
        Self {
            stage: stage.to_string(),
            epochs_done: 0,
            seed,
            best: None,
            last: None,
            model_file: String::new(),
            optimizer_file: String::new(),
            within_epoch: None,
            previous: None,
        }
    }

    /// Where the checkpoint is: (epochs done, steps of the next epoch done), ordered as
    /// training goes.
    pub fn position(&self) -> (usize, usize) {
        (self.epochs_done, self.steps_done())
    }

    /// The record files it names, its previous checkpoint's included.
    fn named_files(&self) -> Vec<String> {
        let mut files = vec![self.model_file.clone(), self.optimizer_file.clone()];
        if let Some(previous) = &self.previous {
            files.extend(previous.named_files());
        }
        files
    }

    /// Steps done of the epoch the checkpoint is in (0 at an epoch's end).
    pub fn steps_done(&self) -> usize {
        self.within_epoch.as_ref().map_or(0, |w| w.tally.steps)
    }

    /// The record files of this checkpoint, `S-e{N}.model.mpk` and `S-e{N}.optim.mpk` (`N` the
    /// epoch, from 1, of the last step done), with `-s{K}` after `N` inside an epoch.
    pub fn record_files(&self) -> (String, String) {
        let (stage, steps) = (&self.stage, self.steps_done());
        let name = match steps {
            0 => format!("{stage}-e{}", self.epochs_done),
            _ => format!("{stage}-e{}-s{steps}", self.epochs_done + 1),
        };
        (format!("{name}.model.mpk"), format!("{name}.optim.mpk"))
    }
}

pub(crate) fn io_error(path: &Path, reason: impl ToString) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The file that commits a checkpoint of `stage`, `S-checkpoint.json`.
pub fn checkpoint_json(run: &RunDir, stage: &str) -> PathBuf {
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
/// records no checkpoint names any more. With `keep_previous` (a node group) the checkpoint
/// committed before stays, named as `previous`; else its records go.
pub fn write_checkpoint<B, M, O>(
    run: &RunDir,
    state: &CheckpointState,
    module: &M,
    optimizer: &O,
    keep_previous: bool,
) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let old = read_checkpoint(run, &state.stage)?;
    let state = CheckpointState {
        previous: old.clone().filter(|_| keep_previous).map(|old| {
            Box::new(CheckpointState {
                previous: None,
                ..old
            })
        }),
        ..state.clone()
    };
    save_record(module.clone(), &run.path(&state.model_file))?;
    write_record::<B, _>(optimizer.to_record(), &run.path(&state.optimizer_file))?;
    commit(run, &state, old)
}

/// Writes `state`'s JSON (atomically: the commit), then removes the records of `old` that it
/// does not name.
fn commit(
    run: &RunDir,
    state: &CheckpointState,
    old: Option<CheckpointState>,
) -> Result<(), TrainError> {
    let json = checkpoint_json(run, &state.stage);
    let text = serde_json::to_string_pretty(state).map_err(|e| io_error(&json, e))?;
    write_atomically(&json, text.as_bytes())?;
    let named = state.named_files();
    for file in old.map(|old| old.named_files()).unwrap_or_default() {
        if !named.contains(&file) {
            let _ = std::fs::remove_file(run.path(&file));
        }
    }
    Ok(())
}

/// Commits `state`, one of the checkpoints `run` holds (its newest's previous), as the newest
/// one, without a previous: the records of the newest it replaces are removed.
pub fn recommit(run: &RunDir, state: &CheckpointState) -> Result<(), TrainError> {
    let old = read_checkpoint(run, &state.stage)?;
    let state = CheckpointState {
        previous: None,
        ..state.clone()
    };
    commit(run, &state, old)
}

/// `module` and `optimizer` with the records of the checkpoint `state` of `run`.
pub fn load_checkpoint<B, M, O>(
    run: &RunDir,
    state: &CheckpointState,
    module: M,
    optimizer: O,
    device: &B::Device,
) -> Result<(M, O), TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let module = load_record(module, &run.path(&state.model_file), device)?;
    let record = read_record::<B, O::Record>(&run.path(&state.optimizer_file), device)?;
    Ok((module, optimizer.load_record(record)))
}

/// Removes the leftovers of `stage`'s checkpoint writes that did not finish from `run`: the
/// temporary files of atomic writes (`*.partial`) and record files `S-e*.{model,optim}.mpk`
/// that its `S-checkpoint.json` does not name. Returns the files removed.
pub fn remove_leftovers(run: &RunDir, stage: &str) -> Result<Vec<PathBuf>, TrainError> {
    let mut removed = sskd_models::atomic::remove_partial_files(run.root())?;
    let named = read_checkpoint(run, stage)?
        .map(|state| state.named_files())
        .unwrap_or_default();
    let entries = std::fs::read_dir(run.root()).map_err(|e| io_error(run.root(), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_record_file_of(stage, &name) && !named.contains(&name) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Whether `name` is a checkpoint record file of `stage`: `S-e{N}[-s{K}].{model,optim}.mpk`.
fn is_record_file_of(stage: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(stage).and_then(|r| r.strip_prefix("-e")) else {
        return false;
    };
    let Some(position) = rest
        .strip_suffix(".model.mpk")
        .or_else(|| rest.strip_suffix(".optim.mpk"))
    else {
        return false;
    };
    let mut parts = position.splitn(2, "-s");
    let number = |part: Option<&str>| {
        part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let epoch = number(parts.next());
    epoch && parts.next().is_none_or(|steps| number(Some(steps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_files_are_told_from_other_files() {
        for name in [
            "teacher-e3.model.mpk",
            "teacher-e3.optim.mpk",
            "teacher-e12-s500.model.mpk",
        ] {
            assert!(is_record_file_of("teacher", name), "{name}");
        }
        for name in [
            "teacher-best.mpk",
            "teacher-last.mpk",
            "teacher-checkpoint.json",
            "student-e3.model.mpk",
            "teacher-e.model.mpk",
            "teacher-e3-s.model.mpk",
            "teacher-e3x.model.mpk",
            "student-init-e1.model.mpk",
        ] {
            assert!(!is_record_file_of("teacher", name), "{name}");
        }
        assert!(is_record_file_of(
            "student-init",
            "student-init-e1.model.mpk"
        ));
        assert!(!is_record_file_of("student", "student-init-e1.model.mpk"));
    }

    #[test]
    fn record_files_say_where_the_checkpoint_is() {
        let mut state = CheckpointState {
            epochs_done: 2,
            ..CheckpointState::fresh("head", 0)
        };
        assert_eq!(state.record_files().0, "head-e2.model.mpk");
        state.within_epoch = Some(WithinEpoch {
            steps_per_epoch: Some(10),
            tally: EpochTally {
                steps: 4,
                ..EpochTally::default()
            },
        });
        assert_eq!(state.record_files().1, "head-e3-s4.optim.mpk");
    }
}
