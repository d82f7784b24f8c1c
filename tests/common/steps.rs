//! The step fixtures of `tools/make_step_fixtures.py` (`tests/fixtures/steps/`): the batch,
//! the metadata, the float64 summaries of the reference update, and the deterministic weights
//! both sides draw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use serde_json::Value;
use sskd::step::write_state_dict;

use super::{deterministic, read_f64_tensors};

/// Folder of the step fixtures.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps")
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

/// Reads the fixture `name`.
pub fn read_case(name: &str) -> Case {
    let path = fixture_dir().join(format!("{name}.safetensors"));
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

/// Writes a state dict as `<dir>/<role>.safetensors`.
pub fn write_weights(dir: &Path, role: &str, state: &[(String, TensorData)]) -> PathBuf {
    let path = dir.join(format!("{role}.safetensors"));
    write_state_dict(&path, state).unwrap();
    path
}
