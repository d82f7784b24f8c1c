//! MNIST / Fashion-MNIST IDX files (`*-images-idx3-ubyte[.gz]`, `*-labels-idx1-ubyte[.gz]`),
//! gzipped or not. Grey images are expanded to RGB.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, PlanarImages};

/// Reads a file, gunzipping it when it starts with the gzip magic.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                format: "gzip",
                reason: e.to_string(),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header of `dims` big-endian u32 dimensions with magic `0x0000_08{dims}`.
fn idx_payload<'a>(
    path: &Path,
    bytes: &'a [u8],
    dims: usize,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let header = 4 + 4 * dims;
    let format_error = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "IDX",
        reason,
    };
    if bytes.len() < header {
        return Err(format_error(format!(
            "{} bytes, shorter than the {header}-byte header",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if magic != 0x0800 | dims as u32 {
        return Err(format_error(format!(
            "magic 0x{magic:08x}, expected 0x{:08x} (unsigned bytes, {dims} dimensions)",
            0x0800 | dims as u32
        )));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|d| {
            u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let payload = &bytes[header..];
    let expected = shape
        .iter()
        .try_fold(1usize, |product, &side| product.checked_mul(side));
    if expected != Some(payload.len()) {
        let expected = shape.iter().map(|&side| side as u128).product::<u128>();
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected: format!(
                "{} ({header}-byte header + {expected} for shape {shape:?})",
                header as u128 + expected
            ),
            found: bytes.len() as u64,
        });
    }
    Ok((shape, payload))
}

/// Finds `stem` or `stem.gz` in `dir`.
fn locate(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::Io {
            path: dir.join(stem),
            reason: "missing (also looked for .gz)".into(),
        })
}

/// Reads `{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` from `dir`
/// (`prefix` is `train` or `t10k`); images become RGB (the grey value in all three planes).
pub fn idx_images(dir: &Path, prefix: &str, classes: usize) -> Result<PlanarImages, DataError> {
    let images_path = locate(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = locate(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images_raw = read_maybe_gzip(&images_path)?;
    let labels_raw = read_maybe_gzip(&labels_path)?;
    let (shape, grey) = idx_payload(&images_path, &images_raw, 3)?;
    if shape[1] == 0 || shape[2] == 0 {
        return Err(DataError::Format {
            path: images_path,
            format: "IDX",
            reason: format!(
                "images of {}×{} pixels (a side of 0), expected at least 1×1",
                shape[1], shape[2]
            ),
        });
    }
    let (label_shape, labels) = idx_payload(&labels_path, &labels_raw, 1)?;
    if label_shape[0] != shape[0] {
        return Err(DataError::record(
            &labels_path,
            "header",
            format!(
                "{} labels for {} images in {}",
                label_shape[0],
                shape[0],
                images_path.display()
            ),
        ));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(index, &label)| {
            if (label as usize) < classes {
                Ok(label as usize)
            } else {
                Err(DataError::record(
                    &labels_path,
                    format!("record {index}"),
                    format!("label {label}, expected 0..{}", classes - 1),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let plane = shape[1] * shape[2];
    let mut pixels = Vec::with_capacity(grey.len() * 3);
    for image in grey.chunks_exact(plane) {
        for _ in 0..3 {
            pixels.extend_from_slice(image);
        }
    }
    Ok(PlanarImages {
        pixels,
        labels,
        height: shape[1],
        width: shape[2],
        classes,
    })
}
