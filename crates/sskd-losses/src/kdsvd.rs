//! KDSVD (Lee, Kim & Song, ECCV 2018: self-supervised knowledge distillation using singular
//! value decomposition), as RepDistiller's `distiller_zoo/KDSVD.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use crate::functional::{div_scalar, ensure_finite, gram, stage_pairs, sum_layers};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// KDSVD on the stage maps `feat[1:-1]` (student and teacher with equal channels at each). Each
/// map `[B, C, H, W]` is read as `X = [B, HW, C]`; with the right singular vectors of `X`:
/// - the teacher keeps its top `k`, each scaled by its singular value normalised over the `k`
///   (1 for `k = 1`);
/// - the student takes its top `k + 3`, and for each teacher vector the one with the largest
///   `|cos|` to it, signed to agree with it, scaled like the teacher's;
/// - between consecutive layers, `rbf(v, w) = exp(−(v_a − w_b)²/8)` over all channel pairs
///   `(a, b)`, and the term is `Σ_layers Σ (rbf_s − rbf_t)² / B`.
///
/// The gradient is that of the singular vectors (the eigenvector derivative of `XᵀX`, as
/// PyTorch's SVD backward), from a symmetric eigendecomposition of `XᵀX` in float64.
///
/// **Signs.** A singular vector's sign is arbitrary, and the term depends on the relative sign
/// of the teacher's vectors at consecutive layers: RepDistiller's value follows whatever sign
/// LAPACK returns. Here each teacher vector is signed so that its largest-magnitude entry is
/// positive, which makes the term a function of the features; `tools/` applies the same rule to
/// PyTorch's SVD. RepDistiller gives KDSVD no published β; the registry uses 1.
#[derive(Module, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kdsvd {
    /// Teacher singular vectors per layer `k` (the student searches its top `k + 3`).
    pub k: usize,
}

impl Default for Kdsvd {
    /// RepDistiller's `KDSVD(k=1)`.
    fn default() -> Self {
        Self { k: 1 }
    }
}

/// Eigenvalues (descending) and eigenvectors of one sample's `XᵀX`.
struct Eigen {
    values: Vec<f64>,
    /// `vectors[i]` is the unit eigenvector of `values[i]`, length `C`.
    vectors: Vec<Vec<f64>>,
}

