//! What the command lines say on stderr besides their results: the library's `tracing`
//! events, filtered by `RUST_LOG` when it is set, else by `-v` / `-q` (by default warnings and
//! errors reach the user: a `--resume` that finds no checkpoint, an image folder's unreadable
//! file, …); and the progress of long jobs — a bar in a terminal, else a line every
//! `--progress-every` seconds — which `-q` turns off.

use std::time::Duration;

use sskd_train::progress::{ProgressConfig, ProgressMode};
use tracing_subscriber::EnvFilter;

/// `-v` / `-q` / `--progress-every`: how much a command says on stderr besides its results.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq)]
pub struct Verbosity {
    /// More messages on stderr: `-v` progress notes, `-vv` debug, `-vvv` trace (`RUST_LOG`,
    /// when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Fewer messages on stderr: `-q` errors only and no progress, `-qq` nothing.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Without a terminal, a progress line every this many seconds (a terminal shows a bar).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, global = true, value_parser = seconds)]
    pub progress_every: f64,
}

impl Default for Verbosity {
    fn default() -> Self {
        Self {
            verbose: 0,
            quiet: 0,
            progress_every: 30.0,
        }
    }
}

/// A non-negative, finite number of seconds.
pub(crate) fn seconds(text: &str) -> Result<f64, super::ValueError> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(super::ValueError::NotSeconds),
        Err(source) => Err(super::ValueError::NotANumber(source)),
    }
}

impl Verbosity {
    /// The most detailed level shown: `warn` by default.
    pub fn level(&self) -> &'static str {
        match (self.verbose, self.quiet) {
            (0, 0) => "warn",
            (1, _) => "info",
            (2, _) => "debug",
            (_, 0) => "trace",
            (_, 1) => "error",
            _ => "off",
        }
    }

    /// How long jobs show their progress: off with `-q`, else a bar in a terminal and a line
    /// every `--progress-every` seconds without one.
    pub fn progress(&self) -> ProgressConfig {
        let mode = if self.quiet > 0 {
            ProgressMode::Off
        } else {
            ProgressMode::Auto
        };
        ProgressConfig {
            mode,
            every: Duration::from_secs_f64(self.progress_every),
        }
    }

    /// Sends `tracing` events to stderr at [`level`](Self::level) (or as `RUST_LOG` says). A
    /// subscriber installed before stays (the call changes nothing then).
    pub fn init(&self) {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(self.level()));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        verbosity: Verbosity,
    }

    fn level(args: &[&str]) -> &'static str {
        let args = std::iter::once("cli").chain(args.iter().copied());
        Cli::try_parse_from(args).unwrap().verbosity.level()
    }

    #[test]
    fn flags_choose_the_level() {
        assert_eq!(level(&[]), "warn");
        assert_eq!(level(&["-v"]), "info");
        assert_eq!(level(&["-vv"]), "debug");
        assert_eq!(level(&["-vvvv"]), "trace");
        assert_eq!(level(&["-q"]), "error");
        assert_eq!(level(&["-qq"]), "off");
        assert!(Cli::try_parse_from(["cli", "-v", "-q"]).is_err());
        let parse = |args: &[&str]| {
            let args = std::iter::once("cli").chain(args.iter().copied());
            Cli::try_parse_from(args).map(|cli| cli.verbosity.progress())
        };
        assert_eq!(parse(&[]).unwrap().every, Duration::from_secs(30));
        assert_eq!(
            parse(&["--progress-every", "0.5"]).unwrap().every,
            Duration::from_millis(500)
        );
        assert_eq!(parse(&["-q"]).unwrap().mode, ProgressMode::Off);
        assert!(parse(&["--progress-every", "-1"]).is_err());
    }
}
