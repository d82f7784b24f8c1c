//! Accuracy counting and the per-epoch JSONL log.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::TrainError;

/// Top-1 and top-5 correct counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accuracy {
    /// Samples whose arg-max is the label.
    pub top1: usize,
    /// Samples whose label is among the five highest scores.
    pub top5: usize,
    /// Samples seen.
    pub total: usize,
}

impl Accuracy {
    /// Adds a batch: `logits` `[n, classes]`, `labels` `[n]`.
    pub fn add<B: Backend>(&mut self, logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) {
        let [rows, classes] = logits.dims();
        let target = logits.clone().gather(1, labels.reshape([rows, 1]));
        let above: Vec<i64> = logits
            .greater(target)
            .int()
            .sum_dim(1)
            .reshape([rows])
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap_or_default();
        self.top1 += above.iter().filter(|&&r| r == 0).count();
        self.top5 += above.iter().filter(|&&r| r < 5.min(classes as i64)).count();
        self.total += rows;
    }

    /// Top-1 accuracy in percent.
    pub fn top1_percent(&self) -> f64 {
        100.0 * self.top1 as f64 / self.total.max(1) as f64
    }

    /// Top-5 accuracy in percent.
    pub fn top5_percent(&self) -> f64 {
        100.0 * self.top5 as f64 / self.total.max(1) as f64
    }

    /// The accuracies as an [`Evaluation`](crate::run::Evaluation) (no SS-head accuracy).
    pub fn evaluation(&self) -> crate::run::Evaluation {
        crate::run::Evaluation {
            top1: self.top1_percent(),
            top5: self.top5_percent(),
            ss_top1: None,
        }
    }
}

impl std::ops::AddAssign for Accuracy {
    fn add_assign(&mut self, other: Self) {
        self.top1 += other.top1;
        self.top5 += other.top5;
        self.total += other.total;
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn counts_top1_and_top5() {
        let device = Default::default();
        let logits = Tensor::<Flex, 2>::from_floats(
            [
                [0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],
                [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
            ],
            &device,
        );
        let labels = Tensor::<Flex, 1, Int>::from_ints([1, 6], &device);
        let mut accuracy = Accuracy::default();
        accuracy.add(logits, labels);
        assert_eq!((accuracy.top1, accuracy.top5, accuracy.total), (1, 1, 2));
    }

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
