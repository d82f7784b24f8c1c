//! Fuzzing every reader that takes bytes from a user: CIFAR binary and python pickles, IDX,
//! STL-10, the images of ImageNet-style folders, safetensors and `.pth` weights, Burn records
//! and experiment configs. Each case mutates a valid file (bit flips, overwritten, inserted and
//! removed bytes, truncation; biased towards the header, where the structure lives) and reads
//! it back: an error is the expected answer, a panic fails the test.
//!
//! The budget is fixed for CI (`SSKD_FUZZ_CASES` cases per reader, 96 by default; raise it to
//! fuzz longer locally). Every input that once made a reader panic is kept under
//! `tests/fixtures/fuzz/<reader>/` and read again by `regressions_do_not_panic`: when a run
//! finds one, proptest prints the shrunk mutations; write that file there and commit it with
//! the fix.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Flex;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use safetensors::{tensor::TensorView, Dtype};
use sskd::data::cifar::{cifar100_binary, cifar100_python, Split};
use sskd::data::folders::decode_rgb;
use sskd::data::idx::idx_images;
use sskd::data::stl10::{stl10, Stl10Split};
use sskd::experiment::{load_experiment, ExperimentConfig};
use sskd::models::checkpoint::{load_record, save_record};
use sskd::models::create_model;
use sskd::models::import::{load_weights, read_state_dict};

/// One change to a file's bytes. Positions are fractions of the length (`Anywhere`) or
/// offsets into the first 64 bytes (`Head`), so mutations stay inside files of any size.
#[derive(Debug, Clone)]
enum Position {
    Head(u8),
    Anywhere(u32),
}

