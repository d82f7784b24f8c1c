//! Training steps on a given batch, exactly as the trainer runs them, to check against
//! reference code from outside (the `step` example).
//!
//! A teacher step is [`teacher_epoch`] over one batch, a student step
//! [`student_objective_epoch`] over one batch with the method of the registry (its main loss,
//! or its pre-training loss; teacher frozen in eval mode, student in train mode), repeated
//! `steps` times on the same batch with one SGD optimizer; nothing here is a second
//! implementation of a step. The models, the loss and the optimizer run in the
//! precision asked for (`f64` or `f32`, on the CPU backend); the updated state dict comes
//! back under the keys of the weight file it was loaded from.

use std::collections::BTreeMap;
use std::iter::once;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};
use sskd_augment::loader::HostBatch;
use sskd_losses::torch_names::{from_repdistiller, to_repdistiller, TorchNames};
use sskd_losses::{CrdSampler, Distiller, Method, MethodConfig, MethodContext};
use sskd_models::atomic::write_atomically;
use sskd_models::export::export_state_dict;
use sskd_models::import::{
    backbone_key_path, backbone_with_head_key_path, le_values, load_module_state_dict,
    load_state_dict, load_state_dict_with_head, load_weights, load_weights_with_head,
    read_state_dict, StateDict, WeightFormat,
};
use sskd_models::precision::cast_floats;
use sskd_models::{create_model, BackboneWithHead};
use sskd_train::epoch::{student_objective_epoch, teacher_epoch, Student, StudentObjective};
use sskd_train::metrics::EpochReport;
use sskd_train::TrainError;

/// Which network is trained.
#[derive(Debug, Clone)]
pub enum StepStage {
    /// Stage 1: cross-entropy training of one network.
    Teacher {
        /// Architecture name of the registry.
        arch: String,
        /// Its weights (`.pth` / `.safetensors` state dict, or a Burn record).
        weights: PathBuf,
    },
    /// Stage 3: a student distilled from a frozen teacher with `method`.
    Student {
        /// The method and its settings (`MethodConfig::published("crd")`, then any changes).
        method: MethodConfig,
        /// Teacher architecture.
        teacher_arch: String,
        /// Teacher backbone and SS head (SSKD layout `backbone.*`, `proj_head.*`; the head may
        /// be absent for methods that do not use it).
        teacher: PathBuf,
        /// Student architecture.
        student_arch: String,
        /// Student backbone, with its SS head (SSKD layout) or without (RepDistiller's
        /// `{"model": …}`) for methods that do not use it.
        student: PathBuf,
        /// The method's own modules under RepDistiller's names ([`TorchNames`]); `None`:
        /// freshly initialised.
        method_state: Option<PathBuf>,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// The network(s) and weights.
    pub stage: StepStage,
    /// `batch.safetensors`: `x` `[rows, 3, H, W]` and `labels` `[B]` (i64/i32). `x` is read as
    /// f32, as the data loader holds images (an f64 `x` is rounded to f32, then cast to the
    /// run's precision).
    pub batch: PathBuf,
    /// Updates applied on the same batch.
    pub steps: usize,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Float type of the whole step (`F32` or `F64`).
    pub precision: DType,
    /// Classes of the classifier(s).
    pub num_classes: usize,
    /// Steps of the method's pre-training stage ([`StudentObjective::Pretrain`]: AB, FT, FSP) instead of
    /// the main one.
    pub init: bool,
}

/// What the steps did.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The trained network's state dict: `(key, data)` under the weight file's keys (a Burn
    /// record's module paths with PyTorch leaf names when loaded from a record), in the run's
    /// precision.
    pub state_dict: Vec<(String, TensorData)>,
    /// One report per step: the method's terms (and `total`) and counts.
    pub reports: Vec<EpochReport>,
    /// The method's own modules after the steps, under RepDistiller's names (CRD's memory
    /// and `contrast.params` included); empty for a method without any.
    pub method_state: Vec<(String, TensorData)>,
}

