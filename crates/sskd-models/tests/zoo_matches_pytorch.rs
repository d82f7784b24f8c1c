//! Every architecture of the zoo against the PyTorch reference (`tools/make_model_fixtures.py`),
//! and weight import from the checkpoint layouts users have.

use std::path::Path;

use burn::backend::Flex;
use sskd_models::import::{
    load_state_dict, load_state_dict_with_head, load_weights, load_weights_with_head,
};
use sskd_models::{
    create_model, model_names, trainable_parameter_count, BackboneWithHead, ModelError, ModelOutput,
};
use sskd_testing::{assert_close, deterministic_input, fixture_dir, sample, values, Fixture};

type B = Flex;

/// Relative tolerance of every comparison: max |error| ≤ 1e-4 · max |reference|.
const TOLERANCE: f32 = 1e-4;

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".safetensors")?;
            (!stem.ends_with("_state_dict")).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

fn check_outputs(fixture: &Fixture, output: &ModelOutput<B>) {
    let name = &fixture.name;
    assert_close(
        &format!("{name} logits"),
        &values(output.logits.clone()),
        fixture.expected("logits").unwrap(),
        TOLERANCE,
    );
    assert_close(
        &format!("{name} embedding"),
        &values(output.embedding.clone()),
        fixture.expected("embedding").unwrap(),
        TOLERANCE,
    );
    let shapes = fixture.meta["feature_shapes"].as_array().unwrap();
    assert_eq!(
        output.features.len(),
        shapes.len(),
        "{name}: number of feature maps"
    );
    for (k, feature) in output.features.iter().enumerate() {
        let expected_shape: Vec<usize> = shapes[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            feature.dims().to_vec(),
            expected_shape,
            "{name}: shape of feat.{k}"
        );
        let expected = fixture.expected(&format!("feat.{k}")).unwrap();
        assert_close(
            &format!("{name} feat.{k}"),
            &sample(&values(feature.clone())),
            expected,
            TOLERANCE,
        );
    }
    let has_preact = fixture.meta["has_preact"].as_bool().unwrap();
    assert_eq!(
        output.preact_features.is_some(),
        has_preact,
        "{name}: preact defined"
    );
    for (k, preact) in output.preact_features.iter().flatten().enumerate() {
        let expected = fixture.expected(&format!("preact.{k}")).unwrap();
        assert_close(
            &format!("{name} preact.{k}"),
            &sample(&values(preact.clone())),
            expected,
            TOLERANCE,
        );
    }
}

#[test]
fn every_architecture_matches_pytorch() {
    let device = Default::default();
    let names = fixture_names();
    let mut covered: Vec<String> = Vec::new();
    for name in &names {
        let fixture = Fixture::read(name);
        let model = create_model::<B>(fixture.arch(), fixture.num_classes(), &device).unwrap();
        let model = load_state_dict(model, fixture.state_dict(""))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let output = model.forward(deterministic_input(fixture.input_shape(), &device));
        check_outputs(&fixture, &output);
        covered.push(fixture.arch().to_string());
    }
    for arch in model_names() {
        assert!(
            covered.iter().any(|c| c == arch),
            "no PyTorch fixture covers `{arch}`"
        );
    }
}

