//! A stage's checkpoint in its run folder, written so that a run killed at any instant resumes
//! from a whole one.
//!
//! `S-checkpoint.json` commits the checkpoint of stage `S` (epochs done, best so far, seed) and
//! names `S-e{N}.model.mpk` and `S-e{N}.optim.mpk`. Those two are written first and the JSON
//! last, each atomically, so the JSON only ever names complete records.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sskd_models::atomic::write_atomically;
use sskd_models::checkpoint::{load_record, read_record, save_record, write_record};

use crate::metrics::EpochResult;
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
/// records of the previous checkpoint.
pub fn write_checkpoint<B, M, O>(
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
