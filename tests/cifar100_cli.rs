//! The `cifar100` example end to end on the ten-image CIFAR-100 fixture: teacher, head and
//! student (two seeds) stages, evaluation, resume, the reference codebases' teacher
//! checkpoints, plots and metrics; bad input ends with a clear error and a non-zero exit.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{example_binary, failed, repo, succeeded};

use sskd::train::run_dir::RunDir;

/// Tiny sizes: resnet8 → resnet8, batches of 4, a few epochs.
const TINY: &[&str] = &[
    "--student-arch",
    "resnet8",
    "--set",
    "batch_size=4",
    "--set",
    "test_batch_size=5",
    "--set",
    "teacher_stage.epochs=2",
    "--set",
    "head_stage.epochs=1",
    "--set",
    "student_stage.epochs=2",
    "--set",
    "checkpoint_every=1",
];

fn cifar100(stage: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(example_binary("cifar100"))
        .arg(stage)
        .args(["--teacher-arch", "resnet8"])
        .args(TINY)
        .arg("--data")
        .arg(repo("tests/fixtures/data/cifar100_binary"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal")
        .output()
        .expect("run the cifar100 example")
}

#[test]
fn three_stages_evaluation_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let teacher = succeeded(&cifar100("teacher", out, &[]));
    assert!(
        teacher.contains("teacher: best epoch") && teacher.contains("teacher: last epoch"),
        "{teacher}"
    );
    let best = out.join("teacher-best.mpk");
    let head = succeeded(&cifar100(
        "head",
        out,
        &["--teacher", best.to_str().unwrap()],
    ));
    assert!(head.contains("SS head"), "{head}");
    let with_head = out.join("teacher-with-head.mpk");
    let student = succeeded(&cifar100(
        "student",
        out,
        &["--teacher", with_head.to_str().unwrap(), "--seeds", "0,1"],
    ));
    assert!(student.contains("2 seeds: best-epoch top-1"), "{student}");
    let seeds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("seeds.json")).unwrap()).unwrap();
    assert_eq!(seeds["seeds"], serde_json::json!([0, 1]));
    for seed in ["seed-0", "seed-1"] {
        let run = out.join(seed);
        assert!(
            run.join("student.png").is_file() && run.join("student-last-backbone.mpk").is_file()
        );
        let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
        for term in ["ce", "kd", "tf", "ss", "total"] {
            assert!(last["train"]["terms"][term].is_number(), "{term}: {last}");
        }
        assert!(
            last["test"]["ss_top1"].is_number() && last["best"]["epoch"].is_number(),
            "{last}"
        );
    }
    assert!(out.join("teacher.png").is_file() && out.join("head.png").is_file());

    // Resuming a finished stage trains nothing more and reports the same result.
    let again = succeeded(&cifar100(
        "student",
        &out.join("seed-0"),
        &["--teacher", with_head.to_str().unwrap(), "--resume"],
    ));
    let last_line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("student: last"))
            .map(str::to_string)
    };
    assert_eq!(last_line(&again), last_line(&student), "{again}\n{student}");

    let eval = Command::new(example_binary("cifar100"))
        .args(["eval", "--arch", "resnet8", "--weights"])
        .arg(out.join("seed-1/student-best-backbone.mpk"))
        .arg("--data")
        .arg(repo("tests/fixtures/data/cifar100_binary"))
        .output()
        .unwrap();
    assert!(succeeded(&eval).contains("on 10 test images: top-1"));
}

