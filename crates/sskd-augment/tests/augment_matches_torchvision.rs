//! The augmentations against torchvision on PIL images (`tools/make_augment_fixtures.py`), on
//! real photographs and a Fashion-MNIST image, with every random parameter fixed.

use std::path::PathBuf;

use image::RgbImage;
use serde_json::Value;
use sskd_augment::color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, color_jitter, grayscale,
    JitterParams,
};
use sskd_augment::geometry::{crop, horizontal_flip, pad, rotate90};
use sskd_augment::normalize::{normalize, CIFAR100_MEAN, CIFAR100_STD};
use sskd_augment::recipes::imagenet_val;
use sskd_augment::resize::resize_bilinear;

fn dir() -> PathBuf {
    sskd_testing::repo("tests/fixtures/augment")
}

fn load(name: &str) -> RgbImage {
    image::open(dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_rgb8()
}

fn number(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {case}"))
}

fn apply(case: &Value, input: &RgbImage) -> RgbImage {
    let int = |key| number(case, key) as u32;
    let float = |key| number(case, key) as f32;
    match case["kind"].as_str().unwrap() {
        "pad_crop_flip" => {
            let cropped = crop(&pad(input, 4), int("top"), int("left"), 32, 32);
            if case["flip"].as_bool().unwrap() {
                horizontal_flip(&cropped)
            } else {
                cropped
            }
        }
        "rot90" => rotate90(input, int("k")),
        "resized_crop" => {
            let size = int("size");
            resize_bilinear(
                &crop(input, int("top"), int("left"), int("height"), int("width")),
                size,
                size,
            )
        }
        "imagenet_val" => imagenet_val(input),
        "grayscale" => grayscale(input),
        "brightness" => adjust_brightness(input, float("factor")),
        "contrast" => adjust_contrast(input, float("factor")),
        "saturation" => adjust_saturation(input, float("factor")),
        "hue" => adjust_hue(input, float("factor")),
        "jitter" => {
            let order: Vec<usize> = case["order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let params = JitterParams {
                brightness: float("brightness"),
                contrast: float("contrast"),
                saturation: float("saturation"),
                hue: float("hue"),
                order: order.try_into().unwrap(),
            };
            color_jitter(input, &params)
        }
        other => panic!("unknown case kind {other}"),
    }
}

#[test]
fn transforms_match_torchvision_pixel_for_pixel() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    let mut report = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        let input_name = cases["inputs"][case["input"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let actual = apply(case, &load(input_name));
        let expected = load(case["expected"].as_str().unwrap());
        assert_eq!(actual.dimensions(), expected.dimensions(), "{case}");
        let differing = actual
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        let worst = actual
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        if differing > 0 {
            report.push(format!(
                "{}: {differing} values differ, by up to {worst}",
                case["expected"]
            ));
        }
    }
    assert!(
        report.is_empty(),
        "differences from torchvision:\n{}",
        report.join("\n")
    );
}

#[test]
fn normalize_matches_to_tensor_and_normalize() {
    let expected: Vec<f32> = std::fs::read(dir().join("normalize.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let actual = normalize(&load("small.png"), CIFAR100_MEAN, CIFAR100_STD);
    assert_eq!(actual.len(), expected.len());
    let worst = actual
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "max |error| {worst}");
}
