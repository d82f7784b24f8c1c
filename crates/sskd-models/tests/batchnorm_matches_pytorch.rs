//! `sskd_models::batch_norm::BatchNorm` against `torch.nn.BatchNorm2d` / `BatchNorm1d`
//! (`tools/make_batchnorm_fixtures.py`): training-mode output, gradients of input, γ and β,
//! the running statistics after the step (PyTorch's unbiased running variance), and the
//! inference-mode output with them.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use sskd_models::batch_norm::{BatchNorm, BatchNormConfig};
use sskd_testing::Fixture;

type B = Autodiff<Flex>;

fn tensor<B2: Backend, const D: usize>(fixture: &Fixture, key: &str) -> Tensor<B2, D> {
    let (_, values, shape) = fixture
        .tensors
        .iter()
        .find(|(name, _, _)| name == key)
        .unwrap_or_else(|| panic!("fixture tensor {key}"));
    Tensor::from_data(
        TensorData::new(values.clone(), shape.clone()),
        &Default::default(),
    )
}

fn assert_close<B2: Backend, const D: usize>(actual: Tensor<B2, D>, fixture: &Fixture, key: &str) {
    let expected: Tensor<B2, D> = tensor(fixture, key);
    assert_eq!(actual.dims(), expected.dims(), "{key}");
    let actual: Vec<f32> = actual.into_data().convert::<f32>().to_vec().unwrap();
    let expected: Vec<f32> = expected.into_data().to_vec().unwrap();
    for (index, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
            "{key}[{index}]: {a} vs torch {e}"
        );
    }
}

fn layer(fixture: &Fixture, name: &str) -> BatchNorm<B> {
    let mut layer = BatchNormConfig::new(3).init::<B>(&Default::default());
    layer.gamma = Param::from_tensor(tensor(fixture, &format!("{name}.gamma")));
    layer.beta = Param::from_tensor(tensor(fixture, &format!("{name}.beta")));
    layer.running_mean =
        burn::module::RunningState::new(tensor(fixture, &format!("{name}.running_mean_before")));
    layer.running_var =
        burn::module::RunningState::new(tensor(fixture, &format!("{name}.running_var_before")));
    layer
}

fn check<const D: usize>(fixture: &Fixture, name: &str) {
    let key = |k: &str| format!("{name}.{k}");
    let layer = layer(fixture, name);
    let input = tensor::<B, D>(fixture, &key("input")).require_grad();
    let output = layer.forward(input.clone());
    let loss = output
        .clone()
        .mul(tensor(fixture, &key("weight_of_loss")))
        .sum();
    let gradients = loss.backward();
    assert_close(output, fixture, &key("train_output"));
    assert_close(input.grad(&gradients).unwrap(), fixture, &key("input_grad"));
    assert_close(
        layer.gamma.val().grad(&gradients).unwrap(),
        fixture,
        &key("gamma_grad"),
    );
    assert_close(
        layer.beta.val().grad(&gradients).unwrap(),
        fixture,
        &key("beta_grad"),
    );
    let frozen = layer.valid();
    assert_close(frozen.running_mean.value(), fixture, &key("running_mean"));
    assert_close(frozen.running_var.value(), fixture, &key("running_var"));
    assert_close(frozen.forward(input.inner()), fixture, &key("eval_output"));
}

#[test]
fn batch_norm_2d_matches_pytorch() {
    let fixture = Fixture::read_from(&sskd_testing::fixture_dir().join("../layers"), "batchnorm");
    check::<4>(&fixture, "bn2d");
}

#[test]
fn batch_norm_1d_matches_pytorch() {
    let fixture = Fixture::read_from(&sskd_testing::fixture_dir().join("../layers"), "batchnorm");
    check::<2>(&fixture, "bn1d");
}
