//! Whole training steps of RepDistiller's baselines through the `step` code path
//! (`sskd::step`, what `examples/step.rs` runs) against RepDistiller's own loop in PyTorch
//! (`tools/make_baseline_step_fixtures.py`: `train_student.py`'s setup, `helper/loops.py` and
//! `helper/pretrain.py`): every method with its own modules under RepDistiller's names, the
//! pre-training steps of AB, FT and FSP, CRD with its memory bank and the batch's contrast
//! indices, and RepDistiller's own weights (`-r 1 -a 0`) one setting away; two SGD steps on one
//! batch from deterministic weights both sides draw.
//!
//! In float64, as the SSKD steps: every term of every step within 1e-8 relative, and for every
//! tensor of the student's state dict and of the method's state (frozen ones unchanged, CRD's
//! memory and constants updated) the update right within 1e-6 of its largest element. In
//! float32: the first step's terms within 1e-4.

mod common;

use burn::tensor::{DType, TensorData};
use common::steps::{
    baseline_fixture_dir as fixture_dir, check_state, check_terms, keys, method_state,
    read_case_in, weights, write_step_weights, write_weights, Case,
};
use sskd::config::apply_assignment;
use sskd::losses::MethodConfig;
use sskd::step::{run_steps, StepOptions, StepOutcome, StepStage};

/// The case's method with its settings applied as `--set method.NAME.FIELD=VALUE` would.
fn method_config(case: &Case) -> MethodConfig {
    let name = case.meta["method"].as_str().unwrap();
    let mut method = MethodConfig::published(name).unwrap();
    for (field, value) in case.meta["settings"].as_object().unwrap() {
        method = apply_assignment(method, &format!("{name}.{field}={value}")).unwrap();
    }
    method
}

/// Runs the case's steps in `precision`: the outcome, the student's and the method's initial
/// states.
fn run(case: &Case, precision: DType) -> (StepOutcome, Vec<(String, TensorData)>) {
    let dir = tempfile::tempdir().unwrap();
    let meta = &case.meta;
    let text = |key: &str| meta[key].as_str().unwrap().to_string();
    let (teacher, student) = write_step_weights(case, dir.path());
    let state = method_state(case);
    let method_state = (!state.is_empty()).then(|| write_weights(dir.path(), "method", &state));
    let options = StepOptions {
        stage: StepStage::Student {
            method: method_config(case),
            teacher_arch: text("teacher_arch"),
            teacher,
            student_arch: text("student_arch"),
            student,
            method_state,
        },
        batch: case.path.clone(),
        steps: meta["steps"].as_array().unwrap().len(),
        lr: meta["lr"].as_f64().unwrap(),
        momentum: meta["momentum"].as_f64().unwrap(),
        weight_decay: meta["weight_decay"].as_f64().unwrap(),
        precision,
        num_classes: meta["num_classes"].as_u64().unwrap() as usize,
        init: meta["init"].as_bool().unwrap(),
    };
    let outcome = run_steps(&options).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
    (outcome, state)
}

fn check(name: &str) {
    let case = read_case_in(&fixture_dir(), name);
    let (outcome, method_initial) = run(&case, DType::F64);
    let student_initial = weights(&case.name, "student", &keys(&case.meta["student_keys"]));
    check_state(&case, &outcome.state_dict, &student_initial, "");
    check_state(&case, &outcome.method_state, &method_initial, "method.");
    check_terms(&case, &outcome, usize::MAX, 1e-8, false);
    let (outcome, _) = run(&case, DType::F32);
    check_terms(&case, &outcome, 1, 1e-4, false);
}

#[test]
fn module_free_baselines_match_repdistiller() {
    for case in [
        "attention_wrn_16_2_wrn_16_1",
        "similarity_resnet20_resnet8",
        "rkd_resnet20_resnet8",
        "pkt_wrn_16_2_wrn_16_1",
        "nst_resnet20_resnet8",
        "kdsvd_resnet56_resnet20",
    ] {
        check(case);
    }
}

#[test]
fn baselines_with_their_own_modules_match_repdistiller() {
    for case in [
        "hint_wrn_16_2_wrn_16_1",
        "hint_repdistiller_weights_resnet20_resnet8",
        "correlation_wrn_16_2_wrn_16_1",
        "vid_wrn_16_2_wrn_16_1",
        "factor_wrn_16_2_wrn_16_1",
    ] {
        check(case);
    }
}

#[test]
fn crd_with_its_memory_bank_matches_repdistiller() {
    check("crd_wrn_16_2_wrn_16_1");
}

#[test]
fn two_stage_methods_match_repdistiller_in_both_stages() {
    for case in [
        "abound_wrn_16_2_wrn_16_1",
        "abound_init_wrn_16_2_wrn_16_1",
        "abound_init_resnet20_resnet8",
        "factor_init_wrn_16_2_wrn_16_1",
        "fsp_resnet20_resnet8",
        "fsp_init_resnet20_resnet8",
    ] {
        check(case);
    }
}

/// Every case the fixture script writes is checked by one of the tests above.
#[test]
fn every_fixture_is_checked() {
    let source = std::fs::read_to_string(file!()).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .replace(".safetensors", "");
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} is not checked"
        );
    }
}
