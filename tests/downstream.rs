//! sskd used from a project outside the workspace (`tests/downstream/`, built by `.ci/run` with
//! no `[patch]`) against the workspace's own build of the same examples: the SSKD steps of
//! `as_dependency` print the same values, and a float64 student step of `step` writes the same
//! bytes. `SSKD_DOWNSTREAM_BIN` names the folder of that project's programs; the tests are
//! `#[ignore]`d so that plain `cargo test` (which has no such build) skips them, and CI runs them
//! with `--ignored`. The two-node run from outside is `tests/multi_node.rs` with
//! `SSKD_EXAMPLE_DIR` pointing at the same folder.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{example_binary, succeeded};

/// The outside project's program `name`.
fn downstream_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("SSKD_DOWNSTREAM_BIN")
        .expect("SSKD_DOWNSTREAM_BIN: the folder of tests/downstream's built programs");
    PathBuf::from(dir).join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Stdout of `program` run from the repository root with `args`; its stderr goes to ours.
fn stdout_of(program: PathBuf, args: &[&str]) -> String {
    let output = Command::new(&program)
        .args(args)
        .current_dir(sskd_testing::repo(""))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text = succeeded(&output);
    eprintln!(
        "{}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    assert!(!text.contains("panicked"), "{text}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs tests/downstream built outside the workspace (.ci/run)"]
fn as_dependency_prints_the_same_steps_from_outside() {
    let args = ["--steps", "6"];
    let inside = stdout_of(example_binary("as_dependency"), &args);
    let outside = stdout_of(downstream_binary("as_dependency"), &args);
    assert!(inside.contains("step 5:"), "{inside}");
    assert_eq!(
        inside, outside,
        "the same SSKD steps, printed to 4 decimals"
    );
}

#[test]
#[ignore = "needs tests/downstream built outside the workspace (.ci/run)"]
fn float64_step_is_bit_identical_from_outside() {
    use common::steps::{read_case, sskd_step_command, write_step_weights};
    let case = read_case("sskd_vgg13_vgg8");
    let dir = tempfile::tempdir().unwrap();
    let weights = write_step_weights(&case, dir.path());
    let written: Vec<Vec<u8>> = [example_binary("step"), downstream_binary("step")]
        .into_iter()
        .enumerate()
        .map(|(run, program)| {
            let output = dir.path().join(format!("out{run}.safetensors"));
            let terms = dir.path().join(format!("terms{run}.json"));
            let status = sskd_step_command(&program, &case, ["vgg13", "vgg8"], &weights, &output)
                .args(["--steps", "2", "--precision", "f64"])
                .arg("--terms")
                .arg(&terms)
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            succeeded(&status);
            let mut bytes = std::fs::read(&output).unwrap();
            bytes.extend(std::fs::read(&terms).unwrap());
            bytes
        })
        .collect();
    assert!(written[0].len() > 1000);
    assert!(
        written[0] == written[1],
        "the float64 state dicts and terms differ between the workspace's build and the outside project's"
    );
}
