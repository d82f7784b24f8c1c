//! Errors of the model crate.

use std::path::PathBuf;

/// Anything that can go wrong while building a model or reading its weights.
///
/// Every variant names the input at fault (the architecture name, the file, the key) and says
/// what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The architecture name is not in the registry.
    #[error("unknown architecture `{name}`; known architectures: {known}")]
    UnknownArchitecture {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of the registered names.
        known: String,
    },
    /// A model was asked for with zero classes.
    #[error("architecture `{name}`: num_classes must be at least 1, got 0")]
    ZeroClasses {
        /// The architecture name.
        name: String,
    },
    /// Images smaller than the network takes.
    #[error(
        "{family} takes images of at least {minimum}×{minimum}, got {height}×{width}: its \
         reference PyTorch model refuses smaller ones (its last feature map would be smaller \
         than its pooling window); resize or pad the images"
    )]
    InputTooSmall {
        /// The network family.
        family: &'static str,
        /// Height of the images.
        height: usize,
        /// Width of the images.
        width: usize,
        /// The smallest side taken.
        minimum: usize,
    },
    /// The weight file could not be read or parsed.
    #[error("cannot read weights from {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file's extension does not say which format it is.
    #[error("cannot tell the format of {path}: expected a .pth/.pt (PyTorch), .safetensors or .mpk (Burn record) file")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A tensor in the file has no counterpart in the model.
    #[error("{path}: key `{key}` is not a parameter of `{arch}`{hint}")]
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The key as written in the file.
        key: String,
        /// The architecture being loaded.
        arch: String,
        /// Extra advice (e.g. a likely wrong architecture).
        hint: String,
    },
    /// A parameter of the model has no tensor in the file.
    #[error("{path}: no tensor for `{key}` of `{arch}` ({count} missing in all)")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The PyTorch-style name of the first missing parameter.
        key: String,
        /// The architecture being loaded.
        arch: String,
        /// How many parameters are missing.
        count: usize,
    },
    /// A tensor has another shape than the model's parameter.
    #[error(
        "{path}: key `{key}` has shape {found:?} in the file, but `{arch}` expects {expected:?}"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The key as written in the file.
        key: String,
        /// The architecture being loaded.
        arch: String,
        /// Shape the model expects (PyTorch layout).
        expected: Vec<usize>,
        /// Shape found in the file (PyTorch layout).
        found: Vec<usize>,
    },
    /// A tensor holds a value type that cannot be a float parameter.
    #[error("{path}: key `{key}` has dtype {dtype}, expected a floating-point tensor")]
    BadDtype {
        /// The file.
        path: PathBuf,
        /// The key as written in the file.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// Writing a checkpoint failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}
