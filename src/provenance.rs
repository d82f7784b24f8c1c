//! A run folder that explains itself. Each stage writes, atomically and before it trains:
//! - `config.json`: the resolved [`ExperimentConfig`] (every default filled in), which
//!   `--config DIR/config.json` reruns exactly;
//! - `run.json`: one [`RunRecord`] per start of a stage in the folder (library version, git
//!   commit, backend, devices, precision, threads, seeds, command line, start time), the
//!   earlier ones kept.
//!
//! A resumed stage compares the folder's `config.json` with its own config first and refuses a
//! difference that changes its result ([`config_changes`]), naming each field, unless told to
//! go on (`StageOptions::allow_config_change`, `--allow-config-change`).

use sskd_train::Stage;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sskd_models::atomic::write_atomically;
use sskd_train::run_dir::RunDir;

use crate::experiment::{stage_field, ExperimentConfig};

/// How one stage was started in a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The stage (`teacher`, `head`, `student`).
    pub stage: String,
    /// When it started, RFC 3339 in UTC.
    pub started: String,
    /// Whether it continued from a checkpoint.
    pub resume: bool,
    /// The process's command line.
    pub command_line: Vec<String>,
    /// The directory it ran in.
    pub working_directory: PathBuf,
    /// `sskd X.Y.Z`.
    pub library: String,
    /// The commit of the git repository of the working directory (the user's code), when
    /// there is one; `dirty` when tracked files differ from it.
    pub git_commit: Option<String>,
    /// Whether tracked files of that repository had changes.
    pub git_dirty: Option<bool>,
    /// The backend type.
    pub backend: String,
    /// The devices, the first the main one.
    pub devices: Vec<String>,
    /// The backend's float element type.
    pub precision: String,
    /// Threads of the CPU work pool (augmentation, the CPU backend).
    pub threads: usize,
    /// Whether the thread that ran the stage was one of that pool's workers (the main thread
    /// made worker 0 by `sskd::kernels::adopt_main_thread`, as the examples' CPU runs do); false
    /// in records written before the field existed.
    #[serde(default)]
    pub caller_in_pool: bool,
    /// Whether the allocator kept freed memory for the next allocations
    /// (`sskd::kernels::keep_freed_memory`, as the examples' CPU runs do); false in records
    /// written before the field existed.
    #[serde(default)]
    pub freed_memory_kept: bool,
    /// The config's seed.
    pub seed: u64,
    /// The seeds of a run over several (`--seeds`).
    pub seeds: Vec<u64>,
    /// Operating system and CPU architecture.
    pub platform: String,
}

impl RunRecord {
    /// The record of `stage` starting now on `devices` of backend `B`.
    pub fn now<B: Backend>(
        stage: Stage,
        config: &ExperimentConfig,
        (resume, seeds): (bool, &[u64]),
        devices: &[B::Device],
    ) -> Self {
        let (git_commit, git_dirty) = git_state();
        Self {
            stage: stage.name().to_string(),
            started: now_rfc3339(),
            resume,
            command_line: std::env::args().collect(),
            working_directory: std::env::current_dir().unwrap_or_default(),
            library: format!("sskd {}", env!("CARGO_PKG_VERSION")),
            git_commit,
            git_dirty,
            backend: std::any::type_name::<B>().to_string(),
            devices: devices.iter().map(|d| format!("{d:?}")).collect(),
            precision: std::any::type_name::<B::FloatElem>().to_string(),
            threads: rayon::current_num_threads(),
            caller_in_pool: rayon::current_thread_index().is_some(),
            freed_memory_kept: freed_memory_kept(),
            seed: config.seed,
            seeds: seeds.to_vec(),
            platform: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// Whether the allocator keeps freed memory for the next allocations
/// (`sskd::kernels::keep_freed_memory`, which `sskd::cli::backend::prepare_cpu` calls; never
/// without the CPU backend's kernels).
pub fn freed_memory_kept() -> bool {
    #[cfg(feature = "flex")]
    return crate::kernels::freed_memory_kept();
    #[cfg(not(feature = "flex"))]
    return false;
}

fn now_rfc3339() -> String {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// The commit of the working directory's git repository and whether tracked files changed;
/// `(None, None)` outside a repository or without git.
fn git_state() -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return (None, None);
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    (Some(commit), dirty)
}

/// The run folder's resolved config, `config.json`.
pub fn config_path(run: &RunDir) -> PathBuf {
    run.path("config.json")
}

/// The config stored in `path` (a `config.json`), exactly as written.
fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the run's config {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: the run's config is not valid JSON", path.display()))
}

/// `value` as `(dotted path, leaf)` pairs: `{"a": {"b": 1}}` → `[("a.b", 1)]`.
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, inner, out);
            }
        }
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