/// Trainable parameter counts of the reference PyTorch zoo (BN buffers excluded), at 100 classes (1000 for the
/// ImageNet ResNets).
#[test]
fn parameter_counts_match_the_spec() {
    let expected = [
        ("resnet8", 83_892),
        ("resnet14", 181_108),
        ("resnet20", 278_324),
        ("resnet32", 472_756),
        ("resnet44", 667_188),
        ("resnet56", 861_620),
        ("resnet110", 1_736_564),
        ("resnet8x4", 1_233_540),
        ("resnet32x4", 7_433_860),
        ("resnet14x05", 47_340),
        ("resnet20x05", 71_756),
        ("resnet20x0375", 41_194),
        ("wrn_16_1", 180_916),
        ("wrn_16_2", 703_284),
        ("wrn_40_1", 569_780),
        ("wrn_40_2", 2_255_156),
        ("vgg8", 3_965_028),
        ("vgg11", 9_277_284),
        ("vgg13", 9_462_180),
        ("vgg16", 14_774_436),
        ("vgg19", 20_086_692),
        ("MobileNetV2", 812_836),
        ("ShuffleV1", 949_258),
        ("ShuffleV2", 1_355_528),
        ("ResNet18", 11_220_132),
        ("ResNet34", 21_328_292),
        ("ResNet50", 23_705_252),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
    ];
    assert_eq!(
        expected.len(),
        model_names().len(),
        "every registered model has a count"
    );
    let device = Default::default();
    for (name, params) in expected {
        let classes = if ["resnet18", "resnet34", "resnet50"].contains(&name) {
            1000
        } else {
            100
        };
        let model = create_model::<B>(name, classes, &device).unwrap();
        assert_eq!(trainable_parameter_count(&model), params, "{name}");
    }
}

fn fixture_file(name: &str) -> std::path::PathBuf {
    fixture_dir().join(name)
}

#[test]
fn repdistiller_checkpoint_loads() {
    let device = Default::default();
    let fixture = Fixture::read("resnet8");
    let model = create_model::<B>("resnet8", 100, &device).unwrap();
    let model = load_weights(model, &fixture_file("resnet8_repdistiller.pth"), &device).unwrap();
    check_outputs(
        &fixture,
        &model.forward(deterministic_input(fixture.input_shape(), &device)),
    );
}

#[test]
fn safetensors_state_dict_loads() {
    let device = Default::default();
    let fixture = Fixture::read("resnet8");
    let model = create_model::<B>("resnet8", 100, &device).unwrap();
    let model = load_weights(
        model,
        &fixture_file("resnet8_state_dict.safetensors"),
        &device,
    )
    .unwrap();
    check_outputs(
        &fixture,
        &model.forward(deterministic_input(fixture.input_shape(), &device)),
    );
}

#[test]
fn sskd_teacher_with_head_loads_from_a_data_parallel_checkpoint() {
    let device = Default::default();
    let fixture = Fixture::read("wrn_16_1");
    let network =
        BackboneWithHead::new(create_model::<B>("wrn_16_1", 10, &device).unwrap(), &device);
    let network =
        load_weights_with_head(network, &fixture_file("wrn_16_1_sskd_teacher.pth"), &device)
            .unwrap();
    let (output, head) =
        network.forward(deterministic_input(fixture.input_shape(), &device), false);
    check_outputs(&fixture, &output);
    assert_close(
        "wrn_16_1 head",
        &values(head),
        fixture.expected("head").unwrap(),
        TOLERANCE,
    );

    // The same file gives the bare backbone too.
    let backbone = create_model::<B>("wrn_16_1", 10, &device).unwrap();
    let backbone = load_weights(
        backbone,
        &fixture_file("wrn_16_1_sskd_teacher.pth"),
        &device,
    )
    .unwrap();
    check_outputs(
        &fixture,
        &backbone.forward(deterministic_input(fixture.input_shape(), &device)),
    );
}

#[test]
fn head_state_dict_in_memory_loads() {
    let device = Default::default();
    let fixture = Fixture::read("wrn_16_1");
    // Backbone values are drawn under their bare keys (as the fixture script does) and stored
    // under SSKD's `backbone.` prefix; head values are drawn under `proj_head.` keys.
    let mut state = fixture.state_dict("");
    for (key, _) in state.tensors.iter_mut() {
        *key = format!("backbone.{key}");
    }
    let head_keys = vec![
        ("0.weight".to_string(), vec![64, 64]),
        ("0.bias".to_string(), vec![64]),
        ("2.weight".to_string(), vec![64, 64]),
        ("2.bias".to_string(), vec![64]),
    ];
    state.tensors.extend(sskd_testing::deterministic_state_dict(
        &head_keys,
        "proj_head.",
    ));
    let network =
        BackboneWithHead::new(create_model::<B>("wrn_16_1", 10, &device).unwrap(), &device);
    let network = load_state_dict_with_head(network, state).unwrap();
    let (_, head) = network.forward(deterministic_input(fixture.input_shape(), &device), true);
    assert_close(
        "wrn_16_1 head",
        &values(head),
        fixture.expected("head").unwrap(),
        TOLERANCE,
    );
}

