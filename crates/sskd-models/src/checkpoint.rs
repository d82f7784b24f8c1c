//! This crate's own checkpoints: Burn's named MessagePack record format (`.mpk`), written
//! atomically (a temporary file in the same folder, then a rename), so a crash never leaves a
//! half-written file under the final name.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use burn_store::ModuleSnapshot;

use crate::atomic::{write_atomically, write_error};
use crate::ModelError;

type ByteRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Writes `module`'s record to `path` atomically (full precision).
pub fn save_record<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<(), ModelError> {
    write_record::<B, _>(module.into_record(), path)
}

/// Writes any Burn record (a module's, an optimizer's) to `path` atomically (full precision).
pub fn write_record<B: Backend, R: Record<B>>(record: R, path: &Path) -> Result<(), ModelError> {
    let bytes = Recorder::<B>::record(&ByteRecorder::default(), record, ())
        .map_err(|e| write_error(path, e))?;
    write_atomically(path, &bytes)
}

/// Reads a record written by [`write_record`]; a file of another record type is an error
/// naming the file.
pub fn read_record<B: Backend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<R, ModelError> {
    let read_error = |reason: String| ModelError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
    Recorder::<B>::load(&ByteRecorder::default(), bytes, device)
        .map_err(|e| read_error(decode_failure(&e.to_string())))
}

/// What a failed decode means: a file that ends before its record does (Burn then speaks of an
/// end of file, or of a data format changed since 0.14.0), or a record of another kind.
fn decode_failure(burn_message: &str) -> String {
    const END_OF_DATA: [&str; 3] = [
        "UnexpectedEof",
        "unexpected end of file",
        "failed to fill whole buffer",
    ];
    if END_OF_DATA.iter().any(|m| burn_message.contains(m)) {
        "the file is truncated or damaged: it ends before the record does".to_string()
    } else {
        format!("not a record of the expected kind: {burn_message}")
    }
}

/// Reads a record written by [`save_record`] into `module`, which must have the same
/// architecture: a record of another architecture, or with other parameter shapes, is an error
/// naming the file and the first parameter that differs.
pub fn load_record<B: Backend, M: Module<B>>(
    module: M,
    path: &Path,
    device: &B::Device,
) -> Result<M, ModelError> {
    let read_error = |reason: String| ModelError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let record = read_record::<B, M::Record>(path, device).map_err(|e| match e {
        ModelError::Read { reason, .. } => {
            read_error(reason.replace("of the expected kind", "of this architecture"))
        }
        other => other,
    })?;
    // Burn's `RunningState::load_record` replaces the value but keeps updates still pending
    // from earlier forwards (e.g. a shape probe), which would then overwrite the loaded
    // batch-norm statistics at the next sync: flush them first.
    let _ = module.clone().into_record();
    let expected = parameter_shapes(&module);
    // Burn panics when a record's structure differs from the module's (another enum variant,
    // another number of blocks); turn that into an error, without the panic's message.
    let loaded = quietly(|| module.load_record(record))
        .ok_or_else(|| read_error("the record holds another architecture".to_string()))?;
    let found = parameter_shapes(&loaded);
    if let Some((key, shape)) = expected
        .iter()
        .find(|(key, shape)| found.get(*key) != Some(*shape))
    {
        return Err(ModelError::ShapeMismatch {
            path: path.to_path_buf(),
            key: key.clone(),
            arch: "the model".to_string(),
            expected: shape.clone(),
            found: found.get(key).cloned().unwrap_or_default(),
        });
    }
    Ok(loaded)
}

/// Runs `f`, `None` if it panics; the panic's message is not printed when it comes from this
/// thread (other threads' panics still are).
fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    static HOOK_SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _swap = HOOK_SWAP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous: std::sync::Arc<Hook> = std::sync::Arc::new(std::panic::take_hook());
    let this_thread = std::thread::current().id();
    let others = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != this_thread {
            others(info);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result
}

/// Every parameter path of `module` with its shape.
fn parameter_shapes<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, Vec<usize>> {
    module
        .collect(None, None, true)
        .into_iter()
        .map(|snapshot| (snapshot.full_path(), snapshot.shape.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create_model;
    use burn::backend::Flex;
    use burn::tensor::Tensor;

    #[test]
    fn record_round_trip_keeps_outputs() {
        let device = Default::default();
        let model = create_model::<Flex>("resnet8", 10, &device).unwrap();
        let input = Tensor::<Flex, 4>::ones([1, 3, 32, 32], &device);
        let expected = model.forward(input.clone()).logits;
        let dir = std::env::temp_dir().join(format!("sskd-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resnet8.mpk");
        save_record(model, &path).unwrap();
        let fresh = create_model::<Flex>("resnet8", 10, &device).unwrap();
        let loaded = load_record(fresh, &path, &device).unwrap();
        loaded
            .forward(input)
            .logits
            .into_data()
            .assert_eq(&expected.into_data(), true);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn record_of_another_architecture_is_an_error() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("sskd-record-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resnet8.mpk");
        save_record(create_model::<Flex>("resnet8", 10, &device).unwrap(), &path).unwrap();
        let other = create_model::<Flex>("wrn_16_1", 10, &device).unwrap();
        let error = load_record(other, &path, &device).unwrap_err().to_string();
        assert!(error.contains("resnet8.mpk"), "{error}");
        let deeper = create_model::<Flex>("resnet20", 10, &device).unwrap();
        let error = load_record(deeper, &path, &device).unwrap_err().to_string();
        assert!(error.contains("resnet8.mpk"), "{error}");
        let wider = create_model::<Flex>("resnet8x4", 10, &device).unwrap();
        let error = load_record(wider, &path, &device).unwrap_err().to_string();
        assert!(
            error.contains("resnet8.mpk") && error.contains("expects"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_record_is_reported_as_truncated() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("sskd-truncated-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.mpk");
        save_record(create_model::<Flex>("resnet8", 10, &device).unwrap(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [10, bytes.len() / 3, bytes.len() - 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let model = create_model::<Flex>("resnet8", 10, &device).unwrap();
            let message = load_record(model, &path, &device).unwrap_err().to_string();
            assert!(
                message.contains("model.mpk")
                    && message.contains("truncated or damaged")
                    && !message.contains("0.14.0"),
                "cut at {cut}: {message}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
