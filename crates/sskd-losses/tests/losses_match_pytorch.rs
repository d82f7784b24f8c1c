//! Every loss against the PyTorch reference of `tools/make_loss_fixtures.py`: each term, the
//! weighted total, the selection counts and the gradients with respect to the student inputs.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;
use sskd_losses::{
    ss_head_loss, BatchLayout, DistillInputs, Distiller, DkdConfig, KdConfig, LossTerms,
    NetworkOutputs, SsKnowledge, SskdConfig,
};
use sskd_testing::{assert_close, values, Fixture};

type B = Autodiff<Flex>;

/// Relative tolerance of values and gradients (f32 against a float64 reference).
const TOLERANCE: f32 = 1e-5;

fn fixture_dir() -> PathBuf {
    sskd_testing::repo("tests/fixtures/losses")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".safetensors")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn tensor2(fixture: &Fixture, key: &str, grad: bool) -> Option<Tensor<B, 2>> {
    let shape = fixture.shape(key)?;
    let tensor = Tensor::<B, 2>::from_data(
        TensorData::new(fixture.expected(key)?.to_vec(), shape.to_vec()),
        &Default::default(),
    );
    Some(if grad { tensor.require_grad() } else { tensor })
}

fn labels(fixture: &Fixture) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = fixture
        .expected("labels")
        .unwrap()
        .iter()
        .map(|&v| v as i64)
        .collect();
    let count = values.len();
    Tensor::from_data(TensorData::new(values, [count]), &Default::default())
}

fn f64_field(config: &Value, field: &str) -> f64 {
    config[field]
        .as_f64()
        .unwrap_or_else(|| panic!("config field {field}"))
}

fn distiller(method: &str, config: &Value) -> Box<dyn Distiller<B>> {
    match method {
        "sskd" => Box::new(
            SskdConfig::new()
                .with_ce_weight(f64_field(config, "ce_weight"))
                .with_kd_weight(f64_field(config, "kd_weight"))
                .with_tf_weight(f64_field(config, "tf_weight"))
                .with_ss_weight(f64_field(config, "ss_weight"))
                .with_kd_temperature(f64_field(config, "kd_temperature"))
                .with_tf_temperature(f64_field(config, "tf_temperature"))
                .with_ss_temperature(f64_field(config, "ss_temperature"))
                .with_ratio_tf(f64_field(config, "ratio_tf"))
                .with_ratio_ss(f64_field(config, "ratio_ss"))
                .with_ss_knowledge(match config["ss_knowledge"].as_str() {
                    Some("Classification") => SsKnowledge::Classification,
                    _ => SsKnowledge::Contrastive,
                })
                .init()
                .unwrap(),
        ),
        "kd" => Box::new(
            KdConfig::new()
                .with_temperature(f64_field(config, "temperature"))
                .with_ce_weight(f64_field(config, "ce_weight"))
                .with_kd_weight(f64_field(config, "kd_weight"))
                .with_logit_standardization(config["logit_standardization"].as_bool().unwrap())
                .init()
                .unwrap(),
        ),
        "dkd" => Box::new(
            DkdConfig::new()
                .with_temperature(f64_field(config, "temperature"))
                .with_alpha(f64_field(config, "alpha"))
                .with_beta(f64_field(config, "beta"))
                .with_ce_weight(f64_field(config, "ce_weight"))
                .with_warmup_epochs(config["warmup_epochs"].as_u64().unwrap() as usize)
                .init()
                .unwrap(),
        ),
        other => panic!("no method {other}"),
    }
}

fn check_scalar(what: &str, actual: Tensor<B, 1>, expected: f32) {
    assert_close(what, &values(actual), &[expected], TOLERANCE);
}

fn check_terms(fixture: &Fixture, terms: &LossTerms<B>) {
    let name = &fixture.name;
    let weights = fixture.meta["weights"].as_object().unwrap();
    assert_eq!(terms.terms.len(), weights.len(), "{name}: number of terms");
    for term in &terms.terms {
        let expected = fixture
            .expected(&format!("expected.{}", term.name))
            .unwrap()[0];
        check_scalar(
            &format!("{name} {}", term.name),
            term.value.clone(),
            expected,
        );
        let weight = weights[term.name].as_f64().unwrap();
        assert!(
            (term.weight - weight).abs() < 1e-12,
            "{name}: weight of {}",
            term.name
        );
    }
    for (count, expected) in fixture.meta["counts"].as_object().unwrap() {
        assert_eq!(
            terms.count(count),
            Some(expected.as_u64().unwrap() as usize),
            "{name}: {count}"
        );
    }
}

