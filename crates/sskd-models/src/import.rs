//! Weights from the files users have: PyTorch checkpoints of the RepDistiller and SSKD code,
//! safetensors files with the same key names, and this crate's own Burn records.
//!
//! Accepted PyTorch layouts (any of them may carry DataParallel's `module.` prefix):
//! - a bare state dict;
//! - `{"model": state_dict, …}` (RepDistiller teachers and students);
//! - `{"state_dict": state_dict, …}` (SSKD `best.pth` / `student_best.pth`);
//! - SSKD's `backbone.` / `proj_head.` prefixed keys (teacher after head training, students).
//!
//! Every key is mapped onto the model's own parameter paths; a key that does not belong to the
//! architecture, a parameter with no tensor, or a shape that differs is an error naming the
//! file, the key and both shapes. `num_batches_tracked` has no Burn counterpart and is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{bf16, f16, DType, TensorData};
use burn_store::pytorch::PytorchReader;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use crate::checkpoint::load_record;
use crate::head::SelfSupervisionHead;
use crate::{BackboneWithHead, Model, ModelError};

/// The formats [`load_weights`] reads, told apart by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` output: `.pth`, `.pt`, `.tar`, `.ckpt`, `.bin`.
    PyTorch,
    /// A safetensors file with PyTorch key names: `.safetensors`.
    SafeTensors,
    /// A Burn record written by [`crate::checkpoint::save_record`]: `.mpk`.
    BurnRecord,
}

