//! Whole training steps against PyTorch (`tools/make_train_step_fixtures.py`): three steps of
//! train-mode forward, cross-entropy, backward and `torch.optim.SGD(0.05, momentum 0.9, weight
//! decay 5e-4)` from the same weights give the same losses, and the same eval-mode logits
//! afterwards (every parameter and every batch-norm running statistic enters those).

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor};
use common::{deterministic_input, Fixture};
use sskd::losses::functional::cross_entropy;
use sskd::models::create_model;
use sskd::models::import::load_state_dict;
use sskd::train::sgd;

type B = Autodiff<Flex>;

fn check(arch: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/training");
    let fixture = Fixture::read_from(&dir, &format!("{arch}_sgd"));
    let device = Default::default();
    let model = create_model::<B>(arch, fixture.num_classes(), &device).unwrap();
    let mut model = load_state_dict(model, fixture.state_dict("")).unwrap();
    let input: Tensor<B, 4> = deterministic_input(fixture.input_shape(), &device);
    let labels = Tensor::<B, 1, Int>::arange(0..8, &device);
    let mut optimizer = sgd(0.9, 5e-4).init();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let loss = cross_entropy(model.forward(input.clone()).logits, labels.clone());
        losses.push(loss.clone().into_scalar());
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.05, model, gradients);
    }
    let expected = fixture.expected("losses").unwrap();
    for (step, (ours, torch)) in losses.iter().zip(expected).enumerate() {
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

/// Open: from the second step on, wrn_16_1's losses drift from PyTorch's (1e-4 by step 3).
/// The first step's loss matches to 1e-7, but some gradients of the first backward differ by
/// 0.5–2.6 % (first at `block3.layer.1.bn1.bias`, then every layer below), identically on
/// the flex and ndarray backends, while PyTorch's own float32 run matches its float64 run to
/// 1e-8 and resnet8 (above) matches exactly. See docs/training.md, "Known issues".
#[test]
#[ignore = "open gradient discrepancy of the WRN family, docs/training.md"]
fn wrn_16_1_sgd_steps_match_pytorch() {
    check("wrn_16_1");
}
