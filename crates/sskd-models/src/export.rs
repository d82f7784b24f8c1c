//! Weights back out under the names of the user's PyTorch file.
//!
//! The inverse of [`import`](crate::import): given the keys of the state dict a module was
//! loaded from and the same key → module-path mapping
//! ([`backbone_key_path`](crate::import::backbone_key_path),
//! [`backbone_with_head_key_path`](crate::import::backbone_with_head_key_path)), lists every
//! tensor under its PyTorch key, in PyTorch's layout (linear weights `[out, in]`, batch norm's
//! `weight` / `bias` / `running_mean` / `running_var`) and in the module's float type.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};

use crate::ModelError;

/// Every tensor of `module` as `(PyTorch key, data)` for the given `keys`, in their order.
///
/// Pass an inference module (`model.valid()`) after training: that gathers the running
/// statistics' pending updates. `source` (the file the keys came from) and `arch` name the
/// inputs in errors. It is an error when a key has no place in the module, or when a tensor of
/// the module is named by no key.
pub fn export_state_dict<B: Backend, M: Module<B>>(
    module: &M,
    keys: &[String],
    source: &Path,
    arch: &str,
    module_path: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, TensorData)>, ModelError> {
    let mut by_path: BTreeMap<String, TensorData> = BTreeMap::new();
    for snapshot in module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let data = snapshot.to_data().map_err(|e| ModelError::Read {
            path: source.to_path_buf(),
            reason: format!("tensor `{}` of `{arch}`: {e:?}", snapshot.full_path()),
        })?;
        by_path.insert(snapshot.full_path(), data);
    }
    let mut exported = Vec::with_capacity(keys.len());
    for key in keys {
        let data = module_path(key)
            .and_then(|path| by_path.remove(&path))
            .ok_or_else(|| ModelError::UnexpectedKey {
                path: source.to_path_buf(),
                key: key.clone(),
                arch: arch.to_string(),
                hint: String::new(),
            })?;
        exported.push((key.clone(), data));
    }
    if let Some(path) = by_path.keys().next() {
        return Err(ModelError::MissingKey {
            path: source.to_path_buf(),
            key: path.clone(),
            arch: arch.to_string(),
            count: by_path.len(),
        });
    }
    Ok(exported)
}
