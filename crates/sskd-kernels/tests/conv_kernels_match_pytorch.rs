//! The CPU convolution kernels (`sskd_kernels::conv2d` on `Autodiff<Flex>`) against
//! `torch.nn.functional.conv2d` in float64 (`tools/make_conv_fixtures.py`): the output and the
//! gradients of input, weight and bias through Burn's autodiff, for every case of the fixture
//! (batch 1, strides 1/2, paddings 0/1/3, 1×1/3×3/7×7, dilation, grouped, depthwise with and
//! without a channel multiplier, non-square maps). Float32 runs the same cases at a float32
//! tolerance, so the f32 path is covered too.

use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::SafeTensors;
use serde_json::Value;
use sskd_kernels::conv2d;

type B = Autodiff<Flex>;

struct Case {
    name: String,
    options: ConvOptions<2>,
    has_bias: bool,
}

fn fixture_bytes() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/layers/conv2d.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases(bytes: &[u8]) -> Vec<Case> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).expect("fixture header");
    let cases: Value = serde_json::from_str(
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("cases"))
            .expect("cases metadata"),
    )
    .expect("cases JSON");
    let size = |case: &Value, key: &str| case[key].as_u64().expect(key) as usize;
    cases
        .as_array()
        .expect("a list of cases")
        .iter()
        .map(|case| Case {
            name: case["name"].as_str().expect("name").to_string(),
            options: ConvOptions::new(
                [size(case, "stride"); 2],
                [size(case, "padding"); 2],
                [size(case, "dilation"); 2],
                size(case, "groups"),
            ),
            has_bias: case["bias"].as_bool().expect("bias"),
        })
        .collect()
}

/// Tensor `key` of the fixture (float64) and its shape.
fn read(file: &SafeTensors, key: &str) -> TensorData {
    let view = file.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let values: Vec<f64> = view
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    TensorData::new(values, view.shape().to_vec())
}

fn tensor(file: &SafeTensors, key: &str, dtype: DType) -> Tensor<B, 4> {
    Tensor::from_data(read(file, key), (&Default::default(), dtype))
}

fn assert_close(name: &str, actual: TensorData, expected: TensorData, tolerance: f64) {
    assert_eq!(actual.shape, expected.shape, "{name}: shape");
    let actual: Vec<f64> = actual.convert::<f64>().to_vec().unwrap();
    let expected: Vec<f64> = expected.to_vec().unwrap();
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (index, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance * scale,
            "{name}[{index}]: {a} vs torch {e} (tolerance {tolerance} × {scale})"
        );
    }
}

fn check_all(dtype: DType, tolerance: f64) {
    let bytes = fixture_bytes();
    let file = SafeTensors::deserialize(&bytes).expect("fixture tensors");
    let cases = cases(&bytes);
    assert!(cases.len() >= 16, "the fixture holds every case");
    for case in cases {
        let key = |k: &str| format!("{}.{k}", case.name);
        let x = tensor(&file, &key("x"), dtype).require_grad();
        let weight = tensor(&file, &key("weight"), dtype).require_grad();
        let bias = case.has_bias.then(|| {
            let data = read(&file, &key("bias"));
            Tensor::<B, 1>::from_data(data, (&Default::default(), dtype)).require_grad()
        });
        let output = conv2d(
            x.clone(),
            weight.clone(),
            bias.clone(),
            case.options.clone(),
        );
        assert_eq!(output.dtype(), dtype, "{}: output dtype", case.name);
        let output_grad = tensor(&file, &key("output_grad"), dtype);
        let grads = (output.clone() * output_grad).sum().backward();
        let check = |what: &str, actual: TensorData| {
            let name = format!("{} {what} ({dtype:?})", case.name);
            assert_close(&name, actual, read(&file, &key(what)), tolerance);
        };
        check("output", output.into_data());
        check("x_grad", x.grad(&grads).expect("x grad").into_data());
        check(
            "weight_grad",
            weight.grad(&grads).expect("weight grad").into_data(),
        );
        if let Some(bias) = bias {
            check(
                "bias_grad",
                bias.grad(&grads).expect("bias grad").into_data(),
            );
        }
    }
}

#[test]
fn convolutions_and_their_gradients_match_pytorch_in_f64() {
    check_all(DType::F64, 1e-12);
}

#[test]
fn convolutions_and_their_gradients_match_pytorch_in_f32() {
    check_all(DType::F32, 1e-5);
}
