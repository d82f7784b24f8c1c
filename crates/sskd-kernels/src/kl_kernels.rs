//! The softened KL divergence of knowledge distillation on burn-flex's tensors:
//! `(1/R) Σ_i KL(softmax(t_i / T) ‖ softmax(s_i / T))` over the `R` rows of a teacher's and a
//! student's logits `[R, N]`, and its gradients, each in one pass over the rows.
//!
//! Composed of Burn's operations it is two divisions by `T`, two log-softmaxes (a maximum, a
//! subtraction, an exponential, a sum, a logarithm and another subtraction each), an
//! exponential, a subtraction, a product, a sum and a division, and about as many operations
//! again for its gradient: some twenty passes over `[64, 100]` logits, each a few microseconds
//! of dispatch and autodiff bookkeeping (KD at 1.04× PyTorch, docs/performance.md). Here a row
//! is one pass: `p = softmax(a)`, `q = softmax(b)` for `a = t / T` and `b = s / T` (one
//! exponential per logit), then `KL_i = Σ_j p_j · (log p_j − log q_j)` with
//! `log p_j − log q_j = a_j − b_j − (lse(a) − lse(b))`; the rows' terms are added in row order,
//! so the result does not depend on the thread count. The gradients read the probabilities the
//! forward pass kept, with no exponential. `f32` and `f64` only ([`supports`]).
//!
//! Gradients of the mean `L = (1/R) Σ_i KL_i`, with `p = softmax(a)`, `q = softmax(b)`:
//! `∂L/∂s_ij = (q_ij − p_ij) / (R·T)` and
//! `∂L/∂t_ij = p_ij · (log p_ij − log q_ij − KL_i) / (R·T)`.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;

use crate::conv_geometry::ConvFloat;
use crate::elementwise_kernels::same_shape;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{vec_by_chunks, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// Which logits a gradient is taken with respect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// The teacher's, the first argument.
    Teacher,
    /// The student's, the second argument.
    Student,
}

/// Per row of the saved forward pass: the teacher's probabilities `p` (`N`), the student's `q`
/// (`N`), `lse(a) − lse(b)` and the row's divergence `KL_i`.
fn saved_row_len(classes: usize) -> usize {
    2 * classes + 2
}

/// `softmax(logits / T)` into `probs`; returns `lse(logits / T)`.
fn softmax_row<T: ConvFloat>(logits: &[T], temperature: T, probs: &mut [T]) -> T {
    for (p, &z) in probs.iter_mut().zip(logits) {
        *p = z / temperature;
    }
    let max = probs.iter().copied().fold(T::neg_infinity(), T::max);
    let shift = match max.is_finite() {
        true => max,
        false => T::zero(),
    };
    let mut sum = T::zero();
    for p in probs.iter_mut() {
        *p = (*p - shift).exp();
        sum = sum + *p;
    }
    probs.iter_mut().for_each(|p| *p = *p / sum);
    shift + sum.ln()
}

/// `log p_j − log q_j = (t_j − s_j) / T − (lse(a) − lse(b))`.
#[inline]
fn log_ratio<T: ConvFloat>(t: T, s: T, temperature: T, lse_difference: T) -> T {
    t / temperature - s / temperature - lse_difference
}

/// One row of the saved forward pass ([`saved_row_len`]) from the row's logits.
fn divergence_row<T: ConvFloat>((teacher, student): (&[T], &[T]), temperature: T, saved: &mut [T]) {
    let classes = teacher.len();
    let (p, rest) = saved.split_at_mut(classes);
    let (q, stats) = rest.split_at_mut(classes);
    let lse_difference =
        softmax_row(teacher, temperature, p) - softmax_row(student, temperature, q);
    let mut divergence = T::zero();
    for ((&p, &t), &s) in p.iter().zip(teacher).zip(student) {
        divergence = divergence + p * log_ratio(t, s, temperature, lse_difference);
    }
    stats[0] = lse_difference;
    stats[1] = divergence;
}

/// The forward pass of [`kl_batchmean`]: the loss (`[1]`) and what its gradients read
/// (`[R, 2N + 2]`).
#[derive(Clone, Debug)]
pub struct KlForward {
    /// The mean divergence, `[1]`.
    pub loss: FlexTensor,
    /// Per row: the teacher's and the student's probabilities, `lse(t/T) − lse(s/T)` and the
    /// row's divergence.
    pub saved: FlexTensor,
}

