//! Datasets of image files: ImageNet-style class folders (`train/<wnid>/…`, labels = sorted
//! wnid order) and Tiny-ImageNet-200 (validation labels read from `val/val_annotations.txt`).
//! Files are decoded by content, not extension (a PNG named `.JPEG` decodes), and grey or CMYK
//! JPEGs become RGB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{ClassLabels, DataError, LabeledImage};

/// Labelled image files and the class names (index = label).
#[derive(Debug, Clone)]
pub struct ImageFiles {
    /// `(file, label)` pairs.
    pub files: Vec<(PathBuf, usize)>,
    /// Class names (wnids), sorted.
    pub classes: Vec<String>,
}

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("jpeg" | "jpg" | "png")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    Ok(entries)
}

/// Decodes an image file (format sniffed from the content) to RGB.
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes_rgb(path, &bytes)
}

/// Decodes the `bytes` of image file `path` (format sniffed from the content) to RGB.
pub(crate) fn decode_bytes_rgb(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, DataError> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map(|image| image.into_rgb8())
        .map_err(|e| DataError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// How far a scan of class folders is ([`ImageFiles::image_folder_observed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderScan {
    /// Class folders scanned so far.
    pub classes_done: usize,
    /// Class folders in all.
    pub classes: usize,
    /// Images found in the folder just scanned.
    pub images: usize,
}

impl ImageFiles {
    /// An `ImageFolder` layout: every sub-folder of `dir` is a class (sorted by name), every
    /// `.jpeg`/`.jpg`/`.png` file in it an image (sorted). A class folder without images is an
    /// error naming it, as in torchvision.
    pub fn image_folder(dir: &Path) -> Result<Self, DataError> {
        Self::image_folder_observed(dir, |_| {})
    }

    /// [`image_folder`](Self::image_folder), telling `scanned` after each class folder how
    /// far the scan is (a scan of ImageNet's 1,000 folders of 1.28 M files takes a while).
    pub fn image_folder_observed(
        dir: &Path,
        mut scanned: impl FnMut(FolderScan),
    ) -> Result<Self, DataError> {
        let class_dirs: Vec<PathBuf> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        if class_dirs.is_empty() {
            return Err(DataError::Io {
                path: dir.to_path_buf(),
                reason: "no class folders".into(),
            });
        }
        let mut files = Vec::new();
        let mut classes = Vec::new();
        for (label, class_dir) in class_dirs.iter().enumerate() {
            classes.push(
                class_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            let images: Vec<PathBuf> = sorted_entries(class_dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                // torchvision's ImageFolder refuses an empty class too: its label would exist
                // with no example, silently shifting what the classifier can learn.
                return Err(DataError::Io {
                    path: class_dir.clone(),
                    reason: "class folder without any .jpeg/.jpg/.png image".into(),
                });
            }
            scanned(FolderScan {
                classes_done: label + 1,
                classes: class_dirs.len(),
                images: images.len(),
            });
            files.extend(images.into_iter().map(|p| (p, label)));
        }
        Ok(Self { files, classes })
    }

    /// Tiny-ImageNet-200 in `root`: the training split (`train/<wnid>/images/*.JPEG`) or the
    /// validation split (`val/images/*` labelled by `val/val_annotations.txt`); classes are the
    /// wnids of `wnids.txt`, sorted.
    pub fn tiny_imagenet(root: &Path, validation: bool) -> Result<Self, DataError> {
        let wnids_path = root.join("wnids.txt");
        let text =
            std::fs::read_to_string(&wnids_path).map_err(|e| DataError::io(&wnids_path, e))?;
        let mut classes: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        classes.sort();
        let label_of: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut files = Vec::new();
        if validation {
            let annotations = root.join("val/val_annotations.txt");
            let text = std::fs::read_to_string(&annotations)
                .map_err(|e| DataError::io(&annotations, e))?;
            for (number, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let mut fields = line.split('\t');
                let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
                    return Err(DataError::record(
                        &annotations,
                        format!("line {}", number + 1),
                        "expected `file<TAB>wnid<TAB>box`",
                    ));
                };
                let label = *label_of.get(wnid).ok_or_else(|| {
                    DataError::record(
                        &annotations,
                        format!("line {}", number + 1),
                        format!("wnid `{wnid}` is not in wnids.txt"),
                    )
                })?;
                let path = root.join("val/images").join(file);
                if !path.is_file() {
                    return Err(DataError::record(
                        &annotations,
                        format!("line {}", number + 1),
                        format!("{} does not exist", path.display()),
                    ));
                }
                files.push((path, label));
            }
        } else {
            for (label, wnid) in classes.iter().enumerate() {
                let dir = root.join("train").join(wnid).join("images");
                files.extend(
                    sorted_entries(&dir)?
                        .into_iter()
                        .filter(|p| is_image(p))
                        .map(|p| (p, label)),
                );
            }
        }
        Ok(Self { files, classes })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Decodes image `index`.
    pub fn decode(&self, index: usize) -> Result<LabeledImage, DataError> {
        let (path, label) = self.files.get(index).ok_or_else(|| DataError::Io {
            path: PathBuf::new(),
            reason: format!("index {index} is past the {} images", self.files.len()),
        })?;
        Ok(LabeledImage {
            image: decode_rgb(path)?,
            label: *label,
        })
    }

    /// Reads every file's header. A file that cannot be read is an error naming it, unless
    /// `skip_bad`: then such files are dropped and their number returned.
    pub fn verify(mut self, skip_bad: bool) -> Result<(Self, usize), DataError> {
        let mut bad = 0;
        let mut kept = Vec::with_capacity(self.files.len());
        for (path, label) in self.files {
            let header = image::ImageReader::open(&path)
                .map_err(|e| DataError::io(&path, e))
                .and_then(|r| r.with_guessed_format().map_err(|e| DataError::io(&path, e)))
                .and_then(|r| {
                    r.into_dimensions().map_err(|e| DataError::Decode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
                });
            match header {
                Ok(_) => kept.push((path, label)),
                Err(error) if !skip_bad => return Err(error),
                Err(error) => {
                    tracing::warn!("skipping {error}");
                    bad += 1;
                }
            }
        }
        self.files = kept;
        Ok((self, bad))
    }
}

impl ClassLabels for ImageFiles {
    fn class_labels(&self) -> Vec<usize> {
        self.files.iter().map(|(_, label)| *label).collect()
    }
}

impl burn::data::dataset::Dataset<LabeledImage> for ImageFiles {
    /// Decodes image `index`; a file that fails to decode is logged and gives `None` (run
    /// [`ImageFiles::verify`] first to catch bad files up front).
    fn get(&self, index: usize) -> Option<LabeledImage> {
        match self.decode(index) {
            Ok(item) => Some(item),
            Err(error) => {
                tracing::error!("{error}");
                None
            }
        }
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}