/// The library's warnings reach the user on stderr (`-q` silences them): `--resume` in a folder
/// without a checkpoint says that it starts fresh.
#[test]
fn resume_without_a_checkpoint_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = |folder: &str, extra: &[&str]| {
        let output = cifar100("teacher", &dir.path().join(folder), extra);
        succeeded(&output);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run("told", &["--resume"]);
    assert!(
        stderr.contains("no checkpoint of stage teacher") && stderr.contains("starting fresh"),
        "{stderr}"
    );
    let quiet = run("quiet", &["--resume", "-q"]);
    assert!(!quiet.contains("starting fresh"), "{quiet}");
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The (epoch, test top-1, train terms) of each line of a run's metrics log.
fn curve(run: &Path) -> Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> {
    let lines = RunDir::create(run).unwrap().log().read().unwrap();
    let epochs = lines.iter().filter(|l| l.get("epoch").is_some());
    epochs
        .map(|l| {
            (
                l["epoch"].clone(),
                l["test"]["top1"].clone(),
                l["train"]["terms"].clone(),
            )
        })
        .collect()
}

/// A run shows its progress in a batch log (a line per step with `--progress-every 0`, one per
/// epoch; nothing with `-q`), counts epochs from 1 everywhere, explains itself in config.json
/// and run.json, reruns exactly from its config.json, refuses to resume into another config,
/// and the report puts two runs in one table.
#[test]
fn a_run_shows_progress_explains_itself_and_is_not_resumed_into_another() {
    let dir = tempfile::tempdir().unwrap();
    let (first, rerun) = (dir.path().join("first"), dir.path().join("rerun"));
    let output = cifar100("teacher", &first, &["--progress-every", "0"]);
    let stdout = succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Ten images in batches of four: three steps an epoch, each shown with its pace and loss.
    for line in [
        "teacher epoch 1/2: 1/3 steps (33.3 %), ",
        "teacher epoch 2/2: 3/3 steps (100.0 %), ",
        "teacher epoch 2/2: lr ",
    ] {
        assert!(stderr.contains(line), "{line}\n{stderr}");
    }
    assert!(
        stderr.contains("img/s") && stderr.contains("; loss ce "),
        "{stderr}"
    );
    assert!(stdout.contains("teacher: last epoch 2 "), "{stdout}");
    let epochs: Vec<_> = curve(&first)
        .into_iter()
        .map(|(epoch, _, _)| epoch)
        .collect();
    assert_eq!(epochs, [1, 2]);
    assert!(first.join("teacher-e2.model.mpk").is_file());

    // config.json is the whole resolved config: the config command reads it back unchanged.
    let config = json(&first.join("config.json"));
    assert_eq!(config["teacher_stage"]["epochs"], 2);
    assert_eq!(
        config["head_stage"]["milestones"],
        serde_json::json!([30, 45])
    );
    let echoed = Command::new(example_binary("cifar100"))
        .args(["config", "--config"])
        .arg(first.join("config.json"))
        .output()
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_str(&succeeded(&echoed)).unwrap();
    assert_eq!(echoed, config);
    let starts = json(&first.join("run.json"))["starts"].clone();
    assert_eq!(starts.as_array().unwrap().len(), 1);
    assert_eq!(starts[0]["stage"], "teacher");
    assert!(
        starts[0]["backend"].as_str().unwrap().contains("Flex"),
        "{starts}"
    );
    assert!(
        starts[0]["command_line"]
            .to_string()
            .contains("--progress-every"),
        "{starts}"
    );
    // The CPU run made its main thread one of rayon's workers (`adopt_main_thread`) and kept
    // freed memory (`keep_freed_memory`, glibc).
    assert_eq!(starts[0]["caller_in_pool"], true, "{starts}");
    let on_glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
    assert_eq!(starts[0]["freed_memory_kept"], on_glibc, "{starts}");
    for field in [
        "started",
        "library",
        "devices",
        "precision",
        "threads",
        "seed",
    ] {
        assert!(!starts[0][field].is_null(), "{field}: {starts}");
    }

    // The same command from config.json alone trains the same run, quietly.
    let quiet = Command::new(example_binary("cifar100"))
        .arg("teacher")
        .arg("--config")
        .arg(first.join("config.json"))
        .arg("--data")
        .arg(repo("tests/fixtures/data/cifar100_binary"))
        .arg("--out")
        .arg(&rerun)
        .args(["-q", "--progress-every", "0"])
        .output()
        .unwrap();
    succeeded(&quiet);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("steps"),
        "{quiet:?}"
    );
    assert_eq!(curve(&rerun), curve(&first));

    // Resuming under another learning rate is refused, naming the field and the way out.
    let changed = ["--resume", "--set", "teacher_stage.lr=0.1"];
    let refused = failed(&cifar100("teacher", &first, &changed));
    for needle in [
        "config.json",
        "`teacher_stage.lr`: 0.05 → 0.1",
        "--allow-config-change",
    ] {
        assert!(refused.contains(needle), "{needle}\n{refused}");
    }
    let allowed = [&changed[..], &["--allow-config-change", "-q"]].concat();
    succeeded(&cifar100("teacher", &first, &allowed));
    // config.json is now the config the run went on with; a field that does not change the
    // teacher (the student's stage) resumes as it is.
    let unrelated = ["--set", "student_stage.lr=0.1", "-q"];
    succeeded(&cifar100(
        "teacher",
        &first,
        &[&changed[..], &unrelated].concat(),
    ));

    // One report over both runs: one group of two runs of the plain resnet8.
    let report_dir = dir.path().join("report");
    let report = Command::new(example_binary("cifar100"))
        .arg("report")
        .args([&first, &rerun])
        .arg("--out")
        .arg(&report_dir)
        .output()
        .unwrap();
    let table = succeeded(&report);
    let report = json(&report_dir.join("report.json"));
    let group = &report["groups"][0];
    assert_eq!(
        (group["arch"].as_str(), group["method"].as_str()),
        (Some("resnet8"), Some("ce"))
    );
    assert_eq!(group["seeds"].as_array().unwrap().len(), 2);
    let tops: Vec<f64> = curve(&first)
        .iter()
        .map(|(_, top1, _)| top1.as_f64().unwrap())
        .collect();
    let best = tops.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(group["best_top1"][0].as_f64(), Some(best));
    assert_eq!(group["best_top1"][1].as_f64(), Some(0.0));
    assert!(table.contains("| resnet8 | — | ce | 2 |"), "{table}");
    assert!(report_dir.join("report.png").is_file() && report_dir.join("report.md").is_file());
}

