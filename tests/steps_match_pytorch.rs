//! Whole training steps of the `step` code path (`sskd::step`, what `examples/step.rs` runs)
//! against the released SSKD code's steps in PyTorch (`tools/make_step_fixtures.py`): SSKD
//! students of the published pairs with a WRN, ResNet, VGG, MobileNetV2 and ShuffleNet
//! student (all eleven published CIFAR-100 pairs), a KD student, and the cross-entropy teacher
//! step of each family; two SGD steps on one batch from deterministic weights both sides draw.
//!
//! In float64: every term of every step within 1e-8 relative, selection counts exact, and for
//! every tensor of the trained state dict the update itself right — at the fixture's sampled
//! elements max |ours − torch| ≤ 1e-6 · max |update|, the largest update and the tensor's sum
//! to the same bound. In float32: the first step's terms within 1e-4 (a sanity bound).

mod common;

use burn::tensor::{DType, TensorData};
use common::steps::{check_state, check_terms, keys, read_case, weights, write_weights, Case};
use sskd::losses::MethodConfig;
use sskd::step::{run_steps, StepOptions, StepOutcome, StepStage};

/// Runs the case's steps in `precision`; the outcome and the initial weights of the trained
/// network.
fn run(case: &Case, precision: DType) -> (StepOutcome, Vec<(String, TensorData)>) {
    let dir = tempfile::tempdir().unwrap();
    let meta = &case.meta;
    let text = |key: &str| meta[key].as_str().unwrap().to_string();
    let (stage, initial) = match meta["stage"].as_str().unwrap() {
        "teacher" => {
            let initial = weights(&case.name, "weights", &keys(&meta["keys"]));
            let stage = StepStage::Teacher {
                arch: text("arch"),
                weights: write_weights(dir.path(), "weights", &initial),
            };
            (stage, initial)
        }
        _ => {
            let teacher = weights(&case.name, "teacher", &keys(&meta["teacher_keys"]));
            let initial = weights(&case.name, "student", &keys(&meta["student_keys"]));
            let stage = StepStage::Student {
                method: MethodConfig::published(&text("method")).unwrap(),
                teacher_arch: text("teacher_arch"),
                teacher: write_weights(dir.path(), "teacher", &teacher),
                student_arch: text("student_arch"),
                student: write_weights(dir.path(), "student", &initial),
                method_state: None,
            };
            (stage, initial)
        }
    };
    let number = |key: &str| meta[key].as_f64().unwrap();
    let options = StepOptions {
        stage,
        batch: case.path.clone(),
        steps: meta["steps"].as_array().unwrap().len(),
        lr: number("lr"),
        momentum: number("momentum"),
        weight_decay: number("weight_decay"),
        precision,
        num_classes: meta["num_classes"].as_u64().unwrap() as usize,
        init: false,
    };
    let outcome = run_steps(&options).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
    (outcome, initial)
}

fn check(name: &str) {
    let case = read_case(name);
    let (outcome, initial) = run(&case, DType::F64);
    check_state(&case, &outcome.state_dict, &initial, "");
    check_terms(&case, &outcome, usize::MAX, 1e-8, true);
    let (outcome, _) = run(&case, DType::F32);
    check_terms(&case, &outcome, 1, 1e-4, false);
}

/// The SSKD student step of each of `pairs` (`<teacher>_<student>`).
fn check_pairs(pairs: &[&str]) {
    for pair in pairs {
        check(&format!("sskd_{pair}"));
    }
}

#[test]
fn sskd_wrn_students_match_pytorch() {
    check_pairs(&["wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1"]);
}

#[test]
fn sskd_resnet_students_match_pytorch() {
    check_pairs(&["resnet56_resnet20", "resnet32x4_resnet8x4"]);
}

#[test]
fn sskd_vgg_students_match_pytorch() {
    check_pairs(&["vgg13_vgg8", "ResNet50_vgg8"]);
}

#[test]
fn sskd_mobilenetv2_students_match_pytorch() {
    check_pairs(&["vgg13_MobileNetV2", "ResNet50_MobileNetV2"]);
}

#[test]
fn sskd_shufflenet_students_match_pytorch() {
    check_pairs(&[
        "wrn_40_2_ShuffleV1",
        "resnet32x4_ShuffleV1",
        "resnet32x4_ShuffleV2",
    ]);
}

#[test]
fn kd_student_steps_match_pytorch() {
    check("kd_wrn_40_2_wrn_16_2");
}

#[test]
fn teacher_steps_of_each_family_match_pytorch() {
    for arch in [
        "wrn_16_1",
        "resnet8",
        "vgg8",
        "MobileNetV2",
        "ShuffleV1",
        "ShuffleV2",
    ] {
        check(&format!("teacher_{arch}"));
    }
}
