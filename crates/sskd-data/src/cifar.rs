//! CIFAR-10 and CIFAR-100, binary ("for C programs") and python (pickle) versions.
//!
//! Binary records: CIFAR-100 `<coarse u8><fine u8><3072 px>` (3,074 B), CIFAR-10 `<label
//! u8><3072 px>` (3,073 B); pixels are the R, G and B planes of a 32×32 image, row-major.

use std::path::{Path, PathBuf};

use crate::pickle::{self, PickleValue};
use crate::{DataError, PlanarImages};

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 50,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Parses fixed-size records: `label_offset` is the label byte within the record header of
/// `header` bytes; labels must be below `classes`.
fn parse_records(
    path: &Path,
    bytes: &[u8],
    header: usize,
    label_offset: usize,
    classes: usize,
) -> Result<PlanarImages, DataError> {
    let record = header + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected: format!("a non-zero multiple of {record} (one record = {header} label byte(s) + 3072 pixels)"),
            found: bytes.len() as u64,
        });
    }
    let count = bytes.len() / record;
    let mut labels = Vec::with_capacity(count);
    let mut pixels = Vec::with_capacity(count * PIXELS);
    for (index, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_offset] as usize;
        if label >= classes {
            return Err(DataError::record(
                path,
                format!("record {index}"),
                format!("label {label}, expected 0..{}", classes - 1),
            ));
        }
        labels.push(label);
        pixels.extend_from_slice(&chunk[header..]);
    }
    Ok(PlanarImages {
        pixels,
        labels,
        height: 32,
        width: 32,
        classes,
    })
}

/// CIFAR-100 binary: `train.bin` or `test.bin` in `dir` (`cifar-100-binary/`), fine labels.
pub fn cifar100_binary(dir: &Path, split: Split) -> Result<PlanarImages, DataError> {
    let path = dir.join(match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    });
    let bytes = read(&path)?;
    let images = parse_records(&path, &bytes, 2, 1, 100)?;
    for (index, chunk) in bytes.chunks_exact(2 + PIXELS).enumerate() {
        if chunk[0] >= 20 {
            return Err(DataError::record(
                &path,
                format!("record {index}"),
                format!("coarse label {}, expected 0..19", chunk[0]),
            ));
        }
    }
    Ok(images)
}

/// CIFAR-10 binary: `data_batch_1.bin` … `data_batch_5.bin` (train) or `test_batch.bin` in
/// `dir` (`cifar-10-batches-bin/`).
pub fn cifar10_binary(dir: &Path, split: Split) -> Result<PlanarImages, DataError> {
    let files: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    let mut all = PlanarImages {
        pixels: Vec::new(),
        labels: Vec::new(),
        height: 32,
        width: 32,
        classes: 10,
    };
    for path in files {
        let part = parse_records(&path, &read(&path)?, 1, 0, 10)?;
        all.pixels.extend(part.pixels);
        all.labels.extend(part.labels);
    }
    Ok(all)
}

/// The class names of a text file with one name per line (`fine_label_names.txt`).
pub fn label_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// CIFAR-100 python version: the pickle `train` or `test` in `dir` (`cifar-100-python/`), as
/// SSKD's loader reads it (`data` N×3072 uint8, `fine_labels`).
pub fn cifar100_python(dir: &Path, split: Split) -> Result<PlanarImages, DataError> {
    let path = dir.join(match split {
        Split::Train => "train",
        Split::Test => "test",
    });
    let value = pickle::load(&path, &read(&path)?)?;
    let format_error = |reason: String| DataError::Format {
        path: path.clone(),
        format: "CIFAR-100 python pickle",
        reason,
    };
    let dict = value
        .as_dict()
        .ok_or_else(|| format_error("the top level is not a dict".into()))?;
    let data = pickle::entry(dict, "data").ok_or_else(|| format_error("no `data` entry".into()))?;
    let labels = pickle::entry(dict, "fine_labels")
        .ok_or_else(|| format_error("no `fine_labels` entry".into()))?;
    let (shape, pixels) = match data {
        PickleValue::NdArray {
            shape,
            bytes,
            dtype,
        } if dtype == "|u1" || dtype == "u1" => (shape.clone(), bytes.clone()),
        PickleValue::NdArray { dtype, .. } => {
            return Err(format_error(format!(
                "`data` has dtype {dtype}, expected uint8"
            )))
        }
        other => {
            return Err(format_error(format!(
                "`data` is {}, expected a numpy array",
                other.kind()
            )))
        }
    };
    let labels = labels
        .as_list()
        .ok_or_else(|| format_error("`fine_labels` is not a list".into()))?
        .iter()
        .enumerate()
        .map(|(index, value)| match value.as_int() {
            Some(label @ 0..=99) => Ok(label as usize),
            _ => Err(DataError::record(
                &path,
                format!("fine_labels[{index}]"),
                format!("{value:?} is not a label 0..99"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if shape != [labels.len(), PIXELS] || pixels.len() != labels.len() * PIXELS {
        return Err(format_error(format!(
            "`data` has shape {shape:?} ({} bytes) for {} labels, expected [{}, 3072]",
            pixels.len(),
            labels.len(),
            labels.len()
        )));
    }
    Ok(PlanarImages {
        pixels: pixels.to_vec(),
        labels,
        height: 32,
        width: 32,
        classes: 100,
    })
}

/// The fine class names of the python version's `meta` pickle (`fine_label_names`).
pub fn cifar100_python_label_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let path = dir.join("meta");
    let value = pickle::load(&path, &read(&path)?)?;
    let names = value
        .as_dict()
        .and_then(|dict| pickle::entry(dict, "fine_label_names"))
        .and_then(PickleValue::as_list)
        .ok_or_else(|| DataError::Format {
            path: path.clone(),
            format: "CIFAR-100 meta pickle",
            reason: "no `fine_label_names` list".into(),
        })?;
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            name.as_text().ok_or_else(|| {
                DataError::record(&path, format!("fine_label_names[{index}]"), "not a string")
            })
        })
        .collect()
}

/// CIFAR-100 from a folder holding either version: `train.bin`/`test.bin` (binary) or
/// `train`/`test` pickles (python).
pub fn cifar100(dir: &Path, split: Split) -> Result<PlanarImages, DataError> {
    if dir.join("train.bin").exists() || dir.join("test.bin").exists() {
        cifar100_binary(dir, split)
    } else if dir.join("train").is_file() || dir.join("test").is_file() {
        cifar100_python(dir, split)
    } else {
        Err(DataError::Io {
            path: dir.to_path_buf(),
            reason: "neither the binary (train.bin, test.bin) nor the python (train, test, meta) CIFAR-100 files are here".into(),
        })
    }
}