fn load_error(arch: &str, classes: usize, file: &Path) -> ModelError {
    let device = Default::default();
    let model = create_model::<B>(arch, classes, &device).unwrap();
    load_weights(model, file, &device).expect_err("loading must fail")
}

#[test]
fn shape_mismatch_names_key_and_both_shapes() {
    let file = fixture_file("resnet8_repdistiller.pth");
    let message = load_error("resnet8x4", 100, &file).to_string();
    assert!(message.contains("resnet8_repdistiller.pth"), "{message}");
    assert!(
        message.contains("key `bn1.bias` has shape [16] in the file")
            && message.contains("expects [32]"),
        "{message}"
    );
    let message = load_error("resnet8", 10, &file).to_string();
    assert!(
        message.contains("key `fc.bias` has shape [100] in the file")
            && message.contains("expects [10]"),
        "{message}"
    );
}

#[test]
fn missing_and_unexpected_keys_are_errors() {
    let file = fixture_file("resnet8_repdistiller.pth");
    match load_error("resnet20", 100, &file) {
        ModelError::MissingKey { key, count, .. } => {
            // Named as the file would name it (PyTorch), not by the module path.
            assert!(key.starts_with("layer1.1."), "{key}");
            assert_eq!(
                count,
                2 * 3 * 10,
                "two more blocks per stage, ten tensors each"
            );
        }
        other => panic!("expected MissingKey, got {other}"),
    }
    assert!(matches!(
        load_error("vgg8", 100, &file),
        ModelError::UnexpectedKey { .. } | ModelError::ShapeMismatch { .. }
    ));
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("sskd-bad-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.pth");
    let bytes = std::fs::read(fixture_file("resnet8_repdistiller.pth")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    for file in [truncated.clone(), garbage.clone(), dir.join("absent.pth")] {
        let message = load_error("resnet8", 100, &file).to_string();
        assert!(
            message.contains(&*file.file_name().unwrap().to_string_lossy()),
            "{message}"
        );
    }
    let message = load_error("resnet8", 100, &dir.join("weights.h5")).to_string();
    assert!(message.contains("cannot tell the format"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The smallest input of every architecture is the one its reference PyTorch model takes
/// (`tools/make_min_input_fixture.py` ran them); below it the error names the minimum.
#[test]
fn the_smallest_input_is_the_one_pytorch_takes() {
    let path = fixture_dir().join("min_input_sides.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let sides: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        sides.len(),
        model_names().len(),
        "every architecture is in the fixture"
    );
    let device = Default::default();
    for (name, side) in sides {
        let side = side.as_u64().unwrap() as usize;
        let model = create_model::<B>(&name, 10, &device).unwrap();
        assert_eq!(model.min_input_side(), side, "{name}");
        assert!(model.check_input([side, side + 3]).is_ok(), "{name}");
        let output = model.forward(burn::tensor::Tensor::zeros([1, 3, side, side], &device));
        assert_eq!(output.logits.dims(), [1, 10], "{name}");
        if side > 1 {
            let message = model
                .check_input([side + 5, side - 1])
                .unwrap_err()
                .to_string();
            let minimum = format!("at least {side}×{side}, got {}×{}", side + 5, side - 1);
            assert!(message.contains(&minimum), "{name}: {message}");
        }
    }
}
