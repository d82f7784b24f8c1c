//! The step fixtures of `tools/make_step_fixtures.py` (`tests/fixtures/steps/`): the batch,
//! the metadata, the float64 summaries of the reference update, and the deterministic weights
//! both sides draw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use serde_json::Value;
use sskd::step::{write_state_dict, StepOutcome};

use super::{deterministic, read_f64_tensors};

/// Folder of the step fixtures.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps")
}

/// Folder of the baseline step fixtures (`tools/make_baseline_step_fixtures.py`).
pub fn baseline_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/baseline_steps")
}

/// The method's initial state as the fixture script drew it (CRD's `contrast.params` from the
/// metadata).
pub fn method_state(case: &Case) -> Vec<(String, TensorData)> {
    let mut state = weights(&case.name, "method", &keys(&case.meta["method_keys"]));
    if let Some(params) = case.meta.get("contrast_params") {
        let values: Vec<f32> = params
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let slot = state.iter_mut().find(|(key, _)| key == "contrast.params");
        slot.expect("a CRD state holds contrast.params").1 = TensorData::new(values, [5]);
    }
    state
}

/// A fixture: its metadata and its float64 tensors.
pub struct Case {
    /// The case name (the file stem).
    pub name: String,
    /// The fixture file (it is also the batch file: `x`, `labels`).
    pub path: PathBuf,
    /// The `case` metadata.
    pub meta: Value,
    /// Every float64 tensor by key.
    pub tensors: BTreeMap<String, Vec<f64>>,
}

/// Reads the fixture `name` of the step fixtures.
pub fn read_case(name: &str) -> Case {
    read_case_in(&fixture_dir(), name)
}

/// Reads the fixture `name` in `dir`.
pub fn read_case_in(dir: &Path, name: &str) -> Case {
    let path = dir.join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let meta: Value =
        serde_json::from_str(&header.metadata().as_ref().expect("metadata")["case"]).unwrap();
    let tensors = read_f64_tensors(&path);
    Case {
        name: name.to_string(),
        path,
        meta,
        tensors,
    }
}

/// `(key, shape)` pairs of a metadata list.
pub fn keys(list: &Value) -> Vec<(String, Vec<usize>)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let shape = pair[1].as_array().unwrap();
            let shape = shape.iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (pair[0].as_str().unwrap().to_string(), shape)
        })
        .collect()
}

/// The deterministic weights of `role` as a state dict (f32), as the fixture script draws them.
pub fn weights(case: &str, role: &str, keys: &[(String, Vec<usize>)]) -> Vec<(String, TensorData)> {
    keys.iter()
        .map(|(key, shape)| {
            let values = deterministic(&format!("{case}/{role}/{key}"), shape);
            (key.clone(), TensorData::new(values, shape.clone()))
        })
        .collect()
}

/// The teacher's and the student's deterministic weights of a student-step `case`, written as
/// `<dir>/teacher.safetensors` and `<dir>/student.safetensors`: `(teacher, student)` paths.
pub fn write_step_weights(case: &Case, dir: &Path) -> (PathBuf, PathBuf) {
    let [teacher, student] = ["teacher", "student"].map(|role| {
        let role_keys = keys(&case.meta[format!("{role}_keys").as_str()]);
        write_weights(dir, role, &weights(&case.name, role, &role_keys))
    });
    (teacher, student)
}

/// `program` (the `step` example) set up for an SSKD student step of `case` from the weight
/// files of [`write_step_weights`], writing its state dict to `output`; the caller adds the
/// rest (`--steps`, `--precision`, `--terms`, …).
pub fn sskd_step_command(
    program: &Path,
    case: &Case,
    [teacher_arch, student_arch]: [&str; 2],
    (teacher, student): &(PathBuf, PathBuf),
    output: &Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .args(["--stage", "student", "--method", "sskd"])
        .args([
            "--teacher-arch",
            teacher_arch,
            "--student-arch",
            student_arch,
        ])
        .arg("--teacher")
        .arg(teacher)
        .arg("--student")
        .arg(student)
        .arg("--batch")
        .arg(&case.path)
        .arg("--output")
        .arg(output);
    command
}

