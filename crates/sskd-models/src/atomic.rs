//! Files written whole or not at all: a temporary file in the same folder, synced, then renamed
//! over the final name, so a crash never leaves a half-written file under it; and the cleanup of
//! the temporary files a killed process left. Checkpoints and their descriptions, plots, seed
//! summaries and exports all write through it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ModelError;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let temporary = temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        write_error(path, e)
    })
}

/// Removes the temporary files [`write_atomically`] leaves in `dir` when a process is killed
/// mid-write (`.<name>.<pid>.partial`), except this process's own; returns the removed paths.
pub fn remove_partial_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let own_suffix = format!(".{}.partial", std::process::id());
    let entries = std::fs::read_dir(dir).map_err(|e| write_error(dir, e))?;
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| write_error(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let leftover =
            name.starts_with('.') && name.ends_with(".partial") && !name.ends_with(&own_suffix);
        if leftover && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| write_error(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// A write failure of `path`.
pub(crate) fn write_error(path: &Path, reason: impl ToString) -> ModelError {
    ModelError::Write {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_partial_files_of_other_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("sskd-partial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let leftover = dir.join(".model.mpk.1.partial");
        let own = temporary_path(&dir.join("model.mpk"));
        let kept = dir.join("model.mpk");
        for path in [&leftover, &own, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(remove_partial_files(&dir).unwrap(), vec![leftover.clone()]);
        assert!(!leftover.exists() && own.exists() && kept.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
