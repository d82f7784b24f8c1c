//! What happens when an epoch ends, one concern per listener: the metrics log
//! ([`MetricsLog`]), the record of the best epoch ([`SaveBest`]), the checkpoint policy
//! ([`Checkpoints`]), the plot ([`PlotRefresh`]) and the progress display
//! (`crate::progress::StageProgress`). [`crate::fit::fit`] computes one [`EpochSummary`] per
//! epoch and hands it to each in turn, as burn-train's event processors and checkpointing
//! strategies do.

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use sskd_models::checkpoint::save_record;

use crate::checkpoint::{write_checkpoint, CheckpointState};
use crate::metrics::EpochSummary;
use crate::plot::plot_run;
use crate::run_dir::RunDir;
use crate::TrainError;

/// A finished epoch as its listeners see it: the summary, the stage's committed state after
/// it, and the module and optimiser as they are now.
pub struct EpochEnd<'a, M, O> {
    /// The run folder.
    pub run: &'a RunDir,
    /// What the epoch did.
    pub summary: &'a EpochSummary,
    /// The stage's state with this epoch done (what a checkpoint commits).
    pub state: &'a CheckpointState,
    /// The module after the epoch.
    pub module: &'a M,
    /// The optimiser after the epoch.
    pub optimizer: &'a O,
}

/// Something done at the end of every epoch of a stage (and once at its end).
pub trait EpochListener<B: Backend, M, O> {
    /// Epoch `end.summary.epoch` has finished.
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError>;
}

/// Appends one line per epoch to the run's `metrics.jsonl`: the summary's figures (`epoch`
/// counted from 1, `lr`, `train`, `test`, `best`, `wall_seconds`) and the plan's `tags`.
pub struct MetricsLog {
    /// Fields written into every line (method, architectures, seed).
    pub tags: serde_json::Map<String, serde_json::Value>,
}

impl MetricsLog {
    /// The log line of `summary`.
    pub fn line(&self, summary: &EpochSummary) -> serde_json::Value {
        let mut line = self.tags.clone();
        let fields = serde_json::json!({
            "stage": summary.stage, "epoch": summary.epoch, "epochs": summary.epochs,
            "lr": summary.lr, "train": summary.report.to_json(), "test": summary.evaluation,
            "best": summary.best, "select_by": summary.select_by,
            "wall_seconds": summary.seconds,
        });
        if let serde_json::Value::Object(fields) = fields {
            line.extend(fields);
        }
        serde_json::Value::Object(line)
    }
}

impl<B: Backend, M, O> EpochListener<B, M, O> for MetricsLog {
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError> {
        end.run.log().append(&self.line(end.summary))
    }
}

/// Writes the module to `S-best.mpk` when the epoch is the best so far by the stage's
/// [`crate::metrics::SelectBy`].
pub struct SaveBest;

impl<B: AutodiffBackend, M: AutodiffModule<B>, O> EpochListener<B, M, O> for SaveBest {
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError> {
        if end.summary.improved {
            let path = end.run.path(&format!("{}-best.mpk", end.summary.stage));
            save_record(end.module.clone(), &path)?;
        }
        Ok(())
    }
}

/// The checkpoint policy: a checkpoint (`S-e{N}.model.mpk`, `S-e{N}.optim.mpk`, committed by
/// `S-checkpoint.json`) every `every` epochs and after the last; `every` 0: after the last only.
pub struct Checkpoints {
    /// Epochs between two checkpoints.
    pub every: usize,
    /// Keep the checkpoint before the newest (a node group: see
    /// [`CheckpointState::previous`]).
    pub keep_previous: bool,
}

impl Checkpoints {
    /// Whether a checkpoint is written after `epoch` (from 1) of `epochs`.
    pub fn due(&self, epoch: usize, epochs: usize) -> bool {
        epoch == epochs || (self.every > 0 && epoch.is_multiple_of(self.every))
    }
}

impl<B, M, O> EpochListener<B, M, O> for Checkpoints
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError> {
        let summary = end.summary;
        if !self.due(summary.epoch, summary.epochs) {
            return Ok(());
        }
        let (model_file, optimizer_file) = end.state.record_files();
        let state = CheckpointState {
            model_file,
            optimizer_file,
            ..end.state.clone()
        };
        write_checkpoint(
            end.run,
            &state,
            end.module,
            end.optimizer,
            self.keep_previous,
        )
    }
}

/// Redraws the run folder's plots (`S.png`) after every epoch, so the curves can be watched
/// while the stage runs. A plot that cannot be drawn is a warning, not the end of training.
pub struct PlotRefresh;

impl<B: Backend, M, O> EpochListener<B, M, O> for PlotRefresh {
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError> {
        if let Err(error) = plot_run(end.run) {
            tracing::warn!(
                "the plot of {} was not redrawn: {error}",
                end.run.root().display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_fall_due_every_n_epochs_and_after_the_last() {
        let every_2 = Checkpoints {
            every: 2,
            keep_previous: false,
        };
        let due: Vec<usize> = (1..=5).filter(|&e| every_2.due(e, 5)).collect();
        assert_eq!(due, [2, 4, 5]);
        let last_only = Checkpoints {
            every: 0,
            keep_previous: false,
        };
        assert_eq!((1..=3).filter(|&e| last_only.due(e, 3)).count(), 1);
    }
}
