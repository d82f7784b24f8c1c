//! Every example walked through bad values as a user would give them: labels out of range,
//! weights with a tensor missing or of another depth, garbage and truncated files, an empty
//! class folder, zero epochs and zero counts, unknown names. Each must end with a clear
//! message naming the file or value, exit code 1 (2 for a command-line usage error, as clap
//! answers), no panic text, and nothing written that names a file the run did not write.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{example_binary, repo};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sskd::models::import::read_state_dict;

/// One bad invocation and what its error must say.
struct Case {
    example: &'static str,
    args: Vec<String>,
    code: i32,
    says: Vec<String>,
}

fn case<S: AsRef<str>>(
    example: &'static str,
    args: impl IntoIterator<Item = S>,
    code: i32,
    says: &[&str],
) -> Case {
    Case {
        example,
        args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
        code,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

impl Case {
    fn check(&self) {
        let output = Command::new(example_binary(self.example))
            .args(&self.args)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap_or_else(|e| panic!("run {} (built by cargo test): {e}", self.example));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let call = format!("{} {}", self.example, self.args.join(" "));
        assert_eq!(output.status.code(), Some(self.code), "{call}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{call}: panic text\n{stderr}");
        for fragment in &self.says {
            assert!(
                stderr.contains(fragment.as_str()),
                "{call}: no `{fragment}` in\n{stderr}"
            );
        }
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A safetensors file of `tensors` (name, dtype, shape, little-endian bytes).
fn write_safetensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views = tensors.iter().map(|(name, dtype, shape, bytes)| {
        (
            name.clone(),
            TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
        )
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The losses fixture with its labels replaced by `labels`.
fn losses_input_with_labels(path: &Path, labels: &[i64]) {
    let fixture =
        std::fs::read(repo("tests/fixtures/losses/sskd_paper_shapes.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&fixture).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.as_str() != "labels")
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    let batch = file.tensor("labels").unwrap().shape()[0];
    let values: Vec<i64> = (0..batch).map(|i| labels[i % labels.len()]).collect();
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensors.push(("labels".to_string(), Dtype::I64, vec![batch], bytes));
    write_safetensors(path, &tensors);
}

/// The RepDistiller resnet8 weights as safetensors, without the tensor `dropped`.
fn resnet8_without(path: &Path, dropped: &str) {
    let pth = repo("tests/fixtures/models/resnet8_repdistiller.pth");
    let tensors: Vec<_> = read_state_dict(&pth)
        .unwrap()
        .tensors
        .into_iter()
        .filter(|(key, _)| key != dropped)
        .map(|(key, data)| {
            (
                key,
                Dtype::F32,
                data.shape.to_vec(),
                data.as_bytes().to_vec(),
            )
        })
        .collect();
    write_safetensors(path, &tensors);
}

/// A forward input `x` of two `side × side` images.
fn forward_input(path: &Path, side: usize) {
    let bytes = vec![0u8; 2 * 3 * side * side * 4];
    write_safetensors(
        path,
        &[("x".into(), Dtype::F32, vec![2, 3, side, side], bytes)],
    );
}

/// An ImageNet-style folder whose class `n02` has no training image.
fn imagenet_with_an_empty_class(root: &Path) {
    let picture = image::RgbImage::from_pixel(40, 40, image::Rgb([90, 40, 200]));
    for split in ["train", "val"] {
        for class in ["n01", "n02"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            if !(split == "train" && class == "n02") {
                picture.save(dir.join("a.png")).unwrap();
            }
        }
    }
}

/// The files and folders the bad cases point at.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let inputs = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let garbage: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(inputs.path("garbage.pth"), &garbage).unwrap();
        std::fs::write(inputs.path("garbage.jpg"), &garbage).unwrap();
        std::fs::write(inputs.path("bad.json"), "{\"teacher\": \"resnet8\", ").unwrap();
        losses_input_with_labels(&inputs.path("label_150.safetensors"), &[3, 150]);
        losses_input_with_labels(&inputs.path("label_negative.safetensors"), &[-3]);
        resnet8_without(&inputs.path("no_conv.safetensors"), "layer2.0.conv1.weight");
        forward_input(&inputs.path("x.safetensors"), 32);
        forward_input(&inputs.path("x4.safetensors"), 4);
        let truncated = inputs.path("truncated");
        std::fs::create_dir_all(&truncated).unwrap();
        let train = std::fs::read(repo("tests/fixtures/data/cifar100_binary/train.bin")).unwrap();
        std::fs::write(truncated.join("train.bin"), &train[..train.len() - 100]).unwrap();
        std::fs::write(truncated.join("test.bin"), &train).unwrap();
        imagenet_with_an_empty_class(&inputs.path("imagenet"));
        inputs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn every_example_answers_bad_values_with_a_clear_error() {
    let inputs = Inputs::new();
    let at = |name: &str| inputs.path(name).to_str().unwrap().to_string();
    let fixture = |path: &str| text(&repo(path)).to_string();
    let out = at("out");
    let cifar = fixture("tests/fixtures/data/cifar100_binary");
    let resnet8_pth = fixture("tests/fixtures/models/resnet8_repdistiller.pth");
    let (x, output) = (at("x.safetensors"), at("out.safetensors"));
    // The forward example on `x`, and stage 1 of the CIFAR-100 example, with `arch`/`data`.
    let forward = |arch: &str, weights: &str| {
        let args = [
            "--arch",
            arch,
            "--weights",
            weights,
            "--input",
            &x,
            "--output",
            &output,
        ];
        args.map(str::to_string).to_vec()
    };
    let cifar_teacher = |data: &str, extra: &[&str]| {
        let args = [
            "teacher",
            "--teacher-arch",
            "resnet8",
            "--data",
            data,
            "--out",
            &out,
        ];
        args.iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let mut forward_small = forward("resnet8", &resnet8_pth);
    forward_small[5] = at("x4.safetensors");
    let cases = [
        // Labels outside the classes, in the loss code's inputs.
        case(
            "losses",
            ["--input", &at("label_150.safetensors"), "--output", &out],
            1,
            &["label_150.safetensors", "label 150", "outside 0..100"],
        ),
        case(
            "losses",
            [
                "--input",
                &at("label_negative.safetensors"),
                "--output",
                &out,
            ],
            1,
            &["label_negative.safetensors", "label -3"],
        ),
        // Weights: a tensor missing (named as the file names it), another depth, garbage.
        case(
            "forward",
            forward("resnet8", &at("no_conv.safetensors")),
            1,
            &[
                "no_conv.safetensors",
                "no tensor for `layer2.0.conv1.weight`",
            ],
        ),
        case(
            "forward",
            forward("resnet20", &resnet8_pth),
            1,
            &["resnet8_repdistiller.pth"],
        ),
        case(
            "forward",
            forward("resnet8", &at("garbage.pth")),
            1,
            &["garbage.pth"],
        ),
        case("forward", forward("resnet9", &resnet8_pth), 1, &["resnet9"]),
        case(
            "forward",
            forward_small,
            1,
            &["x4.safetensors", "at least 29×29, got 4×4"],
        ),
        case("zoo", ["resnet9"], 1, &["unknown architecture `resnet9`"]),
        case(
            "zoo",
            ["resnet8", "--batch", "0"],
            2,
            &["--batch", "at least 1"],
        ),
        case(
            "zoo",
            ["resnet8", "--num-classes", "0"],
            1,
            &["num_classes"],
        ),
        case(
            "augment",
            ["--input", &at("garbage.jpg"), "--out", &out],
            1,
            &["garbage.jpg", "cannot decode"],
        ),
        // CIFAR-100: a truncated file, zero epochs, a record of another depth, a bad config.
        case(
            "cifar100",
            cifar_teacher(&at("truncated"), &[]),
            1,
            &["train.bin", "multiple of 3074"],
        ),
        case(
            "cifar100",
            cifar_teacher(&cifar, &["--set", "teacher_stage.epochs=0"]),
            1,
            &["teacher_stage.epochs", "must be positive"],
        ),
        case(
            "cifar100",
            [
                "eval",
                "--arch",
                "resnet20",
                "--weights",
                &resnet8_pth,
                "--data",
                &cifar,
            ],
            1,
            &["resnet8_repdistiller.pth"],
        ),
        case(
            "cifar100",
            ["config", "--config", &at("bad.json")],
            1,
            &["bad.json"],
        ),
        // ImageNet folders: a class without training images.
        case(
            "imagenet",
            [
                "teacher",
                "--data",
                &at("imagenet"),
                "--out",
                &out,
                "--image-size",
                "32",
                "--teacher-arch",
                "resnet18",
                "--set",
                "num_classes=2",
            ],
            1,
            &["n02: class folder without any"],
        ),
        // The quickstart: missing data, a teacher that is no record, zero counts, unknown names.
        case(
            "quickstart",
            ["--data", &at("nothing"), "--out", &out],
            1,
            &["nothing", "train-images-idx3-ubyte"],
        ),
        case(
            "quickstart",
            ["--teacher", &at("garbage.pth"), "--out", &out],
            1,
            &["garbage.pth"],
        ),
        case(
            "quickstart",
            ["--epochs", "0"],
            2,
            &["--epochs", "at least 1"],
        ),
        case(
            "quickstart",
            ["--labelled", "0"],
            2,
            &["--labelled", "at least 1"],
        ),
        case(
            "quickstart",
            ["--methods", "bogus"],
            1,
            &["unknown method `bogus`"],
        ),
        case(
            "quickstart",
            ["--batch", "0"],
            2,
            &["--batch", "at least 1"],
        ),
        case(
            "quickstart",
            ["--seed", "1", "--seeds", "0,1"],
            2,
            &["--seeds", "cannot be used with"],
        ),
        case(
            "step",
            [
                "--stage",
                "teacher",
                "--arch",
                "resnet8",
                "--weights",
                &resnet8_pth,
                "--batch",
                &at("missing.safetensors"),
                "--output",
                &output,
            ],
            1,
            &["missing.safetensors"],
        ),
        case(
            "data_bench",
            ["--batch", "0"],
            2,
            &["--batch", "at least 1"],
        ),
    ];
    for case in &cases {
        case.check();
    }
    let written: Vec<_> = walk(&inputs.path("out"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "mpk"))
        .collect();
    assert!(
        written.is_empty(),
        "records written by failed runs: {written:?}"
    );
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
