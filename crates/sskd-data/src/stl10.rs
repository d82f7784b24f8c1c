//! STL-10, binary version (`stl10_binary/`): 96×96 images stored channel by channel, each
//! channel column-major; labels 1–10 in `*_y.bin`; `fold_indices.txt` (10 lines of 0-based
//! indices into train); the unlabeled split.

use std::path::Path;

use crate::{DataError, PlanarImages};

const SIDE: usize = 96;
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// Which STL-10 split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stl10Split {
    /// 5,000 labelled training images.
    Train,
    /// 8,000 labelled test images.
    Test,
    /// 100,000 unlabeled images (label 0 each, `classes` = 0).
    Unlabeled,
}

/// Converts column-major planes to row-major planes in place.
fn transpose_planes(pixels: &mut [u8]) {
    let mut plane = vec![0u8; SIDE * SIDE];
    for chunk in pixels.chunks_exact_mut(SIDE * SIDE) {
        for row in 0..SIDE {
            for column in 0..SIDE {
                plane[row * SIDE + column] = chunk[column * SIDE + row];
            }
        }
        chunk.copy_from_slice(&plane);
    }
}

/// Reads a split of STL-10 from `dir`.
pub fn stl10(dir: &Path, split: Stl10Split) -> Result<PlanarImages, DataError> {
    let (images_file, labels_file) = match split {
        Stl10Split::Train => ("train_X.bin", Some("train_y.bin")),
        Stl10Split::Test => ("test_X.bin", Some("test_y.bin")),
        Stl10Split::Unlabeled => ("unlabeled_X.bin", None),
    };
    let images_path = dir.join(images_file);
    let mut pixels = std::fs::read(&images_path).map_err(|e| DataError::io(&images_path, e))?;
    if pixels.is_empty() || !pixels.len().is_multiple_of(IMAGE_BYTES) {
        return Err(DataError::Size {
            path: images_path,
            expected: format!("a non-zero multiple of {IMAGE_BYTES} (96×96×3)"),
            found: pixels.len() as u64,
        });
    }
    let count = pixels.len() / IMAGE_BYTES;
    let labels = match labels_file {
        None => vec![0; count],
        Some(name) => {
            let path = dir.join(name);
            let raw = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            if raw.len() != count {
                return Err(DataError::Size {
                    path,
                    expected: format!("{count} (one byte per image of {images_file})"),
                    found: raw.len() as u64,
                });
            }
            raw.iter()
                .enumerate()
                .map(|(index, &label)| match label {
                    1..=10 => Ok(label as usize - 1),
                    _ => Err(DataError::record(
                        &path,
                        format!("record {index}"),
                        format!("label {label}, expected 1..10"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    transpose_planes(&mut pixels);
    let classes = if labels_file.is_some() { 10 } else { 0 };
    Ok(PlanarImages {
        pixels,
        labels,
        height: SIDE,
        width: SIDE,
        classes,
    })
}

/// The ten predefined training folds of `fold_indices.txt` (0-based indices into train),
/// checked against `train_size`.
pub fn stl10_folds(dir: &Path, train_size: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let path = dir.join("fold_indices.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            line.split_whitespace()
                .map(|token| match token.parse::<usize>() {
                    Ok(index) if index < train_size => Ok(index),
                    _ => Err(DataError::record(
                        &path,
                        format!("line {}", number + 1),
                        format!("`{token}` is not an index below {train_size}"),
                    )),
                })
                .collect()
        })
        .collect()
}