impl Position {
    fn within(&self, len: usize) -> usize {
        match self {
            Position::Head(offset) => (*offset as usize % 64).min(len),
            Position::Anywhere(fraction) => ((*fraction as u64 * len as u64) >> 32) as usize,
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBits(Position, u8),
    Overwrite(Position, u8),
    Insert(Position, Vec<u8>),
    Remove(Position, u16),
    Truncate(Position),
}

fn position() -> impl Strategy<Value = Position> {
    prop_oneof![
        any::<u8>().prop_map(Position::Head),
        any::<u32>().prop_map(Position::Anywhere),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Boundary values: lengths and counts of 0, 1, 0x7f, 0x80 and 0xff bytes.
    let byte = prop_oneof![any::<u8>(), Just(0u8), Just(0xff), Just(0x7f), Just(0x80)];
    prop_oneof![
        4 => (position(), 1u8..=255).prop_map(|(at, mask)| Mutation::FlipBits(at, mask)),
        4 => (position(), byte).prop_map(|(at, value)| Mutation::Overwrite(at, value)),
        1 => (position(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (position(), 1u16..512).prop_map(|(at, len)| Mutation::Remove(at, len)),
        1 => position().prop_map(Mutation::Truncate),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..6)
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        match mutation {
            Mutation::FlipBits(at, mask) => {
                let at = at.within(bytes.len());
                if let Some(byte) = bytes.get_mut(at) {
                    *byte ^= mask;
                }
            }
            Mutation::Overwrite(at, value) => {
                let at = at.within(bytes.len());
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = *value;
                }
            }
            Mutation::Insert(at, inserted) => {
                let at = at.within(bytes.len());
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Remove(at, len) => {
                let at = at.within(bytes.len());
                let end = (at + *len as usize).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Truncate(at) => bytes.truncate(at.within(bytes.len())),
        }
    }
    bytes
}

/// A reader under test: it reads the file at the path it is given and may fail, never panic.
struct Target {
    /// Folder name under `tests/fixtures/fuzz/`, also the test's name.
    name: &'static str,
    /// The file name the reader expects (the mutated bytes are written there).
    file: &'static str,
    /// Other files the reader needs next to it, unmutated.
    companions: Vec<(&'static str, Vec<u8>)>,
    /// Reads the file at the given path (and its companions in the same folder); an error
    /// must name one of the files.
    read: fn(&Path) -> Result<(), String>,
}

impl Target {
    /// Writes `bytes` as the target's file (with its companions) in a fresh folder and reads
    /// it.
    fn read_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in &self.companions {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join(self.file);
        std::fs::write(&path, bytes).unwrap();
        (self.read)(&path)
    }

    /// Reads `bytes` as the target's file: a panic fails, and so does an error that names
    /// none of the files.
    fn check(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Err(message) = self.read_bytes(bytes) {
            let named = self.companions.iter().map(|(name, _)| *name);
            let names_a_file = std::iter::once(self.file)
                .chain(named)
                .any(|name| message.contains(name));
            prop_assert!(
                names_a_file,
                "{}: error names no file: {message}",
                self.name
            );
        }
        Ok(())
    }

    fn fuzz(&self, seed: &[u8]) {
        let cases = std::env::var("SSKD_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(96);
        let config = Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
            ..Config::default()
        };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let result = runner.run(&mutations(), |changes| self.check(&mutate(seed, &changes)));
        if let Err(failure) = result {
            panic!(
                "{}: {failure}\nwrite the mutated file to tests/fixtures/fuzz/{}/ and fix the reader",
                self.name, self.name
            );
        }
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(sskd_testing::repo(path)).unwrap()
}

/// The folder of a reader's file (the readers of datasets take folders).
fn folder(file: &Path) -> &Path {
    file.parent().expect("a file in a folder")
}

fn error_text<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

fn cifar_binary() -> (Target, Vec<u8>) {
    let target = Target {
        name: "cifar_binary",
        file: "train.bin",
        companions: vec![],
        read: |file| {
            cifar100_binary(folder(file), Split::Train)
                .map(drop)
                .map_err(error_text)
        },
    };
    let records = fixture("tests/fixtures/data/cifar100_binary/train.bin");
    (target, records[..3 * 3074].to_vec())
}

fn cifar_python() -> (Target, Vec<u8>) {
    let meta = fixture("tests/fixtures/data/cifar100_python_p2/meta");
    let target = Target {
        name: "cifar_python",
        file: "train",
        companions: vec![("meta", meta)],
        read: |file| {
            cifar100_python(folder(file), Split::Train)
                .map(drop)
                .map_err(error_text)
        },
    };
    (
        target,
        fixture("tests/fixtures/data/cifar100_python_p2/train"),
    )
}

/// An IDX pair of 4 images of 5×6 pixels; `images` picks which of the two is fuzzed.
fn idx(images: bool) -> (Target, Vec<u8>) {
    let mut image_file = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6];
    image_file.extend((0..4 * 5 * 6).map(|i| (i * 7 % 256) as u8));
    let label_file = vec![0, 0, 8, 1, 0, 0, 0, 4, 3, 1, 4, 1];
    let (fuzzed, kept, name, file, companion) = if images {
        let names = ("idx_images", "x-images-idx3-ubyte", "x-labels-idx1-ubyte");
        (image_file, label_file, names.0, names.1, names.2)
    } else {
        let names = ("idx_labels", "x-labels-idx1-ubyte", "x-images-idx3-ubyte");
        (label_file, image_file, names.0, names.1, names.2)
    };
    let target = Target {
        name,
        file,
        companions: vec![(companion, kept)],
        read: |file| {
            idx_images(folder(file), "x", 10)
                .map(drop)
                .map_err(error_text)
        },
    };
    (target, fuzzed)
}

fn stl10_labels() -> (Target, Vec<u8>) {
    let target = Target {
        name: "stl10",
        file: "test_y.bin",
        companions: vec![("test_X.bin", vec![9; 2 * 96 * 96 * 3])],
        read: |file| {
            stl10(folder(file), Stl10Split::Test)
                .map(drop)
                .map_err(error_text)
        },
    };
    (target, vec![1, 10])
}

fn image(name: &'static str, file: &'static str) -> (Target, Vec<u8>) {
    let target = Target {
        name,
        file,
        companions: vec![],
        read: |file| decode_rgb(file).map(drop).map_err(error_text),
    };
    let mut seed = Vec::new();
    let picture = image::RgbImage::from_fn(20, 12, |x, y| image::Rgb([x as u8 * 9, y as u8, 77]));
    let format = if file.ends_with(".png") {
        image::ImageFormat::Png
    } else {
        image::ImageFormat::Jpeg
    };
    picture
        .write_to(&mut std::io::Cursor::new(&mut seed), format)
        .unwrap();
    (target, seed)
}

/// Weights of a resnet8 (100 classes) in the format of `file`'s extension.
fn weights(name: &'static str, file: &'static str, seed: Vec<u8>) -> (Target, Vec<u8>) {
    let target = Target {
        name,
        file,
        companions: vec![],
        read: load_resnet8,
    };
    (target, seed)
}

fn load_resnet8(path: &Path) -> Result<(), String> {
    let device = Default::default();
    let model = create_model::<Flex>("resnet8", 100, &device).map_err(error_text)?;
    if path.extension().is_some_and(|e| e == "mpk") {
        return load_record(model, path, &device)
            .map(drop)
            .map_err(error_text);
    }
    load_weights(model, path, &device)
        .map(drop)
        .map_err(error_text)
}

/// A Burn record of a fresh resnet8, written once.
fn resnet8_record() -> &'static [u8] {
    static RECORD: OnceLock<Vec<u8>> = OnceLock::new();
    RECORD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet8.mpk");
        let model = create_model::<Flex>("resnet8", 100, &Default::default()).unwrap();
        save_record(model, &path).unwrap();
        std::fs::read(&path).unwrap()
    })
}

/// The RepDistiller resnet8 checkpoint as a safetensors file.
fn resnet8_safetensors() -> Vec<u8> {
    let pth = sskd_testing::repo("tests/fixtures/models/resnet8_repdistiller.pth");
    let state = read_state_dict(&pth).unwrap();
    let views = state.tensors.iter().map(|(key, data)| {
        let view = TensorView::new(Dtype::F32, data.shape.to_vec(), data.as_bytes()).unwrap();
        (key.clone(), view)
    });
    safetensors::serialize(views, None).unwrap()
}

fn config() -> (Target, Vec<u8>) {
    let target = Target {
        name: "config",
        file: "config.json",
        companions: vec![],
        read: |file| {
            let defaults = |teacher: &str, student: &str| {
                ExperimentConfig::new(teacher.to_string(), student.to_string())
            };
            load_experiment(file, defaults)
                .map(drop)
                .map_err(|e| format!("{e:#}"))
        },
    };
    (
        target,
        fixture("configs/cifar100/resnet32x4-resnet8x4.json"),
    )
}

/// Every target with its seed file.
fn targets() -> Vec<(Target, Vec<u8>)> {
    vec![
        cifar_binary(),
        cifar_python(),
        idx(true),
        idx(false),
        stl10_labels(),
        image("png", "image.png"),
        image("jpeg", "image.jpg"),
        weights(
            "pth",
            "weights.pth",
            fixture("tests/fixtures/models/resnet8_repdistiller.pth"),
        ),
        weights("safetensors", "weights.safetensors", resnet8_safetensors()),
        weights("record", "weights.mpk", resnet8_record().to_vec()),
        config(),
    ]
}

fn target(name: &str) -> (Target, Vec<u8>) {
    targets()
        .into_iter()
        .find(|(target, _)| target.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// One test per reader, named after its target.
mod readers_do_not_panic {
    macro_rules! fuzz_tests {
        ($($name:ident),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    let (target, seed) = super::target(stringify!($name));
                    if let Err(message) = target.read_bytes(&seed) {
                        panic!("the unchanged seed file is not read: {message}");
                    }
                    target.fuzz(&seed);
                }
            )*
        };
    }

    fuzz_tests!(
        cifar_binary,
        cifar_python,
        idx_images,
        idx_labels,
        stl10,
        png,
        jpeg,
        pth,
        safetensors,
        record,
        config,
    );
}

/// The folder of kept inputs of the target `name`.
fn regression_dir(name: &str) -> PathBuf {
    sskd_testing::repo(&format!("tests/fixtures/fuzz/{name}"))
}

#[test]
fn regressions_do_not_panic() {
    let mut read = 0;
    for (target, _) in targets() {
        let Ok(entries) = std::fs::read_dir(regression_dir(target.name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            target
                .check(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            read += 1;
        }
    }
    eprintln!("{read} kept inputs read again");
}