#[test]
fn every_loss_matches_pytorch() {
    let names = fixture_names();
    assert!(names.len() >= 12, "fixtures missing: {names:?}");
    for name in names {
        let fixture = Fixture::read_from(&fixture_dir(), &name);
        let method = fixture.meta["method"].as_str().unwrap().to_string();
        if method == "ss_head" {
            let head = tensor2(&fixture, "s_head", true).unwrap();
            let (loss, correct) = ss_head_loss(head.clone()).unwrap();
            check_scalar(
                &format!("{name} head"),
                loss.clone(),
                fixture.expected("expected.head").unwrap()[0],
            );
            assert_eq!(
                correct as u64,
                fixture.meta["counts"]["correct"].as_u64().unwrap(),
                "{name}: correct"
            );
            let grad = head.grad(&loss.backward()).unwrap();
            assert_close(
                &format!("{name} grad"),
                &values(grad),
                fixture.expected("grad.s_head").unwrap(),
                TOLERANCE,
            );
            continue;
        }
        let student_logits = tensor2(&fixture, "s_logits", true).unwrap();
        let student_head = tensor2(&fixture, "s_head", true);
        let mut student = NetworkOutputs::from_logits(student_logits.clone());
        student.head = student_head.clone();
        let mut teacher =
            NetworkOutputs::from_logits(tensor2(&fixture, "t_logits", false).unwrap());
        teacher.head = tensor2(&fixture, "t_head", false);
        let method_impl = distiller(&method, &fixture.meta["config"]);
        let inputs = DistillInputs {
            student,
            teacher,
            labels: labels(&fixture),
            sample_indices: None,
            contrast_indices: None,
            ss_labels: None,
            layout: if method_impl.needs().rotations {
                BatchLayout::Rotations4
            } else {
                BatchLayout::Plain
            },
            epoch: fixture.meta["config"]["epoch"].as_u64().unwrap_or(0) as usize,
        };
        let terms = method_impl
            .loss(&inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_terms(&fixture, &terms);
        let total = terms.total();
        check_scalar(
            &format!("{name} total"),
            total.clone(),
            fixture.expected("expected.total").unwrap()[0],
        );
        let gradients = total.backward();
        let logits_grad = student_logits.grad(&gradients).unwrap();
        assert_close(
            &format!("{name} grad s_logits"),
            &values(logits_grad),
            fixture.expected("grad.s_logits").unwrap(),
            TOLERANCE,
        );
        if let Some(head) = student_head {
            let head_grad = head.grad(&gradients).unwrap();
            assert_close(
                &format!("{name} grad s_head"),
                &values(head_grad),
                fixture.expected("grad.s_head").unwrap(),
                TOLERANCE,
            );
        }
    }
}

#[test]
fn non_finite_misshapen_and_out_of_range_inputs_are_errors() {
    let device = Default::default();
    let method = SskdConfig::new().init().unwrap();
    let logits = Tensor::<B, 2>::zeros([8, 5], &device);
    let head = Tensor::<B, 2>::zeros([8, 4], &device);
    let inputs = |student_logits: Tensor<B, 2>, labels: usize| DistillInputs {
        student: NetworkOutputs {
            head: Some(head.clone()),
            ..NetworkOutputs::from_logits(student_logits)
        },
        teacher: NetworkOutputs {
            head: Some(head.clone()),
            ..NetworkOutputs::from_logits(logits.clone())
        },
        labels: Tensor::<B, 1, Int>::zeros([labels], &device),
        sample_indices: None,
        contrast_indices: None,
        ss_labels: None,
        layout: BatchLayout::Rotations4,
        epoch: 0,
    };
    let nan = Tensor::<B, 2>::from_data(TensorData::new(vec![f32::NAN; 40], [8, 5]), &device);
    let message = method.loss(&inputs(nan, 2)).unwrap_err().to_string();
    assert!(
        message.contains("student logits") && message.contains("NaN"),
        "{message}"
    );
    let message = method
        .loss(&inputs(logits.clone(), 3))
        .unwrap_err()
        .to_string();
    assert!(message.contains("4B rows"), "{message}");
    let mut out_of_range = inputs(logits.clone(), 2);
    out_of_range.labels =
        Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64, 150], [2]), &device);
    let message = method.loss(&out_of_range).unwrap_err().to_string();
    assert_eq!(message, "sskd: label 150 of row 1 is outside 0..5");
    out_of_range.layout = BatchLayout::Plain;
    out_of_range.student.logits = logits.clone().slice([0..2, 0..5]);
    out_of_range.teacher.logits = logits.clone().slice([0..2, 0..5]);
    let kd = KdConfig::new().init().unwrap();
    let message = kd.loss(&out_of_range).unwrap_err().to_string();
    assert_eq!(message, "kd: label 150 of row 1 is outside 0..5");
    assert!(SskdConfig::new().with_ratio_ss(1.5).init().is_err());
    assert!(KdConfig::new().with_temperature(0.0).init().is_err());
}

#[test]
fn supplementary_weights_are_one_call_away() {
    let config = SskdConfig::supplementary();
    assert_eq!(
        (
            config.ss_weight,
            config.tf_weight,
            config.ce_weight,
            config.kd_weight
        ),
        (3.0, 5.0, 0.1, 0.9)
    );
}
