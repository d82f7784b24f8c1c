//! One report over many run folders: every classifier stage of each (a teacher, a plain
//! student, a distilled student) with its best and last top-1 and its time; runs of the same
//! network, teacher and method (seeds) grouped with their mean ± sample std and their gain over
//! the plain student of the same architecture; written as Markdown, JSON and one PNG of all
//! test curves ([`write_report`]).
//!
//! A folder without `metrics.jsonl` stands for its subfolders that have one (the `seed-N`
//! folders of a run over several seeds).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sskd_models::atomic::write_atomically;

use crate::plot::{plot_curves, Series};
use crate::run_dir::{latest_epochs, RunDir};
use crate::{Stage, TrainError};

/// The method of a stage trained with cross-entropy alone (a teacher, a plain student).
pub const CROSS_ENTROPY: &str = "ce";

/// One classifier stage of one run folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run folder.
    pub folder: PathBuf,
    /// The stage (`teacher`, `student`, ...).
    pub stage: String,
    /// The network trained.
    pub arch: String,
    /// Its teacher (distilled stages).
    pub teacher: Option<String>,
    /// The distillation method, [`CROSS_ENTROPY`] for none.
    pub method: String,
    /// The run's seed.
    pub seed: Option<u64>,
    /// Epochs logged.
    pub epochs: usize,
    /// Best test top-1 (%) and its epoch.
    pub best_top1: f64,
    /// The epoch of the best top-1.
    pub best_epoch: usize,
    /// Test top-1 (%) of the last epoch logged.
    pub last_top1: f64,
    /// Wall time of the logged epochs, in seconds.
    pub seconds: f64,
    /// Test top-1 per epoch.
    pub curve: Vec<(usize, f64)>,
}

/// Runs of one network, teacher and method (one per seed), summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// The network.
    pub arch: String,
    /// Its teacher.
    pub teacher: Option<String>,
    /// The method.
    pub method: String,
    /// The seeds of its runs.
    pub seeds: Vec<Option<u64>>,
    /// Mean and sample std of the best top-1.
    pub best_top1: (f64, f64),
    /// Mean and sample std of the last top-1.
    pub last_top1: (f64, f64),
    /// Mean best top-1 minus that of the plain student of the same architecture, when one is
    /// in the report.
    pub gain: Option<f64>,
    /// Mean wall time of a run, in seconds.
    pub seconds: f64,
}

/// The report: every stage run, and the groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Each classifier stage of each folder.
    pub runs: Vec<RunSummary>,
    /// The runs grouped by network, teacher and method.
    pub groups: Vec<GroupSummary>,
}

/// The mean and the sample standard deviation (divisor `n − 1`; 0 for one value) of `values`;
/// NaN for none.
pub fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// The run folders `folder` stands for: itself when it has a metrics log, else its
/// subfolders that have one, in name order.
fn run_folders(folder: &Path) -> Result<Vec<PathBuf>, TrainError> {
    if folder.join("metrics.jsonl").is_file() {
        return Ok(vec![folder.to_path_buf()]);
    }
    let entries = std::fs::read_dir(folder).map_err(|e| TrainError::Io {
        path: folder.to_path_buf(),
        reason: format!("cannot read the run folder: {e}"),
    })?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("metrics.jsonl").is_file())
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(TrainError::Io {
            path: folder.to_path_buf(),
            reason: "not a run folder: no metrics.jsonl in it or in its subfolders".to_string(),
        });
    }
    Ok(runs)
}

/// The classifier stages of the run folder `folder` (not an SS head, not a method's
/// pre-training), from the latest log line of each epoch.
pub fn read_run(folder: &Path) -> Result<Vec<RunSummary>, TrainError> {
    let lines = latest_epochs(&RunDir::create(folder)?.log().read()?);
    let mut stages: Vec<&str> = lines.iter().filter_map(|l| l["stage"].as_str()).collect();
    stages.dedup();
    // A stage this version does not name is taken for a classifier's, as a student's.
    let classifier = |stage: &&str| Stage::named(stage).is_none_or(Stage::trains_classifier);
    let summaries = stages.into_iter().filter(classifier).filter_map(|stage| {
        let stage_lines: Vec<&Value> = lines.iter().filter(|l| l["stage"] == stage).collect();
        stage_summary(folder, stage, &stage_lines)
    });
    Ok(summaries.collect())
}

