//! The CRD-codebase baselines against the PyTorch references of
//! `tools/loss_baselines_reference.py` (fixtures by `tools/make_loss_fixtures.py`): each term,
//! the gradients with respect to the student's features, and CRD's memory banks after two steps.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use sskd_losses::{
    ActivationBoundary, Attention, BatchLayout, Correlation, CrdConfig, DistillInputs, Distiller,
    FactorTransfer, FeatureTerm, FitNet, Fsp, NetworkOutputs, Nst, ObjectiveWeights, Pkt, Rkd,
    Similarity, Vid, WithCeKd,
};
use sskd_models::import::{load_module_state_dict, StateDict};
use sskd_testing::{assert_close, values, Fixture};

type B = Autodiff<Flex>;

const TOLERANCE: f32 = 1e-5;

fn fixture_dir() -> PathBuf {
    sskd_testing::repo("tests/fixtures/baselines")
}

/// The student/teacher tensors of a fixture, student ones tracking gradients.
struct Case {
    fixture: Fixture,
    tracked: Vec<(String, Tensor<B, 4>)>,
    tracked_embedding: Option<Tensor<B, 2>>,
}

impl Case {
    fn read(name: &str) -> Self {
        Self {
            fixture: Fixture::read_from(&fixture_dir(), name),
            tracked: Vec::new(),
            tracked_embedding: None,
        }
    }

    fn tensor<const D: usize>(&self, key: &str) -> Option<Tensor<B, D>> {
        let shape = self.fixture.shape(key)?;
        let data = TensorData::new(self.fixture.expected(key)?.to_vec(), shape.to_vec());
        Some(Tensor::from_data(data, &Default::default()))
    }

    fn maps(&mut self, side: &str, kind: &str) -> Vec<Tensor<B, 4>> {
        (0..4)
            .filter_map(|i| {
                let key = format!("{side}_{kind}.{i}");
                let tensor = self.tensor::<4>(&key)?;
                Some(if side == "s" {
                    let tracked = tensor.require_grad();
                    self.tracked.push((key, tracked.clone()));
                    tracked
                } else {
                    tensor
                })
            })
            .collect()
    }

    fn network(&mut self, side: &str) -> NetworkOutputs<B> {
        let features = self.maps(side, "feat");
        let preact = self.maps(side, "preact");
        let mut embedding = self.tensor::<2>(&format!("{side}_emb"));
        if side == "s" {
            embedding = embedding.map(Tensor::require_grad);
            self.tracked_embedding = embedding.clone();
        }
        NetworkOutputs {
            logits: Tensor::zeros([4, 10], &Default::default()),
            embedding,
            features,
            preact_features: (!preact.is_empty()).then_some(preact),
            head: None,
        }
    }

    fn inputs(&mut self) -> DistillInputs<B> {
        let student = self.network("s");
        let teacher = self.network("t");
        let ints = |key: &str| {
            let shape = self.fixture.shape(key)?.to_vec();
            let values: Vec<i64> = self
                .fixture
                .expected(key)?
                .iter()
                .map(|&v| v as i64)
                .collect();
            Some(TensorData::new(values, shape))
        };
        DistillInputs {
            student,
            teacher,
            labels: Tensor::<B, 1, Int>::zeros([4], &Default::default()),
            sample_indices: ints("sample_indices")
                .map(|d| Tensor::from_data(d, &Default::default())),
            contrast_indices: ints("contrast_indices")
                .map(|d| Tensor::from_data(d, &Default::default())),
            ss_labels: None,
            layout: BatchLayout::Plain,
            epoch: 0,
        }
    }

    fn map_shapes(&self, side: &str) -> Vec<[usize; 3]> {
        (0..4)
            .filter_map(|i| {
                let shape = self
                    .fixture
                    .shape(&format!("{side}_feat.{i}"))
                    .or_else(|| self.fixture.shape(&format!("{side}_preact.{i}")))?;
                Some([shape[1], shape[2], shape[3]])
            })
            .collect()
    }