type B = burn::backend::Autodiff<burn::backend::Flex>;

/// A batch file: the batch, and CRD's contrast rows by dataset index when it holds them.
pub struct BatchFile {
    /// Images, labels and dataset indices (`index`, else `0..B`).
    pub batch: HostBatch,
    /// `contrast_idx` `[B, K + 1]` by the row's dataset index.
    pub contrast: Option<BTreeMap<usize, Vec<usize>>>,
}

/// Reads `batch.safetensors` (`x`, `labels`; optional `index` `[B]` and `contrast_idx`
/// `[B, K + 1]`, integers, as RepDistiller's `CIFAR100InstanceSample` gives them).
pub fn read_batch(path: &Path) -> Result<BatchFile> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let tensor = |name: &str| {
        file.tensor(name)
            .map_err(|_| anyhow::anyhow!("{}: no tensor `{name}`", path.display()))
    };
    let (x, labels) = (tensor("x")?, tensor("labels")?);
    let shape: [usize; 4] = x.shape().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{}: `x` must be [rows, C, H, W], got {:?}",
            path.display(),
            x.shape()
        )
    })?;
    let pixels: Vec<f32> = match x.dtype() {
        Dtype::F32 => le_values(x.data(), f32::from_le_bytes),
        Dtype::F64 => le_values(x.data(), f64::from_le_bytes)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => bail!(
            "{}: `x` has dtype {other:?}, expected F32 or F64",
            path.display()
        ),
    };
    let integers = |name: &str, view: &safetensors::tensor::TensorView| -> Result<Vec<i64>> {
        Ok(match view.dtype() {
            Dtype::I64 => le_values(view.data(), i64::from_le_bytes),
            Dtype::I32 => le_values(view.data(), i32::from_le_bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            other => bail!(
                "{}: `{name}` has dtype {other:?}, expected I64 or I32",
                path.display()
            ),
        })
    };
    let labels = integers("labels", &labels)?;
    ensure!(
        !labels.is_empty() && shape[0].is_multiple_of(labels.len()),
        "{}: `x` has {} rows for {} labels; expected B rows (teacher) or 4·B (rotations)",
        path.display(),
        shape[0],
        labels.len()
    );
    let count = labels.len();
    let indices = match file.tensor("index") {
        Ok(view) => dataset_indices(path, "index", integers("index", &view)?, count)?,
        Err(_) => (0..count).collect(),
    };
    let contrast = match file.tensor("contrast_idx") {
        Ok(view) => {
            let columns = view.shape().get(1).copied().unwrap_or(0);
            ensure!(
                view.shape() == [count, columns] && columns >= 2,
                "{}: `contrast_idx` must be [B, K + 1] with B = {count}, got {:?}",
                path.display(),
                view.shape()
            );
            let flat = dataset_indices(
                path,
                "contrast_idx",
                integers("contrast_idx", &view)?,
                count * columns,
            )?;
            let rows = flat.chunks(columns).map(<[usize]>::to_vec);
            Some(indices.iter().copied().zip(rows).collect())
        }
        Err(_) => None,
    };
    let batch = HostBatch {
        pixels,
        shape,
        labels,
        indices: indices.iter().map(|&i| i as i64).collect(),
    };
    Ok(BatchFile { batch, contrast })
}

/// `values` as dataset indices: `count` of them, none negative.
fn dataset_indices(path: &Path, name: &str, values: Vec<i64>, count: usize) -> Result<Vec<usize>> {
    ensure!(
        values.len() == count,
        "{}: `{name}` has {} values, expected {count}",
        path.display(),
        values.len()
    );
    values
        .into_iter()
        .map(|value| {
            usize::try_from(value)
                .map_err(|_| anyhow::anyhow!("{}: `{name}` holds {value}", path.display()))
        })
        .collect()
}