/// Every method of the registry trains a student through the real trainer from stage 1's
/// teacher record (no SS head), one epoch each, and logs its own term; the one method that
/// distils the head (SSKD) says which stage writes one.
#[test]
fn every_method_trains_from_the_stage_one_teacher() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(&cifar100(
        "teacher",
        dir.path(),
        &["--set", "teacher_stage.epochs=1"],
    ));
    let teacher = dir.path().join("teacher-best.mpk");
    let teacher = teacher.to_str().unwrap();
    let one_epoch = ["--set", "student_stage.epochs=1", "--teacher", teacher];
    let (mut need_the_head, mut pretrained) = (0, 0);
    for &method in sskd::losses::method_names() {
        let out = dir.path().join(method);
        let output = cifar100(
            "student",
            &out,
            &[&["--method", method][..], &one_epoch].concat(),
        );
        if !output.status.success() {
            let error = failed(&output);
            assert!(
                error.contains("self-supervision head") && error.contains("teacher-with-head.mpk"),
                "{method}: {error}"
            );
            need_the_head += 1;
            continue;
        }
        let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
        let terms = &last["train"]["terms"];
        assert!(
            terms["ce"].is_number() && terms["total"].is_number(),
            "{method}: {last}"
        );
        // AB, FT and FSP run their pre-training stage first (30 epochs by default).
        let init_lines = lines
            .lines()
            .filter(|l| l.contains(r#""stage":"student-init""#));
        match init_lines.count() {
            0 => {}
            30 => pretrained += 1,
            other => panic!("{method}: {other} pre-training epochs"),
        }
    }
    assert_eq!((need_the_head, pretrained), (1, 3));
}

#[test]
fn reference_teacher_checkpoints_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // RepDistiller's {"model": ...} resnet8 for the head stage.
    let repdistiller = repo("tests/fixtures/models/resnet8_repdistiller.pth");
    succeeded(&cifar100(
        "head",
        dir.path(),
        &["--teacher", repdistiller.to_str().unwrap()],
    ));
    // SSKD's teacher.pth (DataParallel, with proj_head) for the student stage.
    let sskd = repo("tests/fixtures/models/resnet8_sskd_teacher.pth");
    let output = cifar100(
        "student",
        &dir.path().join("kd"),
        &["--method", "kd", "--teacher", sskd.to_str().unwrap()],
    );
    succeeded(&output);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let sskd_teacher = repo("tests/fixtures/models/wrn_16_1_sskd_teacher.pth");
    // A checkpoint of another architecture.
    let message = failed(&cifar100(
        "student",
        out,
        &["--teacher", sskd_teacher.to_str().unwrap()],
    ));
    assert!(message.contains("wrn_16_1_sskd_teacher.pth"), "{message}");
    let message = failed(&cifar100(
        "student",
        out,
        &["--method", "kdd", "--teacher", "x.pth"],
    ));
    assert!(message.contains("unknown method `kdd`"), "{message}");
    let message = failed(&cifar100("teacher", out, &["--device", "tpu"]));
    assert!(message.contains("unknown device `tpu`"), "{message}");
    let message = failed(&cifar100(
        "teacher",
        out,
        &["--set", "student_stage.epoch=3"],
    ));
    assert!(message.contains("unknown field `epoch`"), "{message}");
    let message = failed(&cifar100("teacher", out, &["--set", "num_classes=50"]));
    assert!(message.contains("num_classes = 50"), "{message}");
    let output = Command::new(example_binary("cifar100"))
        .args(["teacher", "--data"])
        .arg(out.join("missing"))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(failed(&output).contains("missing"));
    let message = failed(&cifar100("head", out, &[]));
    assert!(message.contains("--teacher is required"), "{message}");
    // A record of another depth: an error naming the file, and no panic's message before it.
    let deeper = out.join("resnet20.mpk");
    let model =
        sskd::models::create_model::<burn::backend::Flex>("resnet20", 100, &Default::default());
    sskd::models::checkpoint::save_record(model.unwrap(), &deeper).unwrap();
    let output = Command::new(example_binary("cifar100"))
        .args(["eval", "--arch", "resnet8", "--data", "unused", "--weights"])
        .arg(&deeper)
        .output()
        .unwrap();
    let message = failed(&output);
    assert!(
        message.contains("resnet20.mpk") && message.contains("another architecture"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn every_published_pair_has_a_valid_config() {
    let dir = repo("configs/cifar100");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let output = Command::new(example_binary("cifar100"))
            .args(["config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = succeeded(&output);
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            stem,
            format!(
                "{}-{}",
                config["teacher"].as_str().unwrap(),
                config["student"].as_str().unwrap()
            )
        );
        count += 1;
    }
    assert_eq!(
        count, 11,
        "the 11 teacher → student pairs of the SSKD README"
    );
}

#[test]
fn a_method_in_a_config_is_checked_completed_and_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let echo = |method: serde_json::Value| {
        let path = dir.path().join("pair.json");
        let config =
            serde_json::json!({"teacher": "resnet56", "student": "resnet20", "method": method});
        std::fs::write(&path, config.to_string()).unwrap();
        Command::new(example_binary("cifar100"))
            .args(["config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let text = succeeded(&echo(serde_json::json!({"dkd": {"beta": 2.0}})));
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        config["method"],
        serde_json::json!({"dkd": {"temperature": 4.0, "alpha": 1.0, "beta": 2.0,
                                   "ce_weight": 1.0, "warmup_epochs": 20}})
    );
    let text = succeeded(&echo(serde_json::json!("attention")));
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["method"]["attention"]["beta"], 1000.0);
    let message = failed(&echo(serde_json::json!({"crd": {"nce_kk": 5}})));
    assert!(
        message.contains("pair.json") && message.contains("unknown setting `nce_kk`"),
        "{message}"
    );
    let message = failed(&echo(serde_json::json!({"kd": {"temperature": -1.0}})));
    assert!(
        message.contains("pair.json") && message.contains("method"),
        "{message}"
    );
}

/// A small STL-10 folder whose class `k` images are uniformly `20·k + 10` with a little
/// per-image texture, so features of any network separate the classes.
fn write_stl10(dir: &Path, per_class: usize) {
    for (split, count) in [("train", per_class), ("test", per_class / 2)] {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for class in 0..10u8 {
            for index in 0..count {
                for position in 0..3 * 96 * 96 {
                    let texture = ((position * 31 + index * 17) % 7) as u8;
                    pixels.push(20 * class + 10 + texture);
                }
                labels.push(class + 1);
            }
        }
        std::fs::write(dir.join(format!("{split}_X.bin")), pixels).unwrap();
        std::fs::write(dir.join(format!("{split}_y.bin")), labels).unwrap();
    }
}

#[test]
fn linear_evaluation_and_correlation_heatmap() {
    let dir = tempfile::tempdir().unwrap();
    write_stl10(dir.path(), 6);
    let teacher = repo("tests/fixtures/models/resnet8_repdistiller.pth");
    let output = Command::new(example_binary("cifar100"))
        .args([
            "linear-eval",
            "--arch",
            "resnet8",
            "--dataset",
            "stl10",
            "--epochs",
            "40",
            "--weights",
        ])
        .arg(&teacher)
        .arg("--data")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = succeeded(&output);
    assert!(
        text.contains("(60 train / 30 test images at 32×32): top-1 100.00 %"),
        "{text}"
    );

    // The teacher against itself (zero difference) and against a fresh student.
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let fresh = run.path("fresh.mpk");
    let device = Default::default();
    sskd::models::checkpoint::save_record(
        sskd::models::create_model::<burn::backend::Flex>("resnet8", 100, &device).unwrap(),
        &fresh,
    )
    .unwrap();
    let out = dir.path().join("heatmaps");
    let output = Command::new(example_binary("cifar100"))
        .args([
            "correlation",
            "--teacher-arch",
            "resnet8",
            "--student-arch",
            "resnet8",
            "--teacher",
        ])
        .arg(&teacher)
        .arg("--students")
        .arg(format!("{},{}", teacher.display(), fresh.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    succeeded(&output);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("correlation.json")).unwrap())
            .unwrap();
    assert_eq!(summary[0]["mean_difference"], 0.0);
    assert!(
        summary[1]["mean_difference"].as_f64().unwrap() > 0.01,
        "{summary}"
    );
    assert!(out.join("correlation-fresh.png").is_file());
}
