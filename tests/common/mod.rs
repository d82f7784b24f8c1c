//! Shared helpers of the integration tests: the fixture readers of `sskd-testing` and running
//! the example binaries.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use sskd_testing::*;

pub mod steps;

/// The example binary `cargo test` builds next to the test binaries, or the program `name` in
/// the folder `SSKD_EXAMPLE_DIR` names (CI: the same example built by a project outside the
/// workspace, `tests/downstream/`).
pub fn example_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SSKD_EXAMPLE_DIR") {
        return PathBuf::from(dir).join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    }
    let test_binary = std::env::current_exe().expect("test binary path");
    let target_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    target_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Stdout and stderr of a run that must have succeeded.
pub fn succeeded(output: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

/// Stderr of a run that must have failed.
pub fn failed(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected a failure: {text}");
    text
}
