//! Where the library's `tracing` events go in the command lines: to stderr, filtered by
//! `RUST_LOG` when it is set, else by `-v` / `-q`. By default warnings and errors reach the
//! user (a `--resume` that finds no checkpoint, an image folder's unreadable file, …).

use tracing_subscriber::EnvFilter;

/// `-v` / `-q`: how much a command says on stderr besides its results.
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verbosity {
    /// More messages on stderr: `-v` progress notes, `-vv` debug, `-vvv` trace (`RUST_LOG`,
    /// when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Fewer messages on stderr: `-q` errors only, `-qq` none.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
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
    }
}