/// Applies `epoch` (one epoch over the single batch) `steps` times; the module after the last
/// and each step's report.
fn repeat_steps<M>(
    steps: usize,
    mut module: M,
    mut epoch: impl FnMut(M) -> std::result::Result<(M, EpochReport), TrainError>,
) -> Result<(M, Vec<EpochReport>)> {
    let mut reports = Vec::with_capacity(steps);
    for _ in 0..steps {
        let (next, report) = epoch(module)?;
        module = next;
        reports.push(report);
    }
    Ok((module, reports))
}

/// Checks the labels against the classes and the rows against the layout the stage needs.
fn check_batch(batch: &HostBatch, path: &Path, num_classes: usize, copies: usize) -> Result<()> {
    for (row, &label) in batch.labels.iter().enumerate() {
        ensure!(
            (0..num_classes as i64).contains(&label),
            "{}: label {label} of row {row} is outside 0..{num_classes}",
            path.display()
        );
    }
    let expected = batch.labels.len() * copies;
    ensure!(
        batch.shape[0] == expected,
        "{}: `x` has {} rows; this stage needs {expected} ({} labels × {copies})",
        path.display(),
        batch.shape[0],
        batch.labels.len()
    );
    Ok(())
}

/// The keys of a state-dict weight file (as the importer lists them: sorted, container and
/// `module.` prefixes removed); `None` for a Burn record.
fn weight_keys(path: &Path) -> Result<Option<Vec<String>>> {
    if WeightFormat::of(path)? == WeightFormat::BurnRecord {
        return Ok(None);
    }
    let state = read_state_dict(path)?;
    Ok(Some(state.tensors.into_iter().map(|(k, _)| k).collect()))
}

/// The trained module's state dict under the keys of its weight file `source` (placed by
/// `key_path`), or, for a Burn record (`keys` `None`), under its module paths with PyTorch leaf
/// names.
fn trained_state_dict<M: burn::module::Module<burn::backend::Flex>>(
    trained: &M,
    keys: Option<Vec<String>>,
    (source, arch): (&Path, &str),
    key_path: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, TensorData)>> {
    use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
    let state_dict = match keys {
        Some(keys) => export_state_dict(trained, &keys, source, arch, key_path)?,
        None => {
            let paths: Vec<String> = trained
                .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
                .into_iter()
                .map(|snapshot| snapshot.full_path())
                .collect();
            export_state_dict(trained, &paths, source, arch, |path| Some(path.to_string()))?
        }
    };
    Ok(state_dict)
}

/// Runs the steps.
pub fn run_steps(options: &StepOptions) -> Result<StepOutcome> {
    ensure!(options.steps >= 1, "--steps must be at least 1");
    ensure!(
        matches!(options.precision, DType::F32 | DType::F64),
        "precision must be f32 or f64"
    );
    let batch = read_batch(&options.batch)?;
    match &options.stage {
        StepStage::Teacher { arch, weights } => {
            ensure!(!options.init, "--init is a step of the student stage");
            teacher_steps(options, batch.batch, arch, weights)
        }
        StepStage::Student {
            method,
            teacher_arch,
            teacher,
            student_arch,
            student,
            method_state,
        } => {
            let networks = StudentNetworks {
                method,
                teacher_arch,
                teacher,
                student_arch,
                student,
                method_state: method_state.as_deref(),
            };
            student_steps(options, batch, &networks)
        }
    }
}

fn teacher_steps(
    options: &StepOptions,
    batch: HostBatch,
    arch: &str,
    weights: &Path,
) -> Result<StepOutcome> {
    check_batch(&batch, &options.batch, options.num_classes, 1)?;
    let device = Default::default();
    let model = create_model::<B>(arch, options.num_classes, &device)?;
    let model = cast_floats(load_weights(model, weights, &device)?, options.precision);
    let keys = weight_keys(weights)?;
    let mut optimizer = sskd_train::sgd(options.momentum, options.weight_decay).init();
    let (model, reports) = repeat_steps(options.steps, model, |model| {
        let batches = once(Ok(batch.clone()));
        teacher_epoch(
            model,
            &mut optimizer,
            batches,
            &mut (),
            options.lr,
            &[device],
        )
    })?;
    let trained = model.valid();
    let key_path = backbone_key_path(&trained);
    let state_dict = trained_state_dict(&trained, keys, (weights, arch), key_path)?;
    Ok(StepOutcome {
        state_dict,
        reports,
        method_state: Vec::new(),
    })
}

