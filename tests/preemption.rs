//! Preemption of a training command: SIGTERM in the middle of an epoch ends the `cifar100`
//! example after its current step with a checkpoint at that step and exit status 75, and the
//! same command with `--resume` ends where the uninterrupted run ends, bit for bit.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::Tensor;
use common::{example_binary, repo, succeeded};
use sskd::models::checkpoint::load_record;
use sskd::models::create_model;
use sskd::train::checkpoint::read_checkpoint;
use sskd::train::run_dir::RunDir;

/// resnet8 teachers on the ten-image fixture, batches of 2: five steps an epoch.
fn teacher_command(out: &Path, epochs: usize) -> Command {
    let mut command = Command::new(example_binary("cifar100"));
    command
        .args([
            "teacher",
            "--teacher-arch",
            "resnet8",
            "--student-arch",
            "resnet8",
        ])
        .args(["--set", "batch_size=2", "--set", "test_batch_size=5"])
        .args(["--set", &format!("teacher_stage.epochs={epochs}")])
        .args(["--set", "checkpoint_every=1", "-q"])
        .arg("--data")
        .arg(repo("tests/fixtures/data/cifar100_binary"))
        .arg("--out")
        .arg(out)
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal");
    command
}

/// The logits of the record `path` (a resnet8 of 100 classes) on a fixed input.
fn logits_of(path: &Path) -> Vec<f32> {
    let device = Default::default();
    let model = create_model::<Flex>("resnet8", 100, &device).unwrap();
    let model = load_record(model, path, &device).unwrap();
    let values: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|v| (v % 97) as f32 / 97.0)
        .collect();
    let input = Tensor::<Flex, 1>::from_floats(values.as_slice(), &device).reshape([2, 3, 32, 32]);
    model.forward(input).logits.into_data().to_vec().unwrap()
}

/// The `train` and `test` figures of each epoch line of a run folder's log.
fn epoch_figures(dir: &Path) -> Vec<(serde_json::Value, serde_json::Value)> {
    let lines = RunDir::create(dir).unwrap().log().read().unwrap();
    sskd::train::run_dir::latest_epochs(&lines)
        .iter()
        .map(|line| (line["train"]["terms"].clone(), line["test"].clone()))
        .collect()
}

#[test]
fn sigterm_mid_epoch_checkpoints_that_step_and_the_resume_ends_bit_for_bit_equal() {
    const EPOCHS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let (stopped, whole) = (dir.path().join("stopped"), dir.path().join("whole"));
    succeeded(&teacher_command(&whole, EPOCHS).output().unwrap());

    let child = teacher_command(&stopped, EPOCHS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // After the second epoch's line the run is inside a later epoch (or evaluating one).
    let started = Instant::now();
    let log = stopped.join("metrics.jsonl");
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no epoch ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("stopped on request in stage teacher")
            && stderr.contains("--resume continues there"),
        "{stderr}"
    );
    let state = read_checkpoint(&RunDir::create(&stopped).unwrap(), "teacher")
        .unwrap()
        .expect("a checkpoint at the step");
    let within = state
        .within_epoch
        .as_ref()
        .expect("a checkpoint inside an epoch");
    assert!(
        state.epochs_done < EPOCHS,
        "the stop came after the run: {state:?}"
    );
    assert_eq!(within.steps_per_epoch, Some(5));
    assert!((1..=5).contains(&within.tally.steps));
    let (model_file, _) = state.record_files();
    assert_eq!(state.model_file, model_file);
    assert!(stopped.join(&state.model_file).is_file());

    succeeded(
        &teacher_command(&stopped, EPOCHS)
            .arg("--resume")
            .output()
            .unwrap(),
    );
    assert_eq!(
        logits_of(&whole.join("teacher-last.mpk")),
        logits_of(&stopped.join("teacher-last.mpk"))
    );
    assert_eq!(epoch_figures(&whole), epoch_figures(&stopped));
}
