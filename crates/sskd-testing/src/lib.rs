//! # sskd-testing
//!
//! What the parity tests of every crate share (not published): the repository's fixture folders
//! (`tests/fixtures/`, made by the PyTorch scripts under `tools/`), the readers of their
//! safetensors files, the deterministic weight generator of `tools/make_model_fixtures.py`
//! reimplemented bit for bit, and closeness checks.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde_json::Value;
use sskd_models::import::StateDict;

/// The float64 tensors of a safetensors fixture, flattened, by key (tensors of other types are
/// left out).
pub fn read_f64_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("fixture tensors");
    file.tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == safetensors::Dtype::F64)
        .map(|(key, view)| {
            let values = sskd_models::import::le_values(view.data(), f64::from_le_bytes);
            (key, values)
        })
        .collect()
}

/// A path of the repository (`tests/fixtures/...`), from any crate of the workspace: under
/// `SSKD_REPO_DIR` where it is set (a test binary carried to another machine, e.g. by
/// `tools/gpu_device_checks.sh`), else under the checkout the binary was built from.
pub fn repo(path: &str) -> PathBuf {
    match std::env::var_os("SSKD_REPO_DIR") {
        Some(root) => PathBuf::from(root).join(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    }
}

/// Folder of the model fixtures.
pub fn fixture_dir() -> PathBuf {
    repo("tests/fixtures/models")
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `t_i = 2·u_i − 1` in f32, as the fixture script draws it.
fn uniform_signed(key: &str, count: usize) -> Vec<f32> {
    let seed = fnv1a64(key);
    (0..count as u64)
        .map(|i| {
            let u = (splitmix64(seed.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
            (2.0 * u - 1.0) as f32
        })
        .collect()
}

/// The deterministic value of the state-dict entry `key` of `shape` (see the fixture script).
pub fn deterministic(key: &str, shape: &[usize]) -> Vec<f32> {
    let count = shape.iter().product();
    let t = uniform_signed(key, count);
    let leaf = key.rsplit('.').next().unwrap_or(key);
    match leaf {
        "running_var" => t.iter().map(|v| 1.0f32 + 0.5f32 * v).collect(),
        "running_mean" | "bias" => t.iter().map(|v| 0.1f32 * v).collect(),
        "weight" if shape.len() == 1 => t.iter().map(|v| 1.0f32 + 0.25f32 * v).collect(),
        "weight" => {
            let fan_in: usize = shape[1..].iter().product();
            let bound = (3.0f64 / fan_in as f64).sqrt() as f32;
            t.iter().map(|v| v * bound).collect()
        }
        _ => t,
    }
}

/// The deterministic input batch of the fixtures.
pub fn deterministic_input<B: Backend>(shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(
        TensorData::new(deterministic("input", &shape), shape),
        device,
    )
}

/// A state dict of deterministic values for `keys` (`[key, shape]` pairs), under `prefix`.
pub fn deterministic_state_dict(
    keys: &[(String, Vec<usize>)],
    prefix: &str,
) -> Vec<(String, TensorData)> {
    keys.iter()
        .map(|(key, shape)| {
            let full = format!("{prefix}{key}");
            let data = TensorData::new(deterministic(&full, shape), shape.clone());
            (full, data)
        })
        .collect()
}

/// One fixture file: its metadata and tensors.
pub struct Fixture {
    /// The fixture's name (its file stem).
    pub name: String,
    /// The `case` metadata, JSON.
    pub meta: Value,
    /// Each tensor: key, values as f32, shape.
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
}

impl Fixture {
    /// A model fixture of `tests/fixtures/models/`.
    pub fn read(name: &str) -> Fixture {
        Self::read_from(&fixture_dir(), name)
    }

    /// The fixture `name` of folder `dir`. F32 and I64 tensors are read as f32.
    pub fn read_from(dir: &Path, name: &str) -> Fixture {
        let path = dir.join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).expect("fixture header");
        let meta: Value = serde_json::from_str(
            metadata
                .metadata()
                .as_ref()
                .and_then(|m| m.get("case"))
                .expect("case metadata"),
        )
        .expect("case JSON");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("fixture tensors");
        let tensors = file
            .tensors()
            .into_iter()
            .map(|(key, view)| {
                let values = match view.dtype() {
                    safetensors::Dtype::I64 => view
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                        .collect(),
                    _ => view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                };
                (key, values, view.shape().to_vec())
            })
            .collect();
        Fixture {
            name: name.to_string(),
            meta,
            tensors,
        }
    }

    /// The architecture of a model fixture.
    pub fn arch(&self) -> &str {
        self.meta["arch"].as_str().unwrap()
    }

    /// The class count of a model fixture.
    pub fn num_classes(&self) -> usize {
        self.meta["num_classes"].as_u64().unwrap() as usize
    }

    /// The input shape of a model fixture.
    pub fn input_shape(&self) -> [usize; 4] {
        let dims: Vec<usize> = self.meta["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        dims.try_into().unwrap()
    }

    /// The state-dict keys and shapes of a model fixture.
    pub fn keys(&self) -> Vec<(String, Vec<usize>)> {
        self.meta["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let key = pair[0].as_str().unwrap().to_string();
                let shape = pair[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                (key, shape)
            })
            .collect()
    }

    /// The deterministic state dict of a model fixture, its keys under `prefix`.
    pub fn state_dict(&self, prefix: &str) -> StateDict {
        StateDict {
            path: PathBuf::from(format!("<deterministic {}>", self.name)),
            tensors: deterministic_state_dict(&self.keys(), prefix),
        }
    }

    /// The values of tensor `key`.
    pub fn expected(&self, key: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_slice())
    }

    /// The shape of tensor `key`.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, shape)| shape.as_slice())
    }
}

/// The elements the fixture script keeps of a flattened feature map.
pub fn sample(values: &[f32]) -> Vec<f32> {
    const SAMPLES: usize = 2048;
    if values.len() <= SAMPLES {
        return values.to_vec();
    }
    (0..SAMPLES)
        .map(|j| values[j * values.len() / SAMPLES])
        .collect()
}

/// Asserts `max|actual − expected| ≤ tolerance · max|expected|`.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        actual.len(),
        expected.len()
    );
    let scale = expected
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let (worst, index) = actual
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (a, e))| ((a - e).abs(), i))
        .fold(
            (0.0f32, 0),
            |best, cur| if cur.0 > best.0 { cur } else { best },
        );
    assert!(
        worst <= tolerance * scale && actual.iter().all(|v| v.is_finite()),
        "{what}: max |error| {worst:e} at {index} (got {}, expected {}) exceeds {tolerance:e} × {scale:e}",
        actual[index],
        expected[index]
    );
}

/// The values of a tensor as f32.
pub fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}
