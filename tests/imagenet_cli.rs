//! The `imagenet` example end to end on a tiny generated ImageNet folder (3 classes, 32×32
//! crops), data-parallel over two CPU replicas: teacher, head and student stages, evaluation,
//! the config; bad images, mixed device lists and memory-bank methods over several devices end
//! with a clear error.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{example_binary, failed, repo, succeeded};

const WNIDS: [&str; 3] = ["n01440764", "n01443537", "n01484850"];

/// `train/<wnid>/` with 4 images per class and `val/<wnid>/` with 2, of assorted sizes; a
/// PNG named `.JPEG` among them, as in the real train set.
fn tiny_imagenet(root: &Path) {
    for (class, wnid) in WNIDS.iter().enumerate() {
        for (split, count) in [("train", 4), ("val", 2)] {
            let dir = root.join(split).join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let (width, height) = (36 + 4 * i as u32, 40 - 2 * i as u32);
                let image = image::RgbImage::from_fn(width, height, |x, y| {
                    let shade = (40 * class as u32 + 3 * x + 5 * y + 17 * i as u32) % 256;
                    image::Rgb([shade as u8, (255 - shade) as u8, (60 * class) as u8])
                });
                let name = format!("{wnid}_{i}.JPEG");
                let format = if i == 1 {
                    image::ImageFormat::Png
                } else {
                    image::ImageFormat::Jpeg
                };
                image.save_with_format(dir.join(name), format).unwrap();
            }
        }
    }
}

/// Tiny sizes: resnet18 (ImageNet form) on both sides, 32×32, batches of 4, one epoch each.
const TINY: &[&str] = &[
    "--image-size",
    "32",
    "--teacher-arch",
    "resnet18",
    "--student-arch",
    "resnet18",
    "--set",
    "num_classes=3",
    "--set",
    "batch_size=4",
    "--set",
    "test_batch_size=3",
    "--set",
    "teacher_stage.epochs=1",
    "--set",
    "head_stage.epochs=1",
    "--set",
    "student_stage.epochs=1",
];

fn imagenet(stage: &str, data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(example_binary("imagenet"))
        .arg(stage)
        .args(TINY)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal")
        .output()
        .expect("run the imagenet example")
}

fn last_metrics(out: &Path) -> serde_json::Value {
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[test]
fn three_stages_over_two_cpu_replicas_and_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    tiny_imagenet(&data);
    let out = dir.path().join("run");
    let two = ["--device", "cpu,cpu"];

    let teacher = succeeded(&imagenet("teacher", &data, &out, &two));
    assert!(teacher.contains("teacher: last epoch 1 "), "{teacher}");
    let head_teacher = out.join("teacher-best.mpk");
    let head = succeeded(&imagenet(
        "head",
        &data,
        &out,
        &[two[0], two[1], "--teacher", head_teacher.to_str().unwrap()],
    ));
    assert!(head.contains("SS head"), "{head}");
    let with_head = out.join("teacher-with-head.mpk");
    let student = succeeded(&imagenet(
        "student",
        &data,
        &out,
        &[two[0], two[1], "--teacher", with_head.to_str().unwrap()],
    ));
    assert!(student.contains("student: best epoch 1 "), "{student}");
    let line = last_metrics(&out);
    assert_eq!(line["stage"], "student");
    assert_eq!(line["train"]["images"], 12);
    for term in ["ce", "kd", "tf", "ss", "total"] {
        assert!(
            line["train"]["terms"][term]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{term}: {line}"
        );
    }
    assert!(out.join("student.png").exists());

    let weights = out.join("student-best-backbone.mpk");
    let eval = succeeded(
        &Command::new(example_binary("imagenet"))
            .args(["eval", "--image-size", "32", "--arch", "resnet18"])
            .args(["--device", "cpu,cpu"]) // a training run's list: its first device
            .args(["--num-classes", "3", "--weights"])
            .arg(&weights)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert!(eval.contains("on 6 validation images: top-1"), "{eval}");
}

#[test]
fn the_shipped_config_is_the_default_one() {
    let run = |args: &[&str]| {
        succeeded(
            &Command::new(example_binary("imagenet"))
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let shipped = repo("configs/imagenet/resnet34-resnet18.json");
    let from_file = run(&["config", "--config", shipped.to_str().unwrap()]);
    let defaults = run(&["config"]);
    assert_eq!(from_file, defaults);
    let config: serde_json::Value = serde_json::from_str(&defaults).unwrap();
    assert_eq!(config["batch_size"], 256);
    assert_eq!(config["method"]["sskd"]["ce_weight"], 1.0);
    assert_eq!(
        config["student_stage"]["milestones"],
        serde_json::json!([30, 60, 90])
    );
}

#[test]
fn bad_images_device_lists_and_methods_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    tiny_imagenet(&data);
    let out = dir.path().join("run");

    let mixed = failed(&imagenet(
        "teacher",
        &data,
        &out,
        &["--device", "cpu,cuda:0"],
    ));
    assert!(mixed.contains("is not a cpu device"), "{mixed}");

    let teacher = out.join("teacher-with-head.mpk");
    let teacher_net = sskd::models::BackboneWithHead::new(
        sskd::models::create_model::<burn::backend::Flex>("resnet18", 3, &Default::default())
            .unwrap(),
        &Default::default(),
    );
    std::fs::create_dir_all(&out).unwrap();
    sskd::models::checkpoint::save_record(teacher_net, &teacher).unwrap();
    let crd = failed(&imagenet(
        "student",
        &data,
        &out,
        &[
            "--device",
            "cpu,cpu",
            "--method",
            "crd",
            "--teacher",
            teacher.to_str().unwrap(),
        ],
    ));
    assert!(crd.contains("memory bank"), "{crd}");

    let broken = data.join("train").join(WNIDS[2]).join("broken.JPEG");
    std::fs::write(&broken, b"not an image at all").unwrap();
    let bad = failed(&imagenet("teacher", &data, &out, &[]));
    assert!(bad.contains("broken.JPEG"), "{bad}");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("train")).unwrap();
    std::fs::create_dir_all(empty.join("val")).unwrap();
    let none = failed(&imagenet("teacher", &empty, &out, &[]));
    assert!(none.contains("no class folders"), "{none}");
}
