//! Pauses inside an epoch: checkpoints every N steps or every M minutes
//! ([`StepCheckpoints`]), and a requested stop ([`StopRequest`]: SIGTERM, SIGINT) that ends a
//! run after its current step with a checkpoint at that step.
//!
//! [`crate::fit::fit`] hands each epoch an [`EpochWatch`]: it shows the steps (the progress
//! display), keeps the epoch's running sums ([`EpochTally`], what a checkpoint inside the epoch
//! stores) and asks the epoch to pause where a checkpoint falls due or a stop was requested.
//! In a node group the pause is agreed on: every node pauses after the same step (the step
//! count is the same everywhere; a clock or a signal is local, so those are summed over the
//! nodes after every step).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::metrics::{EpochReport, EpochTally, StepLog, StepObserver};
use crate::TrainError;

/// A request to stop a run after its current step, with a checkpoint at that step. Clones
/// share one flag; a signal handler sets it through [`StopRequest::flag`]
/// (`signal_hook::flag::register`).
#[derive(Debug, Clone, Default)]
pub struct StopRequest(Arc<AtomicBool>);

impl StopRequest {
    /// A request not made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop after its current step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The shared flag (for a signal handler to set).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// Checkpoints inside an epoch, besides the ones at epoch ends: every `every_steps` training
/// steps of the epoch (counted from its start, so a resumed run keeps the same ones) and every
/// `every_seconds` of training, whichever falls due first. Both off (0): none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCheckpoints {
    /// A checkpoint after every this many steps of an epoch; 0: not by count.
    pub every_steps: usize,
    /// A checkpoint once this many seconds of training have passed since the last one (or the
    /// start); 0: not by time.
    pub every_seconds: f64,
}

impl StepCheckpoints {
    /// Whether the count falls due after `steps_done` steps of an epoch.
    pub fn due_by_count(&self, steps_done: usize) -> bool {
        self.every_steps > 0 && steps_done.is_multiple_of(self.every_steps)
    }

    /// Whether the clock falls due `since` after the last checkpoint.
    pub fn due_by_time(&self, since: Duration) -> bool {
        self.every_seconds > 0.0 && since.as_secs_f64() >= self.every_seconds
    }
}

/// Why an epoch paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// A checkpoint inside the epoch fell due; the epoch goes on after it.
    Checkpoint,
    /// A stop was requested: a checkpoint, then the run ends.
    Stop,
}

/// What [`crate::fit::fit`] hands an epoch as its [`StepObserver`]: the progress display, the
/// epoch's running sums, and the pauses of [`StepCheckpoints`] and [`StopRequest`].
pub struct EpochWatch<'a, B: Backend> {
    display: &'a mut dyn StepObserver,
    tally: EpochTally,
    policy: StepCheckpoints,
    stop: &'a StopRequest,
    started: Instant,
    last_checkpoint: Instant,
    paused: Option<Pause>,
    error: Option<TrainError>,
    device: B::Device,
}

impl<'a, B: Backend> EpochWatch<'a, B> {
    /// A watch of an epoch that starts with `tally` (its steps before, from a checkpoint inside
    /// it; empty at its start), showing steps on `display`. `device` carries the agreement of
    /// a node group.
    pub fn new(
        display: &'a mut dyn StepObserver,
        tally: EpochTally,
        (policy, stop): (StepCheckpoints, &'a StopRequest),
        device: &B::Device,
    ) -> Self {
        let now = Instant::now();
        Self {
            display,
            tally,
            policy,
            stop,
            started: now,
            last_checkpoint: now,
            paused: None,
            error: None,
            device: device.clone(),
        }
    }

    /// Steps of the epoch done (before this run of it included).
    pub fn steps_done(&self) -> usize {
        self.tally.steps
    }

    /// The pause the epoch just made, if any (and the error that made it pause, if the nodes
    /// could not agree).
    pub fn take_pause(&mut self) -> Result<Option<Pause>, TrainError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let pause = self.paused.take();
        if pause.is_some() {
            self.last_checkpoint = Instant::now();
        }
        Ok(pause)
    }

    /// The running sums as a checkpoint stores them: the training time so far in
    /// `earlier_seconds`.
    pub fn tally(&self) -> EpochTally {
        EpochTally {
            earlier_seconds: self.tally.earlier_seconds + self.started.elapsed().as_secs_f64(),
            ..self.tally.clone()
        }
    }

    /// The report of the whole epoch.
    pub fn report(&self) -> EpochReport {
        self.tally.report(self.started.elapsed().as_secs_f64())
    }

    /// The pause after the step just done, agreed on by the nodes of a group.
    fn decide(&self) -> Result<Option<Pause>, TrainError> {
        let by_count = self.policy.due_by_count(self.tally.steps);
        let local = [
            self.stop.is_requested(),
            self.policy.due_by_time(self.last_checkpoint.elapsed()),
        ];
        let [stop, by_time] = agree_over_nodes::<B>(local, &self.device)?;
        Ok(if stop {
            Some(Pause::Stop)
        } else if by_count || by_time {
            Some(Pause::Checkpoint)
        } else {
            None
        })
    }
}

impl<B: Backend> StepObserver for EpochWatch<'_, B> {
    fn step(&mut self, step: &StepLog) {
        self.display.step(step);
        self.tally.add_step(step);
    }

    fn pause(&mut self) -> bool {
        match self.decide() {
            Ok(pause) => {
                self.paused = pause;
                pause.is_some()
            }
            Err(error) => {
                self.error = Some(error);
                true
            }
        }
    }
}

/// Each flag set on any node (the flags as they are here without a node group).
fn agree_over_nodes<B: Backend>(
    flags: [bool; 2],
    device: &B::Device,
) -> Result<[bool; 2], TrainError> {
    #[cfg(feature = "collective")]
    if crate::nodes::current().is_some() {
        let values = flags.map(|flag| if flag { 1.0f32 } else { 0.0 });
        let summed = crate::nodes::sum_over_nodes(burn::tensor::Tensor::<B, 1>::from_floats(
            values, device,
        ))?;
        let summed: Vec<f32> = summed
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        return Ok([0, 1].map(|k| summed.get(k).is_some_and(|&v| v > 0.0)));
    }
    let _ = device;
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_checkpoints_fall_due_by_count_and_by_time() {
        let every_3 = StepCheckpoints {
            every_steps: 3,
            every_seconds: 0.0,
        };
        let due: Vec<usize> = (1..=7).filter(|&s| every_3.due_by_count(s)).collect();
        assert_eq!(due, [3, 6]);
        assert!(!every_3.due_by_time(Duration::from_secs(3600)));
        let every_minute = StepCheckpoints {
            every_steps: 0,
            every_seconds: 60.0,
        };
        assert!(!every_minute.due_by_count(60));
        assert!(!every_minute.due_by_time(Duration::from_secs(59)));
        assert!(every_minute.due_by_time(Duration::from_secs(60)));
    }

    #[test]
    fn a_stop_request_is_shared_by_its_clones() {
        let request = StopRequest::new();
        let handler_side = request.flag();
        assert!(!request.clone().is_requested());
        handler_side.store(true, Ordering::SeqCst);
        assert!(request.is_requested());
    }
}