fn forward_typed<T: ConvFloat + Element>(
    teacher: &FlexTensor,
    student: &FlexTensor,
    temperature: f64,
) -> KlForward {
    let [rows, classes] = dims(student);
    let (teacher, student) = (values::<T>(teacher), values::<T>(student));
    let (teacher, student) = (teacher.storage::<T>(), student.storage::<T>());
    let temperature = T::from(temperature).expect("the temperature is a float");
    let row_len = saved_row_len(classes);
    let parallel = rows * classes >= PARALLEL_ELEMENTS;
    let saved = vec_by_chunks(rows * row_len, row_len, parallel, |row, saved: &mut [T]| {
        let pair = (
            &teacher[row * classes..][..classes],
            &student[row * classes..][..classes],
        );
        divergence_row(pair, temperature, saved);
    });
    // The rows' divergences added in row order: the same sum on any number of threads.
    let mut total = -T::zero();
    for row in saved.chunks_exact(row_len) {
        total = total + row[row_len - 1];
    }
    let count = T::from(rows.max(1)).expect("a row count is a float");
    KlForward {
        loss: tensor_from(vec![total / count], vec![1]),
        saved: tensor_from(saved, vec![rows, row_len]),
    }
}

fn backward_typed<T: ConvFloat + Element>(
    (teacher, student): (&FlexTensor, &FlexTensor),
    saved: &FlexTensor,
    temperature: f64,
    grad: &FlexTensor,
    side: Logits,
) -> FlexTensor {
    let [rows, classes] = dims(student);
    let row_len = saved_row_len(classes);
    let (grad, saved) = (values::<T>(grad), values::<T>(saved));
    let saved = saved.storage::<T>();
    assert_eq!(
        saved.len(),
        rows * row_len,
        "kl_batchmean: a saved forward pass of other logits"
    );
    let temperature = T::from(temperature).expect("the temperature is a float");
    let count = T::from(rows.max(1)).expect("a row count is a float");
    let scale = grad.storage::<T>()[0] / (count * temperature);
    let parallel = rows * classes >= PARALLEL_ELEMENTS;
    let out = match side {
        Logits::Student => vec_by_chunks(rows * classes, classes, parallel, |row, out| {
            let (p, rest) = saved[row * row_len..][..row_len].split_at(classes);
            for ((o, &p), &q) in out.iter_mut().zip(p).zip(rest) {
                *o = (q - p) * scale;
            }
        }),
        Logits::Teacher => {
            let (teacher, student) = (values::<T>(teacher), values::<T>(student));
            let (teacher, student) = (teacher.storage::<T>(), student.storage::<T>());
            vec_by_chunks(rows * classes, classes, parallel, |row, out| {
                let saved_row = &saved[row * row_len..][..row_len];
                let (lse_difference, divergence) =
                    (saved_row[2 * classes], saved_row[2 * classes + 1]);
                let logits = teacher[row * classes..][..classes]
                    .iter()
                    .zip(&student[row * classes..][..classes]);
                for ((o, &p), (&t, &s)) in out.iter_mut().zip(&saved_row[..classes]).zip(logits) {
                    let ratio = log_ratio(t, s, temperature, lse_difference);
                    *o = p * (ratio - divergence) * scale;
                }
            })
        }
    };
    tensor_from(out, vec![rows, classes])
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "kl_batchmean")
}

/// `[rows, classes]` of a 2-D tensor.
///
/// # Panics
/// If the tensor is not 2-D.
fn dims(tensor: &FlexTensor) -> [usize; 2] {
    let shape = tensor.layout().shape();
    assert_eq!(shape.num_dims(), 2, "kl_batchmean: [rows, classes] logits");
    [shape[0], shape[1]]
}

