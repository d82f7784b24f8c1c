//! Errors of the dataset readers.

use std::path::PathBuf;

/// What can be wrong with a dataset on disk. Every variant names the file (and the record or
/// line) and says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder the layout requires is absent or unreadable.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file's size is not what the format says.
    #[error("{path}: size {found} bytes, expected {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// What the format requires (e.g. "a multiple of 3074").
        expected: String,
        /// The actual size.
        found: u64,
    },
    /// A record or line holds an invalid value.
    #[error("{path}: {location}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Record index, line number or image path.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The file is not in the expected format at all.
    #[error("{path}: not a {format} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format expected.
        format: &'static str,
        /// What gave it away.
        reason: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &std::path::Path, error: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }
    }

    pub(crate) fn record(
        path: &std::path::Path,
        location: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self::Record {
            path: path.to_path_buf(),
            location: location.to_string(),
            message: message.into(),
        }
    }
}
