//! A run folder and its JSONL metrics log.
//!
//! A run folder holds, per stage `S`:
//! - `metrics.jsonl`: one line per finished epoch (`"stage": S`), synced before the next epoch
//!   starts, plus `{"event": "resume"}` lines; when a resumed run redoes an epoch, the later
//!   line for that epoch is the one that counts ([`latest_epochs`]);
//! - the checkpoint of the stage ([`crate::checkpoint`]);
//! - `S-best.mpk` (the module at the best evaluation so far) and `S-last.mpk` (after the last
//!   epoch), written by [`crate::fit`].

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::TrainError;

/// A run folder (created if missing).
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens or creates the folder `root`.
    pub fn create(root: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(root).map_err(|e| TrainError::Io {
            path: root.to_path_buf(),
            reason: format!("cannot create the run folder: {e}"),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the run.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The per-epoch metrics log, `metrics.jsonl`.
    pub fn log(&self) -> JsonlLog {
        JsonlLog::new(&self.path("metrics.jsonl"))
    }
}

/// Appends one JSON object per line to a file and syncs it, so a finished epoch's line
/// survives a crash.
#[derive(Debug)]
pub struct JsonlLog {
    path: PathBuf,
}

impl JsonlLog {
    /// A log at `path` (created on the first line).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Appends `record` as one line.
    pub fn append(&self, record: &serde_json::Value) -> Result<(), TrainError> {
        let io = |e: std::io::Error| TrainError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(file, "{record}").map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Every record written so far.
    pub fn read(&self) -> Result<Vec<serde_json::Value>, TrainError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TrainError::Io {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|e| TrainError::Io {
                    path: self.path.clone(),
                    reason: format!("line {}: {e}", number + 1),
                })
            })
            .collect()
    }
}

/// The latest log line of each (stage, epoch) in `lines` (a resumed run may log an epoch
/// twice; the later line wins), in order of stage first appearance and epoch.
pub fn latest_epochs(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut latest: Vec<serde_json::Value> = Vec::new();
    for line in lines
        .iter()
        .filter(|l| l.get("epoch").is_some() && l.get("stage").is_some())
    {
        let key = (&line["stage"], &line["epoch"]);
        match latest
            .iter_mut()
            .find(|l| (&l["stage"], &l["epoch"]) == key)
        {
            Some(slot) => *slot = line.clone(),
            None => latest.push(line.clone()),
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_round_trip() {
        let dir = std::env::temp_dir().join(format!("sskd-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = JsonlLog::new(&dir.join("metrics.jsonl"));
        log.append(&serde_json::json!({"epoch": 0, "loss": 1.5}))
            .unwrap();
        log.append(&serde_json::json!({"epoch": 1, "loss": 1.2}))
            .unwrap();
        assert_eq!(log.read().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