/// Whether a difference in the config field `path` changes what `stage` computes: another
/// stage's settings do not, nor do checkpoint frequency and the test batch; the method only
/// matters to the student.
fn matters(stage: Stage, path: &str) -> bool {
    let top = path.split('.').next().unwrap_or(path);
    let stage_section = Stage::ALL
        .into_iter()
        .find(|s| stage_field(*s) == Some(top));
    match (top, stage_section) {
        (
            "checkpoint_every"
            | "checkpoint_every_steps"
            | "checkpoint_every_minutes"
            | "test_batch_size",
            _,
        ) => false,
        (_, Some(section)) => section == stage,
        ("method" | "student", _) => stage == Stage::Student,
        _ => true,
    }
}

/// The fields in which `stored` and `now` differ, as far as they change `stage`'s result,
/// each as `` `field`: STORED → NOW ``. A method replaced by another reads
/// `` `method`: sskd → kd ``.
pub fn config_changes(stage: Stage, stored: &Value, now: &Value) -> Vec<String> {
    let method_name = |config: &Value| {
        config["method"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
    };
    let mut changes = Vec::new();
    let (stored_method, new_method) = (method_name(stored), method_name(now));
    let method_replaced = stored_method != new_method;
    if method_replaced && matters(stage, "method") {
        let name = |m: Option<String>| m.unwrap_or_else(|| "none".to_string());
        changes.push(format!(
            "`method`: {} → {}",
            name(stored_method),
            name(new_method)
        ));
    }
    let (mut old, mut new) = (Vec::new(), Vec::new());
    leaves("", stored, &mut old);
    leaves("", now, &mut new);
    let mut paths: Vec<&String> = old.iter().chain(&new).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let absent = Value::String("(absent)".to_string());
    for path in paths {
        if !matters(stage, path) || (method_replaced && path.starts_with("method.")) {
            continue;
        }
        let find =
            |set: &[(String, Value)]| set.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone());
        let (before, after) = (find(&old), find(&new));
        if before != after {
            let show = |v: Option<Value>| v.unwrap_or_else(|| absent.clone()).to_string();
            changes.push(format!("`{path}`: {} → {}", show(before), show(after)));
        }
    }
    changes
}

/// What a stage's start writes and checks in its run folder.
pub struct RunStart<'a> {
    /// The stage.
    pub stage: Stage,
    /// The resolved config it runs with.
    pub config: &'a ExperimentConfig,
    /// Whether it resumes, and whether it may resume under a config that differs.
    pub resume: (bool, bool),
    /// The seeds of a run over several.
    pub seeds: &'a [u64],
}