/// The student stage's networks.
struct StudentNetworks<'a> {
    method: &'a MethodConfig,
    teacher_arch: &'a str,
    teacher: &'a Path,
    student_arch: &'a str,
    student: &'a Path,
    method_state: Option<&'a Path>,
}

/// A backbone and SS head from `path`, and whether the file held the head; without
/// `proj_head.*` tensors in a state-dict file, the backbone alone with a fresh head when
/// `head_required` is false.
fn network_with_head(
    arch: &str,
    path: &Path,
    num_classes: usize,
    head_required: bool,
) -> Result<(BackboneWithHead<B>, bool)> {
    let device = Default::default();
    let network = BackboneWithHead::new(create_model::<B>(arch, num_classes, &device)?, &device);
    if WeightFormat::of(path)? == WeightFormat::BurnRecord {
        return Ok((load_weights_with_head(network, path, &device)?, true));
    }
    let state = read_state_dict(path)?;
    if state
        .tensors
        .iter()
        .any(|(k, _)| k.starts_with("proj_head."))
    {
        return Ok((load_state_dict_with_head(network, state)?, true));
    }
    ensure!(
        !head_required,
        "{}: no `proj_head.*` tensors (the SS head), which this method needs",
        path.display()
    );
    let BackboneWithHead {
        backbone,
        proj_head,
    } = network;
    let backbone = load_state_dict(backbone, state)?;
    Ok((
        BackboneWithHead {
            backbone,
            proj_head,
        },
        false,
    ))
}

fn student_steps(
    options: &StepOptions,
    batch: BatchFile,
    networks: &StudentNetworks,
) -> Result<StepOutcome> {
    let device = Default::default();
    let classes = options.num_classes;
    let names = TorchNames::of(networks.method);
    let method_state = networks
        .method_state
        .map(|path| read_method_state(path, networks.method))
        .transpose()?;
    let context = method_context(networks, &batch, method_state.as_ref())?;
    let mut method = networks.method.init::<B>(&context, &device)?;
    if let (Some(rows), Method::Crd(crd)) = (batch.contrast, &mut method) {
        crd.method.sampler = Some(CrdSampler::given(rows));
    }
    if let Some(state) = method_state {
        let file_keys = |path: &str| names.file_key(path).into_iter().collect();
        method = load_module_state_dict(
            method,
            state,
            "method",
            |key| names.module_path(key),
            file_keys,
        )?;
    }
    let needs = method.needs();
    let stage_needs = match (options.init, method.pretraining()) {
        (false, _) => needs,
        (true, Some(stage)) => stage.needs,
        (true, None) => bail!(
            "--init: method `{}` has no pre-training stage (AB, FT and FSP have one)",
            networks.method.name()
        ),
    };
    let batch = batch.batch;
    check_batch(
        &batch,
        &options.batch,
        classes,
        if stage_needs.rotations { 4 } else { 1 },
    )?;
    let precision = options.precision;
    let (teacher, _) =
        network_with_head(networks.teacher_arch, networks.teacher, classes, needs.head)?;
    let teacher = cast_floats(teacher, precision).valid();
    let (student, student_has_head) =
        network_with_head(networks.student_arch, networks.student, classes, needs.head)?;
    let keys = weight_keys(networks.student)?;
    let student = Student {
        network: cast_floats(student, precision),
        method: cast_floats(method, precision),
    };
    let mut optimizer = sskd_train::sgd(options.momentum, options.weight_decay).init();
    let objective = match options.init {
        true => StudentObjective::Pretrain,
        false => StudentObjective::Distill,
    };
    let (student, reports) = repeat_steps(options.steps, student, |student| {
        let batches = once(Ok(batch.clone()));
        let args = (0, options.lr, objective);
        let steps = &mut ();
        student_objective_epoch(
            student,
            &teacher,
            &mut optimizer,
            batches,
            steps,
            args,
            &[device],
        )
    })
    .with_context(|| {
        let state = networks
            .method_state
            .map(|path| format!(" and {}", path.display()));
        let inputs = format!("{}{}", options.batch.display(), state.unwrap_or_default());
        format!("a {} step on {inputs}", networks.method.name())
    })?;
    let trained = student.valid();
    let source = (networks.student, networks.student_arch);
    let state_dict = if student_has_head {
        let mapping = backbone_with_head_key_path(&trained.network);
        trained_state_dict(&trained.network, keys, source, mapping)?
    } else {
        let mapping = backbone_key_path(&trained.network.backbone);
        trained_state_dict(&trained.network.backbone, keys, source, mapping)?
    };
    Ok(StepOutcome {
        state_dict,
        reports,
        method_state: method_state_dict(&trained.method, networks.method)?,
    })
}