/// The eigendecomposition of each `[C, C]` block of `grams` (`[B·C·C]`, row-major).
fn decompose(grams: &[f64], channels: usize) -> Vec<Eigen> {
    grams
        .chunks(channels * channels)
        .map(|gram| {
            let eigen = SymmetricEigen::new(DMatrix::from_row_slice(channels, channels, gram));
            let mut order: Vec<usize> = (0..channels).collect();
            order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
            Eigen {
                values: order.iter().map(|&i| eigen.eigenvalues[i]).collect(),
                vectors: order
                    .iter()
                    .map(|&i| eigen.eigenvectors.column(i).iter().copied().collect())
                    .collect(),
            }
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `F.normalize(σ[:k])` of eigenvalues `λ = σ²`.
fn singular_value_scales(values: &[f64], k: usize) -> Vec<f64> {
    let singular: Vec<f64> = values[..k].iter().map(|l| l.max(0.0).sqrt()).collect();
    let norm = dot(&singular, &singular).sqrt().max(1e-12);
    singular.iter().map(|s| s / norm).collect()
}

/// The teacher's top `k` vectors, signed by their largest-magnitude entry.
fn teacher_vectors(eigen: &Eigen, k: usize) -> Vec<Vec<f64>> {
    eigen.vectors[..k]
        .iter()
        .map(|vector| {
            let largest =
                vector
                    .iter()
                    .copied()
                    .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if largest < 0.0 { -1.0 } else { 1.0 };
            vector.iter().map(|x| x * sign).collect()
        })
        .collect()
}

/// `P = Σ_{i≠j} v_i v_iᵀ / (λ_j − λ_i)` (row-major `[C, C]`): `dv_j = P · dG · v_j`.
fn derivative_map(eigen: &Eigen, j: usize) -> Vec<f64> {
    let channels = eigen.values.len();
    let mut map = vec![0.0; channels * channels];
    for (i, vector) in eigen.vectors.iter().enumerate() {
        let gap = eigen.values[j] - eigen.values[i];
        if i == j || gap == 0.0 {
            continue;
        }
        for (row, a) in vector.iter().enumerate() {
            let scaled = a / gap;
            for (column, b) in vector.iter().enumerate() {
                map[row * channels + column] += scaled * b;
            }
        }
    }
    map
}

/// One layer's vectors: the teacher's (constants) and the student's (with their gradient), each
/// `[B, C, k]`, scaled by the teacher's normalised singular values.
fn layer_vectors<B: Backend>(
    student: Tensor<B, 4>,
    teacher: Tensor<B, 4>,
    k: usize,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [batch, channels, _, _] = student.dims();
    let (device, dtype) = (student.device(), student.dtype());
    let gram = |map: Tensor<B, 4>| {
        let [batch, channels, height, width] = map.dims();
        let rows = map.reshape([batch, channels, height * width]);
        gram(rows)
    };
    let host = |tensor: Tensor<B, 3>| -> Vec<f64> {
        tensor
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .expect("float data")
    };
    let student_gram = gram(student);
    let teacher_eigen = decompose(&host(gram(teacher)), channels);
    let student_eigen = decompose(&host(student_gram.clone().detach()), channels);
    let candidates = (k + 3).min(channels);
    let constant = |values: Vec<f64>, shape: [usize; 3]| {
        Tensor::<B, 3>::from_data(TensorData::new(values, shape), &device).cast(dtype)
    };
    let mut teacher_rows = Vec::with_capacity(batch * channels * k);
    let (mut values, mut maps, mut anchors) = (Vec::new(), Vec::new(), Vec::new());
    for (t, s) in teacher_eigen.iter().zip(&student_eigen) {
        let scales = singular_value_scales(&t.values, k);
        let vectors = teacher_vectors(t, k);
        for q in 0..k {
            let cosines: Vec<f64> = s.vectors[..candidates]
                .iter()
                .map(|v| dot(v, &vectors[q]))
                .collect();
            let j = (0..candidates)
                .max_by(|&a, &b| cosines[a].abs().total_cmp(&cosines[b].abs()))
                .expect("at least one candidate");
            let factor = cosines[j].signum() * scales[q];
            values.extend(s.vectors[j].iter().map(|x| x * factor));
            maps.extend(derivative_map(s, j).into_iter().map(|x| x * factor));
            anchors.extend(s.vectors[j].iter().copied());
        }
        // `[C, k]` row-major from `k` columns.
        let entry = |row: usize, q: usize| vectors[q][row] * scales[q];
        teacher_rows.extend((0..channels).flat_map(|row| (0..k).map(move |q| entry(row, q))));
    }
    // Student: value `v_j·factor`, gradient `factor · P_j · dG · v_j`, one column per q.
    let values = constant(values, [batch * k, channels, 1]);
    let maps = constant(maps, [batch * k, channels, channels]);
    let anchors = constant(anchors, [batch * k, channels, 1]);
    let moved = student_gram.clone() - student_gram.detach(); // dG: zero, with dG's gradient
    let moved = moved
        .reshape([batch, 1, channels, channels])
        .repeat_dim(1, k)
        .reshape([batch * k, channels, channels]);
    let student_vectors = values + maps.matmul(moved.matmul(anchors));
    let student_vectors = student_vectors
        .reshape([batch, k, channels])
        .swap_dims(1, 2);
    let teacher_vectors = constant(teacher_rows, [batch, channels, k]);
    (student_vectors, teacher_vectors)
}

/// `exp(−(v_a − w_b)²/8)` for all channel pairs. `[B, C, k]`, `[B, C', k]` → `[B, C, C', k]`.
fn rbf<B: Backend>(vectors: Tensor<B, 3>, previous: Tensor<B, 3>) -> Tensor<B, 4> {
    let [batch, channels, k] = vectors.dims();
    let previous_channels = previous.dims()[1];
    let a = vectors.reshape([batch, channels, 1, k]);
    let b = previous.reshape([batch, 1, previous_channels, k]);
    (a - b).powf_scalar(2.0).div_scalar(-8.0).exp()
}

impl<B: Backend> FeatureTerm<B> for Kdsvd {
    fn name(&self) -> &'static str {
        "kdsvd"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        LossError::require_positive("kdsvd", "k", self.k as f64)?;
        let mut layers = Vec::new();
        for (student, teacher) in stage_pairs("kdsvd", inputs)? {
            // A decomposition of NaN never converges: refuse it first.
            ensure_finite("kdsvd", "student feature maps", &student)?;
            ensure_finite("kdsvd", "teacher feature maps", &teacher)?;
            let (s, t) = (student.dims(), teacher.dims());
            if self.k > s[1] {
                return Err(LossError::BadInput {
                    method: "kdsvd",
                    message: format!(
                        "k = {} singular vectors of maps with {} channels",
                        self.k, s[1]
                    ),
                });
            }
            if s[..2] != t[..2] {
                return Err(LossError::BadInput {
                    method: "kdsvd",
                    message: format!(
                        "needs equal channel counts at every stage (it compares singular \
                         vectors over channels), got student {s:?} and teacher {t:?}"
                    ),
                });
            }
            layers.push(layer_vectors(student, teacher, self.k));
        }
        let batch = inputs.labels.dims()[0] as f64;
        let pairs = layers.windows(2).map(|pair| {
            let (previous, current) = (&pair[0], &pair[1]);
            let student = rbf(current.0.clone(), previous.0.clone());
            let teacher = rbf(current.1.clone(), previous.1.clone());
            div_scalar((student - teacher).powf_scalar(2.0).sum(), batch)
        });
        Ok(sum_layers(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchLayout, NetworkOutputs};
    use burn::backend::Flex;
    use burn::tensor::Int;

    fn inputs(value: f32) -> DistillInputs<Flex> {
        let device = Default::default();
        let maps = |seed: f32| {
            (0..3)
                .map(|i| {
                    Tensor::<Flex, 1, Int>::arange(0..2 * 4 * 16, &device)
                        .float()
                        .mul_scalar(seed + i as f32)
                        .sin()
                        .reshape([2, 4, 4, 4])
                })
                .collect::<Vec<_>>()
        };
        let network = |seed: f32| NetworkOutputs {
            features: maps(seed),
            ..NetworkOutputs::from_logits(Tensor::zeros([2, 3], &device))
        };
        let mut student = network(value);
        student.features[2] = student.features[2].clone().mul_scalar(value);
        DistillInputs {
            student,
            teacher: network(0.7),
            labels: Tensor::<Flex, 1, Int>::from_ints([0, 1], &device),
            sample_indices: None,
            contrast_indices: None,
            ss_labels: None,
            layout: BatchLayout::Plain,
            epoch: 0,
        }
    }

    #[test]
    fn nan_maps_and_bad_k_are_errors_not_hangs() {
        let term = Kdsvd::default().term(&inputs(0.3)).unwrap().into_scalar();
        assert!(term.is_finite() && term >= 0.0, "{term}");
        let error = Kdsvd::default()
            .term(&inputs(f32::NAN))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("NaN") && error.contains("student"),
            "{error}"
        );
        for k in [0, 5] {
            let error = Kdsvd { k }.term(&inputs(0.3)).unwrap_err().to_string();
            assert!(error.contains('k'), "{error}");
        }
    }
}
