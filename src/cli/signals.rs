//! Preemption: what SIGTERM (a batch scheduler, a spot instance going away) and SIGINT
//! (Ctrl-C) do to a training command.
//!
//! The first signal asks the run to stop after its current step ([`StopRequest`]): it writes
//! a checkpoint at that step, says where it is and how to resume, and the command exits with
//! [`EXIT_STOPPED`]. A second signal ends the process at once (exit 128 + the signal, as the
//! shell reports a signal's death). If no checkpoint is written within the deadline
//! (`--stop-deadline`), the process ends with [`EXIT_DEADLINE`]; the last checkpoint stays, and
//! an unfinished write leaves only files that the next start removes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use sskd_train::pause::StopRequest;
use sskd_train::TrainError;

/// The exit status of a run that stopped on a signal with a checkpoint at its last step:
/// `EX_TEMPFAIL` of `sysexits.h`, "try again later" (a scheduler can requeue on it).
pub const EXIT_STOPPED: u8 = 75;

/// The exit status of a run that did not reach the end of a step within the deadline after a
/// stop signal (no new checkpoint).
pub const EXIT_DEADLINE: u8 = 124;

/// `--stop-deadline`: how long a stop signal gives the run to finish its step.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq)]
pub struct StopArgs {
    /// After SIGTERM or SIGINT, seconds the run has to finish its current step and write a
    /// checkpoint there before the process ends anyway (a second signal ends it at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = super::logging::seconds)]
    pub stop_deadline: f64,
}

impl Default for StopArgs {
    fn default() -> Self {
        Self {
            stop_deadline: 30.0,
        }
    }
}

impl StopArgs {
    /// The process's stop request, set by SIGTERM and SIGINT ([`stop_on_signals`]).
    pub fn stop_request(&self) -> Result<StopRequest> {
        stop_on_signals(Duration::from_secs_f64(self.stop_deadline.max(0.0)))
    }
}

static STOP: OnceLock<StopRequest> = OnceLock::new();

/// The stop request SIGTERM and SIGINT set in this process, the handlers installed on the
/// first call (later calls return the same request; the first call's `deadline` holds).
pub fn stop_on_signals(deadline: Duration) -> Result<StopRequest> {
    if let Some(stop) = STOP.get() {
        return Ok(stop.clone());
    }
    let stop = StopRequest::new();
    let flag = stop.flag();
    for signal in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag as the earlier signals left it: a second
        // signal ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flag.clone())
            .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
            .with_context(|| format!("installing the handler of signal {signal}"))?;
    }
    spawn_deadline_watch(flag, deadline);
    Ok(STOP.get_or_init(|| stop).clone())
}

/// A thread that, once `flag` is set, says so and ends the process `deadline` later.
fn spawn_deadline_watch(flag: Arc<AtomicBool>, deadline: Duration) {
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "stop requested: finishing the current step and writing a checkpoint there (within \
             {} s; a second signal ends the run at once)",
            deadline.as_secs_f64()
        );
        std::thread::sleep(deadline);
        eprintln!(
            "no checkpoint within {} s of the stop request: ending without one (the last \
             checkpoint stays; --resume continues from it)",
            deadline.as_secs_f64()
        );
        std::process::exit(EXIT_DEADLINE.into());
    });
}

/// The exit of a command's `main`: success, [`EXIT_STOPPED`] after a requested stop (its
/// message says where the checkpoint is and how to resume), else 1 with the error and its
/// causes.
pub fn exit_status(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let stopped = error
                .chain()
                .any(|cause| matches!(cause.downcast_ref(), Some(TrainError::Stopped { .. })));
            if stopped {
                eprintln!("{error:#}");
                ExitCode::from(EXIT_STOPPED)
            } else {
                eprintln!("Error: {error:?}");
                ExitCode::FAILURE
            }
        }
    }
}