    fn module_state(&self) -> StateDict {
        let tensors = self
            .fixture
            .tensors
            .iter()
            .filter_map(|(key, values, shape)| {
                let key = key.strip_prefix("module.")?;
                Some((
                    key.to_string(),
                    TensorData::new(values.clone(), shape.clone()),
                ))
            })
            .collect();
        StateDict {
            path: PathBuf::from(format!("<fixture {}>", self.fixture.name)),
            tensors,
        }
    }

    fn check(&self, term: Tensor<B, 1>) {
        let name = &self.fixture.name;
        assert_close(
            &format!("{name} term"),
            &values(term.clone()),
            self.fixture.expected("expected.term").unwrap(),
            TOLERANCE,
        );
        let gradients = term.backward();
        for (key, tensor) in &self.tracked {
            if let Some(expected) = self.fixture.expected(&format!("grad.{key}")) {
                assert_close(
                    &format!("{name} grad {key}"),
                    &values(tensor.grad(&gradients).unwrap()),
                    expected,
                    TOLERANCE,
                );
            }
        }
        if let (Some(embedding), Some(expected)) =
            (&self.tracked_embedding, self.fixture.expected("grad.s_emb"))
        {
            assert_close(
                &format!("{name} grad s_emb"),
                &values(embedding.grad(&gradients).unwrap()),
                expected,
                TOLERANCE,
            );
        }
    }
}

/// Renames `prefix.{3j + offset}.leaf` keys of a PyTorch `Sequential` to `{j}`.
fn sequential_index(key: &str, prefix: &str) -> Option<(usize, usize, String)> {
    let rest = key.strip_prefix(prefix)?;
    let (index, leaf) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    Some((index / 3, index % 3, leaf.to_string()))
}

fn module_path(method: &str, key: &str) -> Option<String> {
    match method {
        "fitnet" => Some(format!("regressor.{key}")),
        "cc" | "crd" => Some(match key {
            "memory_v1" => "memory_student".to_string(),
            "memory_v2" => "memory_teacher".to_string(),
            _ => key.replace(".linear.", "."),
        }),
        "vid" => {
            let (layer, rest) = key.split_once('.')?;
            match rest.strip_prefix("regressor.") {
                Some(conv) => {
                    let (index, leaf) = conv.split_once('.')?;
                    Some(format!(
                        "layers.{layer}.conv{}.{leaf}",
                        index.parse::<usize>().ok()? / 2 + 1
                    ))
                }
                None => Some(format!("layers.{layer}.{rest}")),
            }
        }
        "ab" => Some(key.to_string()),
        "ft" => {
            if let Some((j, 0, leaf)) = sequential_index(key, "paraphraser.encoder.") {
                Some(format!("paraphraser.encoder.{j}.{leaf}"))
            } else if let Some((j, 0, leaf)) = sequential_index(key, "paraphraser.decoder.") {
                Some(format!("paraphraser.decoder.{j}.{leaf}"))
            } else {
                let (j, part, leaf) = sequential_index(key, "translator.encoder.")?;
                Some(format!(
                    "translator.{j}.{}.{leaf}",
                    ["conv", "bn"].get(part)?
                ))
            }
        }
        _ => None,
    }
}

fn load<M: burn::module::Module<B>>(case: &Case, method: &str, module: M) -> M {
    let state = case.module_state();
    let file_key = |path: &str| vec![path.to_string()];
    load_module_state_dict(
        module,
        state,
        method,
        |key| module_path(method, key),
        file_key,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.fixture.name))
}