/// The summary of `stage`'s `lines` (none when no line has a test top-1).
fn stage_summary(folder: &Path, stage: &str, lines: &[&Value]) -> Option<RunSummary> {
    let curve: Vec<(usize, f64)> = lines
        .iter()
        .filter_map(|l| Some((l["epoch"].as_u64()? as usize, l["test"]["top1"].as_f64()?)))
        .collect();
    let &(last_epoch, last_top1) = curve.last()?;
    let best = curve
        .iter()
        .fold(curve[0], |best, &p| if p.1 > best.1 { p } else { best });
    let first = lines[0];
    let tag = |name: &str| first[name].as_str().map(str::to_string);
    let method = tag("method");
    let arch_tag = Stage::named(stage).unwrap_or(Stage::Student).arch_tag();
    Some(RunSummary {
        folder: folder.to_path_buf(),
        stage: stage.to_string(),
        arch: tag("arch")
            .or_else(|| tag(arch_tag))
            .unwrap_or_else(|| stage.to_string()),
        teacher: method.as_ref().and_then(|_| tag("teacher_arch")),
        method: method.unwrap_or_else(|| CROSS_ENTROPY.to_string()),
        seed: first["seed"].as_u64(),
        epochs: last_epoch,
        best_top1: best.1,
        best_epoch: best.0,
        last_top1,
        seconds: lines
            .iter()
            .filter_map(|l| l["wall_seconds"].as_f64())
            .sum(),
        curve,
    })
}