/// Each step's terms within `relative` (plus a 1e-12 floor); counts exact when asked.
pub fn check_terms(case: &Case, outcome: &StepOutcome, steps: usize, relative: f64, counts: bool) {
    let expected = case.meta["steps"].as_array().unwrap();
    assert_eq!(
        outcome.reports.len(),
        expected.len(),
        "{}: steps",
        case.name
    );
    for (step, (report, torch)) in outcome.reports.iter().zip(expected).take(steps).enumerate() {
        for (name, value) in torch.as_object().unwrap() {
            let torch = value.as_f64().unwrap();
            let ours = if name.starts_with("kept_") {
                if !counts {
                    continue;
                }
                report.counts.get(name)
            } else {
                report.terms.get(name)
            };
            let ours = *ours.unwrap_or_else(|| panic!("{} step {step}: no `{name}`", case.name));
            assert!(
                (ours - torch).abs() <= relative * torch.abs() + 1e-12,
                "{} step {step}: {name} {ours:e} vs torch {torch:e}",
                case.name
            );
        }
    }
}

pub fn as_f64(data: &TensorData) -> Vec<f64> {
    data.clone().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Every tensor's update against the fixture's samples (`sample.{prefix}{key}`), largest
/// update and sum.
pub fn check_state(
    case: &Case,
    trained: &[(String, TensorData)],
    initial: &[(String, TensorData)],
    prefix: &str,
) {
    assert_eq!(trained.len(), initial.len(), "{}: tensors", case.name);
    let initial: BTreeMap<_, _> = initial.iter().cloned().collect();
    for (key, trained) in trained {
        let before = &initial[key];
        assert_eq!(
            trained.dtype,
            DType::F64,
            "{} {key}: the run's precision",
            case.name
        );
        let (trained, before) = (as_f64(trained), as_f64(before));
        assert_eq!(trained.len(), before.len(), "{} {key}: size", case.name);
        let update: Vec<f64> = trained.iter().zip(&before).map(|(a, b)| a - b).collect();
        let tensor = |group: &str| {
            let name = format!("{group}.{prefix}{key}");
            case.tensors
                .get(&name)
                .unwrap_or_else(|| panic!("{}: the fixture has no `{name}`", case.name))
        };
        let max_update = tensor("max")[0];
        let bound = 1e-6 * max_update;
        let count = update.len();
        let samples = tensor("sample");
        for (i, torch) in samples.iter().enumerate() {
            let position = if samples.len() == 1 {
                0
            } else {
                ((i as f64) * (count - 1) as f64 / (samples.len() - 1) as f64).round() as usize
            };
            let ours = update[position];
            assert!(
                (ours - torch).abs() <= bound,
                "{} {key}[{position}]: update {ours:e} vs torch {torch:e} (bound {bound:e})",
                case.name
            );
        }
        let ours_max = update.iter().fold(0.0f64, |m, u| m.max(u.abs()));
        assert!(
            (ours_max - max_update).abs() <= bound,
            "{} {key}: largest update {ours_max:e} vs torch {max_update:e}",
            case.name
        );
        let (ours_sum, torch_sum) = (trained.iter().sum::<f64>(), tensor("sum")[0]);
        assert!(
            (ours_sum - torch_sum).abs() <= bound * count as f64 + 1e-12 * torch_sum.abs(),
            "{} {key}: sum {ours_sum:e} vs torch {torch_sum:e}",
            case.name
        );
    }
}

/// Writes a state dict as `<dir>/<role>.safetensors`.
pub fn write_weights(dir: &Path, role: &str, state: &[(String, TensorData)]) -> PathBuf {
    let path = dir.join(format!("{role}.safetensors"));
    write_state_dict(&path, state).unwrap();
    path
}