/// The method's context: the networks' shapes probed at the batch's image size, and as many
/// training samples as the memory bank of `method_state` holds (else the batch's largest
/// dataset index + 1).
fn method_context(
    networks: &StudentNetworks,
    batch: &BatchFile,
    method_state: Option<&StateDict>,
) -> Result<MethodContext> {
    let device = Default::default();
    let classes_of = |arch| create_model::<burn::backend::Flex>(arch, 1, &device);
    let (teacher, student) = (
        classes_of(networks.teacher_arch)?,
        classes_of(networks.student_arch)?,
    );
    let side = batch.batch.shape[2];
    let largest_index = batch.batch.indices.iter().copied().max().unwrap_or(0) as usize;
    let memory_rows = method_state
        .and_then(|state| {
            state
                .tensors
                .iter()
                .find(|(key, _)| key.ends_with("memory_v1"))
        })
        .map(|(_, data)| data.shape[0]);
    let n_data = memory_rows.unwrap_or(largest_index + 1);
    Ok(MethodContext::probe(
        &student,
        &teacher,
        [side, side],
        n_data,
        &device,
    ))
}

/// The method-state file as the method's loader reads it (see [`from_repdistiller`]).
fn read_method_state(path: &Path, method: &MethodConfig) -> Result<StateDict> {
    let mut state = read_state_dict(path)?;
    from_repdistiller(method, &mut state.tensors)
        .with_context(|| format!("{}: method state", path.display()))?;
    Ok(state)
}

