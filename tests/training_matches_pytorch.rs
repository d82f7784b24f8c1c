//! Whole training steps against PyTorch (`tools/make_train_step_fixtures.py`): three steps of
//! train-mode forward, cross-entropy, backward and `torch.optim.SGD(0.05, momentum 0.9, weight
//! decay 5e-4)` from the same weights give the same losses, and the same eval-mode logits
//! afterwards (every parameter and every batch-norm running statistic enters those).
//!
//! Exactness is judged in float64, model, loss and optimizer alike: every tensor of the state
//! dict after the steps within 1e-6 of its own update (max |ours − torch| ≤ 1e-6 ·
//! max |torch − initial|), losses within 1e-10 relative. Float32 runs are held to looser
//! bounds (losses 1e-4, eval logits 2e-4 of their scale): deep random networks with batch norm
//! cancel heavily in backward, and float32 rounding alone moves some updates by percents
//! (docs/training.md, "The WRN gradient gap").

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{DType, Int, Tensor};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use common::{deterministic_input, read_f64_tensors, Fixture};
use sskd::losses::functional::cross_entropy;
use sskd::models::import::load_state_dict;
use sskd::models::precision::cast_floats;
use sskd::models::{create_model, Model};
use sskd::train::sgd;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = Autodiff<Flex>;

const STEPS: usize = 3;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/training")
}

/// The fixture's network from its deterministic weights, in `dtype`.
fn initial_model(fixture: &Fixture, dtype: DType) -> Model<B> {
    let device = Default::default();
    let model = create_model::<B>(fixture.arch(), fixture.num_classes(), &device).unwrap();
    cast_floats(
        load_state_dict(model, fixture.state_dict("")).unwrap(),
        dtype,
    )
}

/// What [`train`] measured.
struct Trained {
    /// The loss of each step.
    losses: Vec<f64>,
    /// The gradient of every parameter in the first backward, by path (as [`state_by_path`]).
    first_gradients: BTreeMap<String, Vec<f64>>,
    /// The model after the last step.
    model: Model<B>,
}

/// Replaces every parameter by its gradient (zeros where it has none), so that the gradients
/// can be listed under the module's paths with PyTorch names and layouts.
struct GradientsOf<'a>(&'a GradientsParams);

impl ModuleMapper<Flex> for GradientsOf<'_> {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<Flex, D>>,
    ) -> Param<Tensor<Flex, D>> {
        let grad = self.0.get::<Flex, D>(param.id);
        param.map(|value| grad.unwrap_or_else(|| value.zeros_like()))
    }
}

/// `STEPS` SGD steps of cross-entropy on the fixture's input and labels 0..7, in the model's
/// float type.
fn train(fixture: &Fixture, mut model: Model<B>, dtype: DType) -> Trained {
    let device = Default::default();
    let input: Tensor<B, 4> = deterministic_input::<B>(fixture.input_shape(), &device).cast(dtype);
    let labels = Tensor::<B, 1, Int>::arange(0..8, &device);
    let mut optimizer = sgd(0.9, 5e-4).init();
    let (mut losses, mut first_gradients) = (Vec::new(), BTreeMap::new());
    for step in 0..STEPS {
        let loss = cross_entropy(model.forward(input.clone()).logits, labels.clone());
        assert_eq!(loss.dtype(), dtype, "the loss keeps the model's float type");
        losses.push(
            loss.clone()
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .unwrap()[0],
        );
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        if step == 0 {
            first_gradients = state_by_path(&model.valid().map(&mut GradientsOf(&gradients)));
        }
        model = optimizer.step(0.05, model, gradients);
    }
    Trained {
        losses,
        first_gradients,
        model,
    }
}

/// Every float tensor of a model by its path with PyTorch leaf names, as `f64`. Give it
/// `model.valid()` for a training model: that gathers the running statistics' pending updates.
fn state_by_path(model: &Model<Flex>) -> BTreeMap<String, Vec<f64>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|snapshot| {
            let data = snapshot.to_data().expect("tensor data").convert::<f64>();
            (snapshot.full_path(), data.to_vec::<f64>().unwrap())
        })
        .collect()
}