/// Opens the run folder `out` for `start`: when resuming, checks the folder's `config.json`
/// against the config (an error naming every field that differs in a way that changes the
/// stage's result); then writes `config.json` and adds the start to `run.json`, atomically.
pub fn open_run<B: Backend>(
    out: &Path,
    start: &RunStart<'_>,
    devices: &[B::Device],
) -> Result<RunDir> {
    let run = RunDir::create(out)?;
    let path = config_path(&run);
    let now = serde_json::to_value(start.config)?;
    let (resume, allow_change) = start.resume;
    if resume && path.is_file() {
        let changes = config_changes(start.stage, &read_config(&path)?, &now);
        if !changes.is_empty() && !allow_change {
            bail!(
                "{}: cannot resume stage {} under another config; it differs from the run's in \
                 what changes the result:\n  {}\nresume with the run's own config (--config {}), \
                 or pass --allow-config-change (StageOptions::allow_config_change) to go on anyway",
                path.display(),
                start.stage,
                changes.join("\n  "),
                path.display()
            );
        }
        if !changes.is_empty() {
            tracing::warn!(
                "{}: resuming stage {} under a changed config: {}",
                path.display(),
                start.stage,
                changes.join("; ")
            );
        }
    } else if resume {
        tracing::warn!(
            "{}: missing, so the resumed config cannot be compared with the run's",
            path.display()
        );
    }
    write_atomically(&path, serde_json::to_string_pretty(&now)?.as_bytes())?;
    let record = RunRecord::now::<B>(start.stage, start.config, (resume, start.seeds), devices);
    append_record(&run, record)?;
    Ok(run)
}

/// The starts recorded in the run folder's `run.json`, oldest first.
pub fn read_records(run: &RunDir) -> Result<Vec<RunRecord>> {
    let path = run.path("run.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    serde_json::from_value(json["starts"].clone())
        .with_context(|| format!("{}: `starts` is not a list of run records", path.display()))
}

/// Adds `record` to the run folder's `run.json` (`{"starts": [...]}`), atomically.
fn append_record(run: &RunDir, record: RunRecord) -> Result<()> {
    let mut records = read_records(run)?;
    records.push(record);
    let json = serde_json::json!({ "starts": records });
    write_atomically(
        &run.path("run.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::apply_assignment;

    fn config() -> ExperimentConfig {
        ExperimentConfig::new("wrn_40_2".into(), "wrn_16_2".into())
    }

    fn changes(stage: &str, assignments: &[&str]) -> Vec<String> {
        let stage = Stage::named(stage).unwrap();
        let mut changed = config();
        for assignment in assignments {
            changed = apply_assignment(changed, assignment).unwrap();
        }
        let value = |c: &ExperimentConfig| serde_json::to_value(c).unwrap();
        config_changes(stage, &value(&config()), &value(&changed))
    }

    #[test]
    fn differences_that_change_the_stage_are_named() {
        assert_eq!(
            changes("student", &["student_stage.lr=0.1"]),
            ["`student_stage.lr`: 0.05 → 0.1"]
        );
        assert!(changes("teacher", &["student_stage.lr=0.1"]).is_empty());
        assert!(changes("student", &["checkpoint_every=1", "test_batch_size=7"]).is_empty());
        assert_eq!(changes("student", &["method=kd"]), ["`method`: sskd → kd"]);
        assert!(changes("head", &["method=kd", "student=resnet8"]).is_empty());
        assert_eq!(
            changes("student", &["method.sskd.tf_weight=3", "seed=4"]),
            ["`method.sskd.tf_weight`: 2.7 → 3.0", "`seed`: 0 → 4"]
        );
        assert_eq!(changes("teacher", &["teacher=resnet56"]).len(), 1);
    }

    #[test]
    fn a_record_says_how_the_stage_ran() {
        type B = burn::backend::Flex;
        let record = RunRecord::now::<B>(
            Stage::Teacher,
            &config(),
            (false, &[1, 2]),
            &[Default::default()],
        );
        assert!(record.library.starts_with("sskd "), "{record:?}");
        assert!(
            record.backend.contains("Flex") && record.precision == "f32",
            "{record:?}"
        );
        assert_eq!(
            (record.seeds.as_slice(), record.devices.len()),
            (&[1, 2][..], 1)
        );
        assert!(
            record.started.ends_with('Z') && record.threads >= 1,
            "{record:?}"
        );
    }
}