/// The method's modules under RepDistiller's names (see [`to_repdistiller`]).
fn method_state_dict(
    trained: &Method<burn::backend::Flex>,
    method: &MethodConfig,
) -> Result<Vec<(String, TensorData)>> {
    use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
    let names = TorchNames::of(method);
    let paths: Vec<String> = trained
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|snapshot| snapshot.full_path())
        .collect();
    let keys = paths
        .iter()
        .map(|path| {
            names.file_key(path).with_context(|| {
                format!(
                    "method `{}`: no RepDistiller name for `{path}`",
                    method.name()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let label = Path::new("method state");
    let mut state = export_state_dict(trained, &keys, label, method.name(), |key| {
        names.module_path(key)
    })?;
    to_repdistiller(method, &mut state)?;
    Ok(state)
}

/// Writes a state dict as safetensors (atomically), each tensor in its own float type.
pub fn write_state_dict(path: &Path, state_dict: &[(String, TensorData)]) -> Result<()> {
    let views = state_dict
        .iter()
        .map(|(key, data)| {
            let dtype = match data.dtype {
                DType::F64 => Dtype::F64,
                DType::F32 => Dtype::F32,
                other => bail!("{key}: cannot write dtype {other:?}"),
            };
            let view =
                safetensors::tensor::TensorView::new(dtype, data.shape.to_vec(), data.as_bytes())
                    .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            Ok((key.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| anyhow::anyhow!("{}: cannot serialise: {e}", path.display()))?;
    write_atomically(path, &bytes)?;
    Ok(())
}

/// The per-step terms as JSON: one object per step with the method's terms, `total` and its
/// counts (`kept_tf`, `kept_ss` for SSKD).
pub fn terms_json(reports: &[EpochReport]) -> serde_json::Value {
    reports
        .iter()
        .map(|report| {
            let mut entry: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            for (name, value) in &report.terms {
                entry.insert(name.clone(), serde_json::json!(value));
            }
            for (name, value) in &report.counts {
                entry.insert(name.clone(), serde_json::json!(value.round() as i64));
            }
            serde_json::json!(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use sskd_models::checkpoint::save_record;

    /// A batch file of `rows` random-ish images and `labels`.
    fn write_batch(path: &Path, rows: usize, labels: &[i64]) {
        let pixels: Vec<u8> = (0..rows * 3 * 32 * 32)
            .flat_map(|i| ((i % 17) as f32 / 8.0 - 1.0).to_le_bytes())
            .collect();
        let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let x = TensorView::new(Dtype::F32, vec![rows, 3, 32, 32], &pixels).unwrap();
        let y = TensorView::new(Dtype::I64, vec![labels.len()], &label_bytes).unwrap();
        std::fs::write(
            path,
            safetensors::serialize([("x", x), ("labels", y)], None).unwrap(),
        )
        .unwrap();
    }

    fn teacher_options(weights: PathBuf, batch: PathBuf, precision: DType) -> StepOptions {
        StepOptions {
            stage: StepStage::Teacher {
                arch: "resnet8".into(),
                weights,
            },
            batch,
            steps: 1,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            precision,
            num_classes: 10,
            init: false,
        }
    }

    /// A Burn record has no PyTorch keys to copy: the state dict comes back under the module's
    /// paths with PyTorch leaf names, every tensor in the run's precision.
    #[test]
    fn a_burn_record_trains_and_comes_back_under_module_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (record, batch) = (dir.path().join("w.mpk"), dir.path().join("b.safetensors"));
        let device = Default::default();
        let model = create_model::<burn::backend::Flex>("resnet8", 10, &device).unwrap();
        save_record(model, &record).unwrap();
        write_batch(&batch, 2, &[3, 7]);
        let outcome = run_steps(&teacher_options(record, batch, DType::F64)).unwrap();
        assert_eq!(outcome.reports.len(), 1);
        assert!(outcome.reports[0].terms["ce"].is_finite());
        assert!(outcome
            .state_dict
            .iter()
            .all(|(_, data)| data.dtype == DType::F64));
        let keys: Vec<&str> = outcome.state_dict.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.iter().any(|k| k.ends_with("running_var")), "{keys:?}");
    }

    /// Bad batches are errors naming the file and the problem.
    #[test]
    fn bad_batches_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (record, batch) = (dir.path().join("w.mpk"), dir.path().join("b.safetensors"));
        let device = Default::default();
        save_record(
            create_model::<burn::backend::Flex>("resnet8", 10, &device).unwrap(),
            &record,
        )
        .unwrap();
        write_batch(&batch, 2, &[3, 12]);
        let options = teacher_options(record.clone(), batch.clone(), DType::F32);
        let error = run_steps(&options).unwrap_err().to_string();
        assert!(
            error.contains("label 12 of row 1 is outside 0..10"),
            "{error}"
        );
        write_batch(&batch, 3, &[3, 4]);
        let error = run_steps(&options).unwrap_err().to_string();
        assert!(
            error.contains("b.safetensors") && error.contains("3 rows"),
            "{error}"
        );
        std::fs::write(&batch, b"not a tensor file").unwrap();
        let error = run_steps(&options).unwrap_err().to_string();
        assert!(error.contains("not a safetensors file"), "{error}");
    }
}