fn max_abs_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// The reference tensors `<group>.<PyTorch key>` of a fixture, by the model's path.
fn by_path<'a>(
    reference: &'a BTreeMap<String, Vec<f64>>,
    group: &str,
    to_path: fn(&str) -> Option<String>,
) -> BTreeMap<String, (&'a str, &'a [f64])> {
    reference
        .iter()
        .filter_map(|(key, values)| {
            let torch_key = key.strip_prefix(group)?.strip_prefix('.')?;
            let path = to_path(torch_key).unwrap_or_else(|| panic!("no path for {torch_key}"));
            Some((path, (torch_key, values.as_slice())))
        })
        .collect()
}

/// Float64 steps against PyTorch's float64 steps: losses; the first backward's gradients, each
/// tensor within 1e-10 of its largest magnitude; and every tensor of the state dict after the
/// last step against its own update.
fn check_f64(arch: &str) {
    let fixture = Fixture::read_from(&fixture_dir(), &format!("{arch}_sgd"));
    let reference = read_f64_tensors(&fixture_dir().join(format!("{arch}_sgd_f64.safetensors")));
    let model = initial_model(&fixture, DType::F64);
    let initial = state_by_path(&model.valid());
    let to_path = model.key_mapper();
    let trained = train(&fixture, model, DType::F64);
    for (step, (ours, torch)) in trained.losses.iter().zip(&reference["losses"]).enumerate() {
        assert!(
            (ours - torch).abs() <= 1e-10 * torch.abs(),
            "{arch} step {step}: loss {ours:e} vs torch {torch:e}"
        );
    }
    let gradients = by_path(&reference, "grad", to_path);
    for (path, (torch_key, torch)) in &gradients {
        let scale = torch.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let error = max_abs_difference(&trained.first_gradients[path], torch);
        assert!(
            error <= 1e-10 * scale,
            "{arch} first gradient of {torch_key}: max |ours − torch| = {error:e}, max |torch| = {scale:e}"
        );
    }
    let final_state = state_by_path(&trained.model.valid());
    let expected_state = by_path(&reference, "state", to_path);
    for (path, (torch_key, torch)) in &expected_state {
        let update = max_abs_difference(torch, &initial[path]);
        let error = max_abs_difference(&final_state[path], torch);
        assert!(
            error <= 1e-6 * update,
            "{arch} {torch_key}: max |ours − torch| = {error:e}, update max |torch − initial| = {update:e}"
        );
    }
    assert_eq!(
        expected_state.len(),
        final_state.len(),
        "{arch}: every tensor compared"
    );
    assert!(!gradients.is_empty(), "{arch}: the fixture holds gradients");
}

/// Float32 steps: losses and the eval-mode logits afterwards, within float32 bounds.
fn check(arch: &str) {
    let fixture = Fixture::read_from(&fixture_dir(), &format!("{arch}_sgd"));
    let Trained { losses, model, .. } =
        train(&fixture, initial_model(&fixture, DType::F32), DType::F32);
    let device = Default::default();
    let input: Tensor<B, 4> = deterministic_input(fixture.input_shape(), &device);
    let expected = fixture.expected("losses").unwrap();
    for (step, (ours, torch)) in losses.iter().zip(expected).enumerate() {
        let torch = *torch as f64;
        assert!(
            (ours - torch).abs() < 1e-4,
            "{arch} step {step}: loss {ours} vs torch {torch}"
        );
    }
    let logits: Vec<f32> = model
        .valid()
        .forward(input.inner())
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let expected = fixture.expected("eval_logits").unwrap();
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (index, (ours, torch)) in logits.iter().zip(expected).enumerate() {
        assert!(
            (ours - torch).abs() < 2e-4 * scale,
            "{arch} eval logit {index}: {ours} vs torch {torch}"
        );
    }
}

#[test]
fn resnet8_sgd_steps_match_pytorch() {
    check("resnet8");
}

#[test]
fn resnet8_sgd_steps_match_pytorch_in_f64() {
    check_f64("resnet8");
}

#[test]
fn wrn_16_1_sgd_steps_match_pytorch_in_f64() {
    check_f64("wrn_16_1");
}

#[test]
fn wrn_16_1_sgd_steps_match_pytorch() {
    check("wrn_16_1");
}
