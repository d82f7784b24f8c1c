//! The examples run as a user would: `forward` (a PyTorch checkpoint and an input file in, every
//! output out) and `losses` (tensors in, terms out as JSON), compared with the PyTorch fixtures;
//! bad input gives a clear error and a non-zero exit.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_close, deterministic, example_binary, fixture_dir, sample, Fixture};

fn write_input(path: &Path, shape: [usize; 4]) {
    let values = deterministic("input", &shape);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .unwrap();
    std::fs::write(path, safetensors::serialize([("x", view)], None).unwrap()).unwrap();
}

fn read_output(path: &Path, key: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file
        .tensor(key)
        .unwrap_or_else(|_| panic!("output lacks `{key}`"));
    view.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn forward_example_reproduces_pytorch_from_a_checkpoint() {
    let dir = std::env::temp_dir().join(format!("sskd-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = Fixture::read("resnet8");
    let input = dir.join("x.safetensors");
    let output = dir.join("out.safetensors");
    write_input(&input, fixture.input_shape());
    let status = Command::new(example_binary("forward"))
        .args(["--arch", "resnet8", "--weights"])
        .arg(fixture_dir().join("resnet8_repdistiller.pth"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .expect("run the forward example (built by cargo test)");
    assert!(status.success());
    assert_close(
        "logits",
        &read_output(&output, "logits"),
        fixture.expected("logits").unwrap(),
        1e-4,
    );
    assert_close(
        "embedding",
        &read_output(&output, "embedding"),
        fixture.expected("embedding").unwrap(),
        1e-4,
    );
    for k in 0..4 {
        let written = sample(&read_output(&output, &format!("feat.{k}")));
        assert_close(
            &format!("feat.{k}"),
            &written,
            fixture.expected(&format!("feat.{k}")).unwrap(),
            1e-4,
        );
        let written = sample(&read_output(&output, &format!("preact.{k}")));
        assert_close(
            &format!("preact.{k}"),
            &written,
            fixture.expected(&format!("preact.{k}")).unwrap(),
            1e-4,
        );
    }

    // An input without `x` is a clear error and writes nothing.
    let bad_input = dir.join("bad.safetensors");
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4]).unwrap();
    std::fs::write(
        &bad_input,
        safetensors::serialize([("y", view)], None).unwrap(),
    )
    .unwrap();
    let missing_output = dir.join("never.safetensors");
    let result = Command::new(example_binary("forward"))
        .args(["--arch", "resnet8", "--weights"])
        .arg(fixture_dir().join("resnet8_repdistiller.pth"))
        .arg("--input")
        .arg(&bad_input)
        .arg("--output")
        .arg(&missing_output)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("bad.safetensors") && stderr.contains("no tensor named `x`"),
        "{stderr}"
    );
    assert!(!missing_output.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn losses_example_reports_every_sskd_term() {
    let dir = std::env::temp_dir().join(format!("sskd-losses-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/losses");
    let fixture = Fixture::read_from(&fixtures, "sskd_paper_shapes");
    let output = dir.join("out.json");
    let status = Command::new(example_binary("losses"))
        .arg("--input")
        .arg(fixtures.join("sskd_paper_shapes.safetensors"))
        .arg("--output")
        .arg(&output)
        .status()
        .expect("run the losses example (built by cargo test)");
    assert!(status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    for key in ["ce", "kd", "tf", "ss", "total"] {
        let expected = fixture.expected(&format!("expected.{key}")).unwrap();
        assert_close(key, &[report[key].as_f64().unwrap() as f32], expected, 1e-5);
    }
    for key in ["kept_tf", "kept_ss"] {
        assert_eq!(report[key], fixture.meta["counts"][key], "{key}");
    }

    let config = dir.join("bad.json");
    std::fs::write(&config, r#"{"ratio_sss": 0.5}"#).unwrap();
    let result = Command::new(example_binary("losses"))
        .arg("--input")
        .arg(fixtures.join("sskd_paper_shapes.safetensors"))
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(dir.join("never.json"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("unknown field `ratio_sss`"),
        "{stderr}"
    );
    assert!(!dir.join("never.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gpu_bench_prints_one_json_line_per_configuration() {
    let output = Command::new(example_binary("gpu_bench"))
        .args(["--device", "cpu", "--warmup", "1", "--steps", "2"])
        .args(["teacher/resnet8/2", "kd/resnet8/resnet8/2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, config) in lines
        .iter()
        .zip(["teacher/resnet8/2", "kd/resnet8/resnet8/2"])
    {
        assert_eq!(line["config"], config);
        assert_eq!(line["impl"], "burn");
        assert_eq!(line["steps"], 2);
        let (p10, median, p90) = (
            line["step_ms_p10"].as_f64().unwrap(),
            line["step_ms"].as_f64().unwrap(),
            line["step_ms_p90"].as_f64().unwrap(),
        );
        assert!(0.0 < p10 && p10 <= median && median <= p90, "{line}");
        let images_per_s = line["images_per_s"].as_f64().unwrap();
        assert!((images_per_s - 2.0 / (median / 1e3)).abs() < 1e-6, "{line}");
        assert!(line["first_step_s"].as_f64().unwrap() > 0.0, "{line}");
        // `--device cpu` runs the steps on the main thread as rayon's worker 0, with freed
        // memory kept for the next step (glibc).
        assert_eq!(line["caller_in_pool"], true, "{line}");
        let on_glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(line["freed_memory_kept"], on_glibc, "{line}");
    }
    assert_eq!(lines[0]["rows"], 2);
}

/// `data_bench --pipeline imagenet --generate` writes a synthetic JPEG folder, pushes its
/// images through the ImageNet four-rotation pipeline and reports its throughput and stages;
/// without --data it says what is missing.
#[test]
fn data_bench_measures_the_imagenet_pipeline_on_a_generated_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    let output = Command::new(example_binary("data_bench"))
        .args([
            "--pipeline",
            "imagenet",
            "--generate",
            "3",
            "--classes",
            "2",
        ])
        .args([
            "--images",
            "5",
            "--batch",
            "2",
            "--threads",
            "1",
            "--size",
            "32",
        ])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["images"], 5, "{line}");
    assert_eq!(line["threads"], 1, "{line}");
    let per_core = line["images_per_second_per_core"].as_f64().unwrap();
    assert!(per_core > 0.0 && per_core == line["images_per_second"].as_f64().unwrap());
    for stage in ["decode", "crop_resize", "flip_rotations_normalise"] {
        assert!(line["stages_ms"][stage].as_f64().unwrap() > 0.0, "{line}");
    }
    assert_eq!(std::fs::read_dir(data.join("train")).unwrap().count(), 2);

    let missing = Command::new(example_binary("data_bench"))
        .args(["--pipeline", "imagenet"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--data"));
}

#[test]
fn gpu_bench_explains_bad_requests() {
    let run = |args: &[&str]| {
        Command::new(example_binary("gpu_bench"))
            .args(args)
            .output()
            .unwrap()
    };
    let error = common::failed(&run(&["sskd/wrn_40_2/64"]));
    assert!(
        error.contains("expected sskd|kd/TEACHER/STUDENT/BATCH"),
        "{error}"
    );
    let error = common::failed(&run(&["--precision", "bf16", "teacher/resnet8/2"]));
    assert!(
        error.contains("precision bf16 is not available on device `cpu`"),
        "{error}"
    );
    let error = common::failed(&run(&["--set", "most"]));
    assert!(error.contains("unknown set `most`"), "{error}");
}

/// `step` on RepDistiller's setup: CRD from RepDistiller-layout files, its memory bank and
/// embeddings in and out under RepDistiller's names, the batch's contrast indices, a setting
/// changed with `--set`; the terms those of RepDistiller's loop; bad requests explained.
#[test]
fn step_example_runs_a_repdistiller_method_with_its_state() {
    use common::steps::{
        baseline_fixture_dir, method_state, read_case_in, write_step_weights, write_weights,
    };
    let case = read_case_in(&baseline_fixture_dir(), "crd_wrn_16_2_wrn_16_1");
    let dir = tempfile::tempdir().unwrap();
    let (teacher, student) = write_step_weights(&case, dir.path());
    let state = method_state(&case);
    let state_file = write_weights(dir.path(), "method", &state);
    let [output, method_output, terms] =
        ["out.safetensors", "method-out.safetensors", "terms.json"].map(|f| dir.path().join(f));
    let run = |extra: &[&str]| {
        Command::new(example_binary("step"))
            .args([
                "--stage",
                "student",
                "--method",
                "crd",
                "--num-classes",
                "10",
            ])
            .args(["--teacher-arch", "wrn_16_2", "--student-arch", "wrn_16_1"])
            .arg("--teacher")
            .arg(&teacher)
            .arg("--student")
            .arg(&student)
            .arg("--method-state")
            .arg(&state_file)
            .arg("--batch")
            .arg(&case.path)
            .arg("--output")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap()
    };
    common::succeeded(&run(&[
        "--set",
        "method.crd.nce_k=16",
        "--steps",
        "2",
        "--precision",
        "f64",
        "--method-output",
        method_output.to_str().unwrap(),
        "--terms",
        terms.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(&method_output).unwrap();
    let written = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = written.names().into_iter().map(String::from).collect();
    names.sort();
    let mut expected: Vec<String> = state.iter().map(|(key, _)| key.clone()).collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "the method's state under RepDistiller's names"
    );
    let params: Vec<f64> = written
        .tensor("contrast.params")
        .unwrap()
        .data()
        .chunks(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(
        params[2] > 0.0 && params[3] > 0.0,
        "normalisers set: {params:?}"
    );
    let steps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&terms).unwrap()).unwrap();
    for (ours, torch) in steps
        .as_array()
        .unwrap()
        .iter()
        .zip(case.meta["steps"].as_array().unwrap())
    {
        let (ours, torch) = (
            ours["crd"].as_f64().unwrap(),
            torch["crd"].as_f64().unwrap(),
        );
        assert!(
            (ours - torch).abs() <= 1e-8 * torch.abs(),
            "crd: {ours} vs {torch}"
        );
    }
    let error = common::failed(&run(&["--init"]));
    assert!(error.contains("has no pre-training stage"), "{error}");
    let error = common::failed(&run(&["--set", "student_stage.epochs=1"]));
    assert!(error.contains("method.NAME.FIELD=VALUE"), "{error}");
    let error = common::failed(&run(&["--set", "method.crd.nce_t=0.5"]));
    assert!(error.contains("--set method.crd.nce_t="), "{error}");
}

/// `step` as a user runs it: an SSKD student step from PyTorch-layout files in f64, the state
/// dict and terms written, the terms those of the released code's step; bad requests explained.
#[test]
fn step_example_runs_an_sskd_student_step_from_files() {
    use common::steps::{keys, read_case, sskd_step_command, write_step_weights};
    let case = read_case("sskd_vgg13_vgg8");
    let dir = tempfile::tempdir().unwrap();
    let weights = write_step_weights(&case, dir.path());
    let student = &weights.1;
    let student_keys = keys(&case.meta["student_keys"]);
    let (output, terms) = (
        dir.path().join("out.safetensors"),
        dir.path().join("terms.json"),
    );
    let step = example_binary("step");
    let run = |extra: &[&str]| {
        sskd_step_command(&step, &case, ["vgg13", "vgg8"], &weights, &output)
            .args(extra)
            .output()
            .unwrap()
    };
    let text = common::succeeded(&run(&[
        "--steps",
        "2",
        "--precision",
        "f64",
        "--terms",
        terms.to_str().unwrap(),
    ]));
    assert!(text.contains("2 steps"), "{text}");
    let bytes = std::fs::read(&output).unwrap();
    let written = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        written.len(),
        student_keys.len(),
        "every tensor of the state dict"
    );
    for (key, shape) in &student_keys {
        let view = written.tensor(key).unwrap_or_else(|_| panic!("no `{key}`"));
        assert_eq!(view.dtype(), safetensors::Dtype::F64, "{key}");
        assert_eq!(view.shape(), shape.as_slice(), "{key}");
    }
    let steps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&terms).unwrap()).unwrap();
    let expected = case.meta["steps"].as_array().unwrap();
    for (ours, torch) in steps.as_array().unwrap().iter().zip(expected) {
        for name in ["ce", "kd", "tf", "ss", "total", "kept_tf", "kept_ss"] {
            let (ours, torch) = (ours[name].as_f64().unwrap(), torch[name].as_f64().unwrap());
            assert!(
                (ours - torch).abs() <= 1e-8 * torch.abs(),
                "{name}: {ours} vs {torch}"
            );
        }
    }
    let missing_arch = Command::new(example_binary("step"))
        .args(["--stage", "teacher", "--weights"])
        .arg(student)
        .arg("--batch")
        .arg(&case.path)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(missing_arch.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing_arch.stderr);
    assert!(stderr.contains("--stage teacher needs --arch"), "{stderr}");
    let wrong_classes = run(&["--num-classes", "10"]);
    assert_eq!(wrong_classes.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong_classes.stderr);
    assert!(
        stderr.contains("outside 0..10") || stderr.contains("shape"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_quickstart_runs_from_any_working_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(example_binary("quickstart"))
        .args(["--labelled", "20", "--epochs", "1", "--test-images", "20"])
        .args(["--methods", "vanilla,kd", "--out", "runs"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let text = common::succeeded(&output);
    assert!(text.contains("student resnet8, kd"), "{text}");
    assert!(elsewhere.path().join("runs/kd/metrics.jsonl").is_file());
}

#[test]
fn the_quickstart_over_seeds_writes_each_run_and_their_mean_and_std() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(example_binary("quickstart"))
        .args(["--labelled", "20", "--epochs", "1", "--test-images", "20"])
        .args(["--methods", "vanilla,kd", "--seeds", "0,1", "--batch", "8"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let text = common::succeeded(&output);
    assert!(text.contains("Mean ± std over 2 seeds (0, 1)"), "{text}");
    for seed in [0, 1] {
        for method in ["vanilla", "kd"] {
            let metrics = out
                .path()
                .join(format!("seed-{seed}/{method}/metrics.jsonl"));
            assert!(metrics.is_file(), "{} missing", metrics.display());
        }
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("quickstart.json")).unwrap())
            .unwrap();
    assert_eq!(report["seeds"], serde_json::json!([0, 1]));
    assert_eq!(report["regime"]["batch"], 8);
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "teacher and two students");
    let top1 = |model: &serde_json::Value, seed: usize| {
        model["runs"][seed]["best"]["top1"].as_f64().unwrap()
    };
    let (plain, kd) = (&models[1], &models[2]);
    let (kd0, kd1) = (top1(kd, 0), top1(kd, 1));
    let mean = (kd0 + kd1) / 2.0;
    let std = (kd0 - kd1).abs() / 2f64.sqrt();
    assert!((kd["best_top1_mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert!((kd["best_top1_std"].as_f64().unwrap() - std).abs() < 1e-9);
    let gain = (kd0 - top1(plain, 0) + kd1 - top1(plain, 1)) / 2.0;
    assert!((kd["gain_vs_plain_mean"].as_f64().unwrap() - gain).abs() < 1e-9);
    // The teacher is evaluated once; it has no best epoch and no gain.
    assert!(models[0].get("gain_vs_plain_mean").is_none());
    assert_eq!(
        models[0]["runs"][0]["last"]["top1"],
        models[0]["runs"][1]["last"]["top1"]
    );
}