impl WeightFormat {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self, ModelError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match extension.to_ascii_lowercase().as_str() {
            "pth" | "pt" | "tar" | "ckpt" | "bin" => Ok(Self::PyTorch),
            "safetensors" => Ok(Self::SafeTensors),
            "mpk" => Ok(Self::BurnRecord),
            _ => Err(ModelError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Loads backbone weights from `path` (any [`WeightFormat`]) into `model`.
///
/// From an SSKD checkpoint with a head, the `backbone.` tensors are taken and the `proj_head.`
/// ones left aside.
pub fn load_weights<B: Backend>(
    model: Model<B>,
    path: &Path,
    device: &B::Device,
) -> Result<Model<B>, ModelError> {
    if WeightFormat::of(path)? == WeightFormat::BurnRecord {
        return load_record(model, path, device);
    }
    load_state_dict(model, read_state_dict(path)?)
}

/// Loads backbone weights from a state dict already in memory (see [`read_state_dict`]).
/// `proj_head.` tensors are left aside and a `backbone.` prefix is removed.
pub fn load_state_dict<B: Backend>(
    model: Model<B>,
    state: StateDict,
) -> Result<Model<B>, ModelError> {
    let StateDict { path, tensors } = state;
    let tensors = tensors
        .into_iter()
        .filter(|(key, _)| !key.starts_with("proj_head."))
        .collect();
    let (label, module_path, file_keys) = (
        model.family(),
        backbone_key_path(&model),
        backbone_file_keys(&model),
    );
    let state = StateDict { path, tensors };
    load_module_state_dict(model, state, label, module_path, file_keys)
}

/// Where each key of a backbone's PyTorch state dict (with or without a `backbone.` prefix)
/// lives in `model`: the module path with PyTorch leaf names, as [`load_module_state_dict`]
/// and [`export_state_dict`](crate::export::export_state_dict) take it.
pub fn backbone_key_path<B: Backend>(model: &Model<B>) -> impl Fn(&str) -> Option<String> {
    let backbone_path = model.key_mapper();
    move |key| backbone_path(key.strip_prefix("backbone.").unwrap_or(key))
}

/// The inverse of [`backbone_key_path`], for messages: every key a state dict may give the
/// parameter at a module path (each spelling of the family, plain and with SSKD's `backbone.`
/// prefix).
pub fn backbone_file_keys<B: Backend>(model: &Model<B>) -> impl Fn(&str) -> Vec<String> {
    let spellings = model.key_namer();
    move |module_path| {
        let keys = spellings(module_path);
        let prefixed = keys
            .iter()
            .map(|key| format!("backbone.{key}"))
            .collect::<Vec<_>>();
        keys.into_iter().chain(prefixed).collect()
    }
}

/// The inverse of [`backbone_with_head_key_path`], for messages.
pub fn backbone_with_head_file_keys<B: Backend>(
    network: &BackboneWithHead<B>,
) -> impl Fn(&str) -> Vec<String> {
    let spellings = network.backbone.key_namer();
    move |module_path| match module_path.strip_prefix("proj_head.") {
        Some(head_path) => vec![format!(
            "proj_head.{}",
            SelfSupervisionHead::<B>::torch_key(head_path)
        )],
        None => spellings(module_path.strip_prefix("backbone.").unwrap_or(module_path))
            .into_iter()
            .map(|key| format!("backbone.{key}"))
            .collect(),
    }
}

/// As [`backbone_key_path`] for a backbone with its SS head: `backbone.*` and `proj_head.*`
/// keys (SSKD's layout).
pub fn backbone_with_head_key_path<B: Backend>(
    network: &BackboneWithHead<B>,
) -> impl Fn(&str) -> Option<String> {
    let backbone_path = network.backbone.key_mapper();
    move |key| match key.strip_prefix("proj_head.") {
        Some(head_key) => {
            SelfSupervisionHead::<B>::burn_path(head_key).map(|p| format!("proj_head.{p}"))
        }
        None => backbone_path(key.strip_prefix("backbone.").unwrap_or(key))
            .map(|p| format!("backbone.{p}")),
    }
}

/// Loads a state dict with PyTorch names into any module: `module_path` maps each key onto the
/// module's parameter path (with PyTorch leaf names: `weight`, `bias`, `running_mean`, …).
/// Linear weights are transposed and batch-norm names translated as for the backbones; every
/// parameter must be covered once, with its shape, or the error names the key (`label` names
/// the module in messages). `file_keys` is the inverse of `module_path` (the keys a file may
/// give a parameter, the most common first): it names a missing parameter as the file would.
pub fn load_module_state_dict<B: Backend, M: Module<B>>(
    module: M,
    state: StateDict,
    label: &str,
    module_path: impl Fn(&str) -> Option<String>,
    file_keys: impl Fn(&str) -> Vec<String>,
) -> Result<M, ModelError> {
    let mut module = module;
    let entries = map_entries(state.tensors, &state.path, label, module_path)?;
    apply_entries(&mut module, entries, &state.path, label, file_keys)?;
    Ok(module)
}

/// Loads a backbone and its SS head from an SSKD checkpoint (`backbone.` / `proj_head.` keys),
/// or from a Burn record of a [`BackboneWithHead`].
pub fn load_weights_with_head<B: Backend>(
    network: BackboneWithHead<B>,
    path: &Path,
    device: &B::Device,
) -> Result<BackboneWithHead<B>, ModelError> {
    if WeightFormat::of(path)? == WeightFormat::BurnRecord {
        return load_record(network, path, device);
    }
    load_state_dict_with_head(network, read_state_dict(path)?)
}

/// Loads a backbone and its SS head from a state dict already in memory.
pub fn load_state_dict_with_head<B: Backend>(
    network: BackboneWithHead<B>,
    state: StateDict,
) -> Result<BackboneWithHead<B>, ModelError> {
    let (label, module_path, file_keys) = (
        network.backbone.family(),
        backbone_with_head_key_path(&network),
        backbone_with_head_file_keys(&network),
    );
    load_module_state_dict(network, state, label, module_path, file_keys)
}

/// Pairs every tensor with its module path; a key `module_path` cannot place is an error.
fn map_entries(
    tensors: Vec<(String, TensorData)>,
    path: &Path,
    label: &str,
    module_path: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Entry>, ModelError> {
    tensors
        .into_iter()
        .map(|(file_key, data)| {
            let module_path =
                module_path(&file_key).ok_or_else(|| unexpected_key(path, &file_key, label))?;
            Ok(Entry {
                file_key,
                module_path,
                data,
            })
        })
        .collect()
}

/// The float tensors of a checkpoint, keyed as the model's state dict would be (container key,
/// `module.` prefix and `num_batches_tracked` removed).
#[derive(Debug)]
pub struct StateDict {
    /// The file read (or a label for a state dict built in memory), named in errors.
    pub path: PathBuf,
    /// `(key, f32 data)` sorted by key.
    pub tensors: Vec<(String, TensorData)>,
}

/// Container keys under which training scripts nest the state dict, tried in this order.
const CONTAINER_KEYS: [&str; 4] = ["state_dict", "model", "model_state_dict", "net"];

/// Reads the state dict of a PyTorch or safetensors file; see [`StateDict`].
pub fn read_state_dict(path: &Path) -> Result<StateDict, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Read {
            path: path.to_path_buf(),
            reason: "no such file".to_string(),
        });
    }
    let raw =
        match WeightFormat::of(path)? {
            WeightFormat::PyTorch => read_pytorch(path)?,
            WeightFormat::SafeTensors => read_safetensors(path)?,
            WeightFormat::BurnRecord => return Err(ModelError::Read {
                path: path.to_path_buf(),
                reason:
                    "a Burn record has no PyTorch state dict; load it with checkpoint::load_record"
                        .to_string(),
            }),
        };
    let container = CONTAINER_KEYS
        .iter()
        .map(|key| format!("{key}."))
        .find(|prefix| raw.iter().any(|(key, _)| key.starts_with(prefix.as_str())));
    let mut tensors: Vec<(String, TensorData)> = raw
        .into_iter()
        .filter_map(|(key, data)| {
            let key = match &container {
                Some(prefix) => key.strip_prefix(prefix.as_str())?.to_string(),
                None => key,
            };
            let key = key
                .strip_prefix("module.")
                .map(str::to_string)
                .unwrap_or(key);
            (!key.ends_with("num_batches_tracked")).then_some((key, data))
        })
        .collect();
    if tensors.is_empty() {
        return Err(ModelError::Read {
            path: path.to_path_buf(),
            reason: "the file holds no tensors".to_string(),
        });
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(StateDict {
        path: path.to_path_buf(),
        tensors,
    })
}

fn read_error(path: &Path, reason: impl ToString) -> ModelError {
    ModelError::Read {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_pytorch(path: &Path) -> Result<Vec<(String, TensorData)>, ModelError> {
    let reader = PytorchReader::new(path).map_err(|e| read_error(path, e))?;
    reader
        .into_tensors()
        .into_iter()
        .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
        .map(|(key, snapshot)| {
            let data = snapshot
                .to_data()
                .map_err(|e| read_error(path, format!("{key}: {e:?}")))?;
            Ok((key.clone(), to_f32(path, &key, data)?))
        })
        .collect()
}

fn read_safetensors(path: &Path) -> Result<Vec<(String, TensorData)>, ModelError> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| read_error(path, e))?;
    file.tensors()
        .into_iter()
        .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
        .map(|(key, view)| {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => TensorData::new(le_values(raw, f32::from_le_bytes), shape),
                Dtype::F64 => TensorData::new(le_values(raw, f64::from_le_bytes), shape),
                Dtype::F16 => {
                    TensorData::new(le_values(raw, |b: [u8; 2]| f16::from_le_bytes(b)), shape)
                }
                Dtype::BF16 => {
                    TensorData::new(le_values(raw, |b: [u8; 2]| bf16::from_le_bytes(b)), shape)
                }
                other => {
                    return Err(ModelError::BadDtype {
                        path: path.to_path_buf(),
                        key,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            Ok((key.clone(), to_f32(path, &key, data)?))
        })
        .collect()
}

/// Decodes little-endian values of `N` bytes each (the raw data of a safetensors tensor).
pub fn le_values<T, const N: usize>(raw: &[u8], decode: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|chunk| decode(chunk.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

fn to_f32(path: &Path, key: &str, data: TensorData) -> Result<TensorData, ModelError> {
    match data.dtype {
        DType::F32 => Ok(data),
        DType::F64 | DType::F16 | DType::BF16 => Ok(data.convert::<f32>()),
        other => Err(ModelError::BadDtype {
            path: path.to_path_buf(),
            key: key.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

fn unexpected_key(path: &Path, key: &str, label: &str) -> ModelError {
    ModelError::UnexpectedKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        arch: label.to_string(),
        hint: " (is the file for another architecture?)".to_string(),
    }
}

/// The dot-separated words of `keys` (`layer2`, `0`, `shortcut`, `weight`, …).
fn key_words<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    keys.flat_map(|key| key.split('.'))
        .map(str::to_string)
        .collect()
}

/// Of the spellings of one key, the one whose words the file uses most (so a file spelling
/// `shortcut` or `backbone.` gets its missing key spelled that way too); the first on a tie.
fn closest_spelling(spellings: Vec<String>, file_words: &BTreeSet<String>) -> Option<String> {
    let shared = |key: &String| key.split('.').filter(|w| file_words.contains(*w)).count();
    let best = spellings.iter().map(shared).max()?;
    spellings.into_iter().find(|key| shared(key) == best)
}

/// One tensor of the file and where it goes in the module.
struct Entry {
    file_key: String,
    module_path: String,
    data: TensorData,
}

/// Checks `entries` against the module's parameters (every parameter covered once, shapes
/// equal in PyTorch layout) and writes them into the module.
fn apply_entries<B: Backend, M: Module<B>>(
    module: &mut M,
    entries: Vec<Entry>,
    path: &Path,
    label: &str,
    file_keys: impl Fn(&str) -> Vec<String>,
) -> Result<(), ModelError> {
    let file_words = key_words(entries.iter().map(|entry| entry.file_key.as_str()));
    let mut expected: BTreeMap<String, Vec<usize>> = module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|snapshot| (snapshot.full_path(), snapshot.shape.to_vec()))
        .collect();
    let mut snapshots = Vec::with_capacity(entries.len());
    for entry in entries {
        let expected_shape = expected
            .remove(&entry.module_path)
            .ok_or_else(|| unexpected_key(path, &entry.file_key, label))?;
        if entry.data.shape.to_vec() != expected_shape {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                key: entry.file_key,
                arch: label.to_string(),
                expected: expected_shape,
                found: entry.data.shape.to_vec(),
            });
        }
        let path_stack = entry.module_path.split('.').map(str::to_string).collect();
        snapshots.push(TensorSnapshot::from_data(
            entry.data,
            path_stack,
            Vec::new(),
            ParamId::new(),
        ));
    }
    let missing = expected.keys().map(|module_path| {
        let spellings = file_keys(module_path);
        closest_spelling(spellings, &file_words).unwrap_or_else(|| module_path.clone())
    });
    if let Some(first_missing) = missing.min() {
        return Err(ModelError::MissingKey {
            path: path.to_path_buf(),
            key: first_missing,
            arch: label.to_string(),
            count: expected.len(),
        });
    }
    let count = snapshots.len();
    let result = module.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    // Batch-norm tensors are found under their PyTorch names (`weight` for `gamma`), which
    // burn-store still lists as "unused"; the checks above already matched every entry, so
    // success is: every entry applied, no error.
    if !result.errors.is_empty() || !result.missing.is_empty() || result.applied.len() != count {
        return Err(read_error(
            path,
            format!("applying the tensors failed:\n{result}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create_model, model_names};
    use burn::backend::Flex;

    /// The module paths (PyTorch leaf names) and tensors of `module`.
    fn module_tensors<M: Module<Flex>>(module: &M) -> Vec<(String, TensorData)> {
        module
            .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
            .into_iter()
            .map(|snapshot| (snapshot.full_path(), snapshot.to_data().unwrap()))
            .collect()
    }

    #[test]
    fn every_parameter_has_reference_keys_that_map_back_to_it() {
        let device = Default::default();
        for name in model_names() {
            let model = create_model::<Flex>(name, 10, &device).unwrap();
            let (to_path, to_keys) = (model.key_mapper(), model.key_namer());
            for (path, _) in module_tensors(&model) {
                let keys = to_keys(&path);
                assert!(!keys.is_empty(), "{name}: no key for {path}");
                for key in keys {
                    assert_eq!(to_path(&key), Some(path.clone()), "{name}: {key}");
                }
            }
        }
        for path in ["fc1.weight", "fc2.bias"] {
            let key = SelfSupervisionHead::<Flex>::torch_key(path);
            assert_eq!(
                SelfSupervisionHead::<Flex>::burn_path(&key).as_deref(),
                Some(path)
            );
        }
    }

    /// The state dict of `arch` with keys of the given spelling (index into
    /// [`Backbone::torch_keys`](crate::backbone::Backbone::torch_keys)), under `prefix`,
    /// without `dropped`; and the error loading it.
    fn missing_key_error(arch: &str, spelling: usize, prefix: &str, dropped: &str) -> String {
        let device = Default::default();
        let model = create_model::<Flex>(arch, 10, &device).unwrap();
        let to_keys = model.key_namer();
        let tensors: Vec<(String, TensorData)> = module_tensors(&model)
            .into_iter()
            .map(|(path, data)| {
                let keys = to_keys(&path);
                let key = keys.get(spelling).unwrap_or(&keys[0]);
                (format!("{prefix}{key}"), data)
            })
            .filter(|(key, _)| key != dropped)
            .collect();
        let state = StateDict {
            path: PathBuf::from("student.pth"),
            tensors,
        };
        load_state_dict(model, state).unwrap_err().to_string()
    }

    #[test]
    fn a_missing_tensor_is_named_as_the_file_would_name_it() {
        let cases = [
            ("resnet8", 0, "", "layer2.0.conv1.weight"),
            (
                "resnet8",
                0,
                "backbone.",
                "backbone.layer3.0.downsample.1.running_var",
            ),
            ("ResNet18", 1, "", "layer2.0.shortcut.0.weight"),
            ("vgg8", 0, "", "block1.0.weight"),
            ("MobileNetV2", 0, "", "blocks.1.0.conv.4.weight"),
            ("ShuffleV2", 0, "", "layer2.0.conv1.weight"),
        ];
        for (arch, spelling, prefix, dropped) in cases {
            let message = missing_key_error(arch, spelling, prefix, dropped);
            assert!(
                message.contains(&format!("no tensor for `{dropped}`"))
                    && message.contains("1 missing")
                    && message.contains("student.pth"),
                "{arch}: {message}"
            );
        }
    }
}