/// The report over `folders` (each a run folder or a folder of them).
pub fn report(folders: &[PathBuf]) -> Result<Report, TrainError> {
    let mut runs = Vec::new();
    for folder in folders {
        for run in run_folders(folder)? {
            runs.extend(read_run(&run)?);
        }
    }
    let mut keys: Vec<(String, Option<String>, String)> = Vec::new();
    for run in &runs {
        let key = (run.arch.clone(), run.teacher.clone(), run.method.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut groups: Vec<GroupSummary> = keys
        .into_iter()
        .map(|(arch, teacher, method)| {
            let members: Vec<&RunSummary> = runs
                .iter()
                .filter(|r| r.arch == arch && r.teacher == teacher && r.method == method)
                .collect();
            let figures = |pick: fn(&RunSummary) -> f64| {
                mean_and_std(&members.iter().map(|r| pick(r)).collect::<Vec<_>>())
            };
            GroupSummary {
                seeds: members.iter().map(|r| r.seed).collect(),
                best_top1: figures(|r| r.best_top1),
                last_top1: figures(|r| r.last_top1),
                gain: None,
                seconds: figures(|r| r.seconds).0,
                arch,
                teacher,
                method,
            }
        })
        .collect();
    let plain: Vec<(String, f64)> = groups
        .iter()
        .filter(|g| g.method == CROSS_ENTROPY)
        .map(|g| (g.arch.clone(), g.best_top1.0))
        .collect();
    for group in groups.iter_mut().filter(|g| g.method != CROSS_ENTROPY) {
        group.gain = plain
            .iter()
            .find(|(arch, _)| *arch == group.arch)
            .map(|(_, top1)| group.best_top1.0 - top1);
    }
    Ok(Report { runs, groups })
}

impl Report {
    /// The groups as a Markdown table, then the runs.
    pub fn to_markdown(&self) -> String {
        let pm = |(mean, std): (f64, f64)| format!("{mean:.2} ± {std:.2}");
        let mut text = String::from(
            "| network | teacher | method | runs | best top-1 (%) | last top-1 (%) | gain over plain (pp) | time per run |\n\
             |---|---|---|---:|---:|---:|---:|---:|\n",
        );
        for g in &self.groups {
            text += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                g.arch,
                g.teacher.as_deref().unwrap_or("—"),
                g.method,
                g.seeds.len(),
                pm(g.best_top1),
                pm(g.last_top1),
                g.gain.map_or("—".to_string(), |gain| format!("{gain:+.2}")),
                crate::progress::clock(std::time::Duration::from_secs_f64(g.seconds.max(0.0))),
            );
        }
        text += "\n| run | stage | network | method | seed | epochs | best top-1 (%) (epoch) | last top-1 (%) |\n\
                 |---|---|---|---|---:|---:|---:|---:|\n";
        for r in &self.runs {
            text += &format!(
                "| {} | {} | {} | {} | {} | {} | {:.2} ({}) | {:.2} |\n",
                r.folder.display(),
                r.stage,
                r.arch,
                r.method,
                r.seed.map_or("—".to_string(), |s| s.to_string()),
                r.epochs,
                r.best_top1,
                r.best_epoch,
                r.last_top1,
            );
        }
        text
    }

    /// The test curves of every run on one axis, written to `path`.
    pub fn plot(&self, path: &Path) -> Result<(), TrainError> {
        let series: Vec<Series> = self
            .runs
            .iter()
            .map(|r| {
                let name = format!("{} {} ({})", r.folder.display(), r.stage, r.method);
                let points = r.curve.iter().map(|&(e, top1)| (e as f64, top1)).collect();
                (name, points)
            })
            .collect();
        plot_curves(path, "test top-1 per epoch", "top-1 (%)", &series)
    }
}

/// The report over `folders` written to `out`: `report.md`, `report.json` and `report.png`,
/// each atomically.
pub fn write_report(folders: &[PathBuf], out: &Path) -> Result<Report, TrainError> {
    let report = report(folders)?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::Io {
        path: out.to_path_buf(),
        reason: format!("cannot create the report folder: {e}"),
    })?;
    write_atomically(&out.join("report.md"), report.to_markdown().as_bytes())?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| TrainError::Io {
        path: out.join("report.json"),
        reason: e.to_string(),
    })?;
    write_atomically(&out.join("report.json"), json.as_bytes())?;
    report.plot(&out.join("report.png"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (mean, std) = mean_and_std(&[72.2, 74.6, 79.6]);
        assert!((mean - 75.466_666_666_666_67).abs() < 1e-9);
        // numpy.std([72.2, 74.6, 79.6], ddof=1)
        assert!((std - 3.775_358_702_604_734_6).abs() < 1e-9, "{std}");
        assert_eq!(mean_and_std(&[5.0]), (5.0, 0.0));
        assert!(mean_and_std(&[]).0.is_nan());
    }

    fn log_run(folder: &Path, stage: &str, tags: Value, top1: &[f64]) {
        let run = RunDir::create(folder).unwrap();
        for (index, value) in top1.iter().enumerate() {
            let mut line = tags.clone();
            line["stage"] = stage.into();
            line["epoch"] = (index + 1).into();
            line["test"] = serde_json::json!({"top1": value, "top5": 90.0});
            line["wall_seconds"] = 10.0.into();
            run.log().append(&line).unwrap();
        }
    }

    #[test]
    fn groups_seeds_and_measures_the_gain_over_the_plain_student() {
        let dir = std::env::temp_dir().join(format!("sskd-report-{}", std::process::id()));
        let tags = |method: Option<&str>, seed: u64| {
            let mut tags = serde_json::json!({"teacher_arch": "resnet32x4",
                "student_arch": "resnet8x4", "seed": seed});
            if let Some(method) = method {
                tags["method"] = method.into();
            }
            tags
        };
        log_run(
            &dir.join("kd/seed-0"),
            "student",
            tags(Some("kd"), 0),
            &[50.0, 60.0, 58.0],
        );
        log_run(
            &dir.join("kd/seed-1"),
            "student",
            tags(Some("kd"), 1),
            &[52.0, 64.0, 63.0],
        );
        let mut plain = tags(None, 0);
        plain["arch"] = "resnet8x4".into();
        log_run(&dir.join("plain"), "student", plain, &[40.0, 55.0]);
        let error = report(&[dir.join("missing")]).unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");

        let report = write_report(&[dir.join("kd"), dir.join("plain")], &dir.join("out")).unwrap();
        assert_eq!(report.runs.len(), 3);
        let kd = &report.groups[0];
        assert_eq!((kd.method.as_str(), kd.seeds.len()), ("kd", 2));
        assert_eq!(kd.best_top1.0, 62.0);
        assert!((kd.best_top1.1 - 8f64.sqrt()).abs() < 1e-12);
        assert_eq!(kd.last_top1.0, 60.5);
        assert_eq!(kd.gain, Some(7.0));
        assert_eq!(kd.seconds, 30.0);
        assert_eq!(report.groups[1].method, CROSS_ENTROPY);
        assert_eq!(report.runs[0].best_epoch, 2);
        let markdown = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
        assert!(
            markdown.contains(
                "| resnet8x4 | resnet32x4 | kd | 2 | 62.00 ± 2.83 | 60.50 ± 3.54 | +7.00 |"
            ),
            "{markdown}"
        );
        assert!(image::open(dir.join("out/report.png")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