fn run_module_free(name: &str, term: &dyn FeatureTerm<B>) {
    let mut case = Case::read(name);
    let inputs = case.inputs();
    let value = term.term(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    case.check(value);
}

#[test]
fn module_free_baselines_match_pytorch() {
    for name in ["at_same_size", "at_teacher_larger"] {
        run_module_free(name, &Attention::default());
    }
    for name in ["nst_same_size", "nst_teacher_larger"] {
        run_module_free(name, &Nst);
    }
    run_module_free("sp", &Similarity);
    run_module_free("pkt", &Pkt);
    run_module_free("rkd", &Rkd::default());
    run_module_free("fsp", &Fsp::default());
}

#[test]
fn baselines_with_modules_match_pytorch() {
    let device = Default::default();
    for name in [
        "fitnet_same_size",
        "fitnet_teacher_larger",
        "fitnet_student_larger",
    ] {
        let mut case = Case::read(name);
        let method = load(
            &case,
            "fitnet",
            FitNet::<B>::new(&case.map_shapes("s"), &case.map_shapes("t"), 2, &device).unwrap(),
        );
        let inputs = case.inputs();
        case.check(method.term(&inputs).unwrap());
    }
    let mut case = Case::read("vid");
    let method = load(
        &case,
        "vid",
        Vid::<B>::new(&case.map_shapes("s"), &case.map_shapes("t"), &device),
    );
    let inputs = case.inputs();
    case.check(method.term(&inputs).unwrap());

    let mut case = Case::read("cc");
    let method = load(&case, "cc", Correlation::<B>::new(32, 64, 128, &device));
    let inputs = case.inputs();
    case.check(method.term(&inputs).unwrap());

    let mut case = Case::read("ab");
    let method = load(
        &case,
        "ab",
        ActivationBoundary::<B>::new(&case.map_shapes("s"), &case.map_shapes("t"), &device)
            .unwrap(),
    );
    let inputs = case.inputs();
    case.check(method.term(&inputs).unwrap());

    let mut case = Case::read("ft");
    let method = load(&case, "ft", FactorTransfer::<B>::new(16, 64, &device));
    let inputs = case.inputs();
    case.check(method.term(&inputs).unwrap());
}

#[test]
fn crd_matches_pytorch_over_two_steps_with_its_memory_update() {
    let device = Default::default();
    let mut case = Case::read("crd_two_steps");
    let config = CrdConfig::new().with_feat_dim(16).with_nce_k(10);
    let method = load(&case, "crd", config.init_sized::<B>([32, 64], 48, &device));
    let first = case.inputs();
    let mut second = first.clone();
    second.student.embedding = first.student.embedding.clone().map(|e| e.mul_scalar(0.5));
    let total = method.term(&first).unwrap() + method.term(&second).unwrap();
    let name = "crd_two_steps";
    assert_close(
        &format!("{name} memory_v1"),
        &values(method.memory_student.value_sync()),
        case.fixture.expected("after.memory_v1").unwrap(),
        TOLERANCE,
    );
    assert_close(
        &format!("{name} memory_v2"),
        &values(method.memory_teacher.value_sync()),
        case.fixture.expected("after.memory_v2").unwrap(),
        TOLERANCE,
    );
    assert_close(
        &format!("{name} Z"),
        &values(method.normalizers.value_sync()),
        case.fixture.expected("after.normalizers").unwrap(),
        TOLERANCE,
    );
    case.check(total);
}

#[test]
fn baselines_combine_with_ce_and_kd() {
    let mut case = Case::read("at_same_size");
    let mut inputs = case.inputs();
    let logits = Tensor::<B, 2>::from_floats(
        [
            [1.0, 2.0, 0.0],
            [0.5, -1.0, 2.0],
            [0.0, 0.0, 1.0],
            [3.0, 1.0, 0.0],
        ],
        &Default::default(),
    );
    inputs.student.logits = logits.clone();
    inputs.teacher.logits = logits.clone().mul_scalar(2.0);
    inputs.labels = Tensor::from_ints([0, 2, 2, 1], &Default::default());
    let method = WithCeKd::new(
        Attention::default(),
        ObjectiveWeights::sskd_comparison(1000.0),
    )
    .unwrap();
    let terms = Distiller::loss(&method, &inputs).unwrap();
    let names: Vec<_> = terms.terms.iter().map(|t| (t.name, t.weight)).collect();
    assert_eq!(names, vec![("ce", 0.1), ("kd", 0.9), ("at", 1000.0)]);
    assert_close(
        "at term",
        &values(terms.get("at").unwrap().clone()),
        case.fixture.expected("expected.term").unwrap(),
        TOLERANCE,
    );
    case.tracked.clear();
}