/// `(1/R) Σ_i KL(softmax(teacher_i / T) ‖ softmax(student_i / T))` of `[R, N]` logits, as
/// `F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="sum") / R`: the loss
/// (`[1]`, 0 for no row) and what [`kl_batchmean_backward`] reads.
///
/// # Panics
/// If the logits are not 2-D, differ in shape or type, or are not `f32` or `f64`
/// ([`supports`]).
pub fn kl_batchmean(teacher: &FlexTensor, student: &FlexTensor, temperature: f64) -> KlForward {
    same_shape(teacher, student, "kl_batchmean");
    per_float!(
        "kl_batchmean",
        student.dtype(),
        forward_typed(teacher, student, temperature)
    )
}

/// The gradient of [`kl_batchmean`] with respect to the `side` logits, for the loss's gradient
/// `grad` (`[1]`), from the logits and the forward pass's `saved`: `[R, N]`.
///
/// # Panics
/// As [`kl_batchmean`], or if `saved` is not of these logits.
pub fn kl_batchmean_backward(
    (teacher, student): (&FlexTensor, &FlexTensor),
    saved: &FlexTensor,
    temperature: f64,
    grad: &FlexTensor,
    side: Logits,
) -> FlexTensor {
    same_shape(teacher, student, "kl_batchmean");
    per_float!(
        "kl_batchmean",
        student.dtype(),
        backward_typed((teacher, student), saved, temperature, grad, side)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::spread;

    fn tensor(data: Vec<f64>, shape: [usize; 2]) -> FlexTensor {
        tensor_from(data, shape.to_vec())
    }

    /// The loss and both gradients by their definitions, row by row, in `f64`.
    fn definition(t: &[f64], s: &[f64], [rows, n]: [usize; 2], temp: f64) -> [Vec<f64>; 3] {
        let softmax = |row: &[f64]| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v / temp));
            let exps: Vec<f64> = row.iter().map(|&v| (v / temp - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(|e| e / sum).collect::<Vec<_>>()
        };
        let (mut loss, mut dt, mut ds) = (0.0, vec![], vec![]);
        for i in 0..rows {
            let (p, q) = (softmax(&t[i * n..][..n]), softmax(&s[i * n..][..n]));
            let kl: f64 = (0..n).map(|j| p[j] * (p[j].ln() - q[j].ln())).sum();
            loss += kl / rows as f64;
            let scale = 1.0 / (rows as f64 * temp);
            dt.extend((0..n).map(|j| p[j] * (p[j].ln() - q[j].ln() - kl) * scale));
            ds.extend((0..n).map(|j| (q[j] - p[j]) * scale));
        }
        [vec![loss], dt, ds]
    }

    fn assert_close(what: &str, ours: &[f64], expected: &[f64]) {
        assert_eq!(ours.len(), expected.len(), "{what}");
        for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn loss_and_gradients_match_the_definitions_on_both_paths() {
        // Small rows on the calling thread, many rows in parallel; large logits (a shift that
        // a softmax without its maximum would overflow on).
        for (shape, temp, offset) in [([3, 5], 4.0, 0.0), ([700, 100], 1.0, 300.0)] {
            let len = shape[0] * shape[1];
            let t: Vec<f64> = spread(len, 1).iter().map(|v| v * 3.0 + offset).collect();
            let s: Vec<f64> = spread(len, 2).iter().map(|v| v * 2.0).collect();
            let [loss, dt, ds] = definition(&t, &s, shape, temp);
            let (tt, st) = (tensor(t, shape), tensor(s, shape));
            let ours = kl_batchmean(&tt, &st, temp);
            assert_close("loss", ours.loss.storage::<f64>(), &loss);
            let grad = tensor_from(vec![1.0], vec![1]);
            let backward = |side| kl_batchmean_backward((&tt, &st), &ours.saved, temp, &grad, side);
            assert_close(
                "teacher grad",
                backward(Logits::Teacher).storage::<f64>(),
                &dt,
            );
            assert_close(
                "student grad",
                backward(Logits::Student).storage::<f64>(),
                &ds,
            );
        }
    }

    #[test]
    fn equal_logits_diverge_by_nothing_and_no_rows_give_zero() {
        let logits = tensor(spread(12, 3), [3, 4]);
        let loss = |x: &FlexTensor| kl_batchmean(x, x, 2.0).loss.storage::<f64>()[0];
        assert_eq!(loss(&logits).abs(), 0.0);
        assert_eq!(loss(&tensor(vec![], [0, 4])).abs(), 0.0);
    }
}
