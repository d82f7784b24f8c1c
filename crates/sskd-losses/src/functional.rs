//! The numerical building blocks shared by the methods, each stable on ties, zero rows and
//! batches of one.

use burn::tensor::activation::log_softmax;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::LossError;

/// `tensor / divisor`, with the gradient `grad / divisor`: both as PyTorch computes them.
///
/// Burn 0.21's `div_scalar` takes its gradient as `grad · (1/divisor)` with the reciprocal
/// rounded to `f32`, which moves `f64` gradients by up to 6e-8 relative (`1 + 2⁻²⁵` for a
/// divisor of 12); a division by a one-element tensor of the same type keeps both exact.
///
/// # Shapes
/// - `tensor` and the output: any shape `[d_1, ..., d_D]`
pub fn div_scalar<B: Backend, const D: usize>(tensor: Tensor<B, D>, divisor: f64) -> Tensor<B, D> {
    let divisor = Tensor::full([1; D], divisor, (&tensor.device(), tensor.dtype()));
    tensor.div(divisor)
}

/// `KL(softmax(teacher/T) ‖ softmax(student/T))` summed over classes and divided by the number
/// of rows (PyTorch's `kl_div(..., reduction="batchmean")`), computed with log-softmax on both
/// sides. Zero rows give 0. Not multiplied by `T²`. One pass over the rows each way on the CPU
/// backend (`sskd_kernels::kl_batchmean`), Burn's operations elsewhere.
///
/// # Shapes
/// - `teacher_logits`, `student_logits`: `[rows, classes]`; output `[1]`
pub fn kl_batchmean<B: Backend>(
    teacher_logits: Tensor<B, 2>,
    student_logits: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let [rows, _] = student_logits.dims();
    if rows == 0 {
        return Tensor::zeros([1], (&student_logits.device(), student_logits.dtype()));
    }
    let pair = (teacher_logits.clone(), student_logits.clone());
    if let Some(loss) = sskd_kernels::kl_batchmean(pair.0, pair.1, temperature) {
        return loss;
    }
    kl_of_log_probs(
        log_softmax(div_scalar(teacher_logits, temperature), 1),
        log_softmax(div_scalar(student_logits, temperature), 1),
    )
}

/// `(1/rows) Σ_i KL(teacher_i ‖ student_i)` of rows of log-probabilities: `Σ exp(t)·(t − s)`
/// over every element, divided by the number of rows (by 1 for zero rows, giving 0).
///
/// # Shapes
/// - `teacher_log_probs`, `student_log_probs`: `[rows, n]`; output `[1]`
pub fn kl_of_log_probs<B: Backend>(
    teacher_log_probs: Tensor<B, 2>,
    student_log_probs: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [rows, _] = student_log_probs.dims();
    let teacher_probs = teacher_log_probs.clone().exp();
    let summed = (teacher_probs * (teacher_log_probs - student_log_probs)).sum();
    div_scalar(summed, rows.max(1) as f64)
}

/// Mean cross-entropy of `logits` against integer `targets`.
///
/// # Shapes
/// - `logits`: `[rows, classes]`, `targets`: `[rows]`; output `[1]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    let log_probs = log_softmax(logits, 1);
    log_probs.gather(1, targets.reshape([rows, 1])).mean().neg()
}

/// Row-normalises with the norm clamped at `eps`: `x / max(‖x‖, eps)` (PyTorch's
/// `cosine_similarity` normalisation; a zero row stays zero).
///
/// # Shapes
/// - input and output `[rows, d]`
pub fn normalize_rows<B: Backend>(rows: Tensor<B, 2>, eps: f64) -> Tensor<B, 2> {
    let norms = clamped_norm(rows.clone(), 1, eps);
    rows / norms
}

/// `max(‖x‖₂, eps)` along `dim` (kept as size 1), computed as `sqrt(max(Σx², eps²))`: the same
/// value, but a zero vector gets gradient 0 instead of NaN.
pub fn clamped_norm<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
    dim: usize,
    eps: f64,
) -> Tensor<B, D> {
    tensor
        .powf_scalar(2.0)
        .sum_dim(dim)
        .clamp_min(eps * eps)
        .sqrt()
}

/// The unit vectors between every pair of rows, `u[i, j] = (x_j − x_i) / max(‖x_j − x_i‖,
/// eps)`, as PyTorch's `F.normalize(x.unsqueeze(0) − x.unsqueeze(1), p=2, dim=2, eps=eps)`:
/// with feature `flex`, one pass on all cores on the CPU backend
/// (`sskd_kernels::unit_differences`), Burn's operations elsewhere.
///
/// # Shapes
/// - `rows`: `[b, d]`; output `[b, b, d]`
pub fn unit_differences<B: Backend>(rows: Tensor<B, 2>, eps: f64) -> Tensor<B, 3> {
    #[cfg(feature = "flex")]
    if let Some(units) = sskd_kernels::unit_differences(rows.clone(), eps) {
        return units;
    }
    let [batch, dim] = rows.dims();
    // Two repeated copies rather than `[1, b, d]` and `[b, 1, d]` broadcast: burn-flex 0.21
    // walks a two-sided broadcast element by element, about 18 times slower.
    let others = rows.clone().reshape([1, batch, dim]).repeat_dim(0, batch);
    let anchors = rows.reshape([batch, 1, dim]).repeat_dim(1, batch);
    let differences = others - anchors; // [i, j, d]
    let norms = clamped_norm(differences.clone(), 2, eps);
    differences / norms
}

/// Cosine similarity of every row of `queries` with every row of `keys`, as
/// The Gram matrix of each row set, `x · xᵀ` (`x [batch, rows, columns]` → `[batch, rows,
/// rows]`): with feature `flex`, one product per row set and a one-product gradient on the CPU
/// backend (`sskd_kernels::gram`), Burn's `matmul` elsewhere.
#[cfg(feature = "flex")]
pub fn gram<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    sskd_kernels::gram(x)
}

/// The Gram matrix of each row set, `x · xᵀ` (`x [batch, rows, columns]` → `[batch, rows,
/// rows]`).
#[cfg(not(feature = "flex"))]
pub fn gram<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    x.clone().matmul(x.swap_dims(1, 2))
}

/// The Gram matrix of a set of rows, `x · xᵀ` (`x [rows, columns]` → `[rows, rows]`); see
/// [`gram`].
pub fn gram_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, _] = x.dims();
    gram(x.unsqueeze::<3>()).reshape([rows, rows])
}

/// `F.cosine_similarity(q.unsqueeze(2), k.unsqueeze(2).transpose(0, 2), dim=1, eps=1e-8)`.
///
/// # Shapes
/// - `queries`: `[m, d]`, `keys`: `[n, d]`; output `[m, n]`
pub fn cosine_similarity_matrix<B: Backend>(
    queries: Tensor<B, 2>,
    keys: Tensor<B, 2>,
) -> Tensor<B, 2> {
    const EPS: f64 = 1e-8;
    normalize_rows(queries, EPS).matmul(normalize_rows(keys, EPS).transpose())
}

/// For each row, the number of entries strictly larger than the entry at the target column:
/// 0 when the row's arg-max is the target (ties count in the target's favour).
///
/// # Shapes
/// - `scores`: `[rows, columns]`, `targets`: `[rows]`; output `[rows]`
pub fn target_rank<B: Backend>(
    scores: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1, Int> {
    let [rows, _] = scores.dims();
    let target_scores = scores.clone().gather(1, targets.reshape([rows, 1]));
    scores
        .greater(target_scores)
        .int()
        .sum_dim(1)
        .reshape([rows])
}

/// SSKD's error-level ranking: keeps every row whose rank is 0 plus the
/// `floor(ratio · #wrong)` wrong rows of smallest rank (a stable sort breaks ties at the cut-off
/// by row order). Returns the kept row indices in ascending order.
pub fn select_by_rank(ranks: &[i64], ratio: f64) -> Vec<usize> {
    let wrong = ranks.iter().filter(|&&rank| rank != 0).count();
    let keep = ranks.len() - wrong + (wrong as f64 * ratio).floor() as usize;
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by_key(|&row| ranks[row]);
    let mut kept: Vec<usize> = order.into_iter().take(keep).collect();
    kept.sort_unstable();
    kept
}

/// The rows `indices` of `tensor`.
///
/// # Shapes
/// - `tensor`: `[rows, columns]`; output `[indices.len(), columns]`
pub fn take_rows<B: Backend>(tensor: Tensor<B, 2>, indices: &[usize]) -> Tensor<B, 2> {
    let device = tensor.device();
    let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let count = indices.len();
    tensor.select(
        0,
        Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [count]), &device),
    )
}

/// Reads an integer tensor back to the host.
pub fn to_host_ints<B: Backend>(tensor: Tensor<B, 1, Int>) -> Vec<i64> {
    tensor
        .into_data()
        .convert::<i64>()
        .to_vec()
        .expect("integer data converts to i64")
}

/// An error when `tensor` holds NaN or ±∞.
pub fn ensure_finite<B: Backend, const D: usize>(
    method: &'static str,
    input: &'static str,
    tensor: &Tensor<B, D>,
) -> Result<(), LossError> {
    let finite = tensor.clone().is_finite().all().into_scalar();
    if burn::tensor::ElementConversion::elem::<bool>(finite) {
        Ok(())
    } else {
        Err(LossError::NonFinite { method, input })
    }
}

/// An error when a label lies outside `0..classes`, naming the value, its row and the limit
/// (a gather with such a label would panic in the backend).
pub fn ensure_labels<B: Backend>(
    method: &'static str,
    labels: &Tensor<B, 1, Int>,
    classes: usize,
) -> Result<(), LossError> {
    let values = to_host_ints(labels.clone());
    match values
        .iter()
        .enumerate()
        .find(|(_, &label)| label < 0 || label >= classes as i64)
    {
        Some((row, label)) => Err(LossError::BadInput {
            method,
            message: format!("label {label} of row {row} is outside 0..{classes}"),
        }),
        None => Ok(()),
    }
}

/// The rows of image `i`'s unrotated copy (`4i`) and of its rotated copies (`4i + 1 … 4i + 3`,
/// in that order), from a [`BatchLayout::Rotations4`](crate::BatchLayout) batch.
///
/// # Shapes
/// - input `[4B, columns]`; outputs `[B, columns]` and `[3B, columns]` (row `a` of the second
///   comes from image `a div 3`)
pub fn split_rotations<B: Backend>(rows: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [count, columns] = rows.dims();
    let images = count / 4;
    let grouped = rows.reshape([images, 4, columns]);
    let normal = grouped
        .clone()
        .slice([0..images, 0..1, 0..columns])
        .reshape([images, columns]);
    let rotated = grouped
        .slice([0..images, 1..4, 0..columns])
        .reshape([3 * images, columns]);
    (normal, rotated)
}

/// Brings two feature maps to one spatial size the way the CRD codebase does: the larger is
/// adaptive-average-pooled down to the smaller's height (square output).
///
/// # Shapes
/// - `student`: `[b, c_s, h_s, w_s]`, `teacher`: `[b, c_t, h_t, w_t]`; outputs `[b, c, h, h]`
///   with `h = min(h_s, h_t)` (unchanged when the heights agree)
pub fn match_spatial<B: Backend>(
    student: Tensor<B, 4>,
    teacher: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let student_height = student.dims()[2];
    let teacher_height = teacher.dims()[2];
    match student_height.cmp(&teacher_height) {
        std::cmp::Ordering::Greater => (
            adaptive_avg_pool2d(student, [teacher_height, teacher_height]),
            teacher,
        ),
        std::cmp::Ordering::Less => (
            student,
            adaptive_avg_pool2d(teacher, [student_height, student_height]),
        ),
        std::cmp::Ordering::Equal => (student, teacher),
    }
}

/// The attention map of AT and FT: `normalize(mean_C(f^p))` flattened per sample (L2, eps
/// 1e-12 as `F.normalize`). With feature `flex`, `mean_C(f^p)` is one pass over the map each
/// way on the CPU backend (`sskd_kernels::channel_mean_of_powers`); Burn's operations
/// elsewhere.
///
/// # Shapes
/// - input `[b, c, h, w]`; output `[b, h·w]`
pub fn attention_map<B: Backend>(features: Tensor<B, 4>, p: f64) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    if let Some(means) = sskd_kernels::channel_mean_of_powers(features.clone(), p) {
        return normalize_rows(means, 1e-12);
    }
    normalize_rows(channel_mean(features.powf_scalar(p)), 1e-12)
}

/// The mean over channels at each position, flattened per sample, as `f.mean(1).view(b, -1)`.
///
/// Computed as a product with a row of ones (then divided by `c`) rather than `mean_dim(1)`:
/// the gradient of a reduction over the middle axis multiplies a `[b, 1, h·w]` gradient into a
/// `[b, c, h·w]` tensor, a broadcast over the middle axis that burn-flex 0.21 walks with a
/// scalar strided iterator (about 18 times slower than the same product without the broadcast,
/// the largest cost of AT's backward pass). The product's gradient is one outer product.
///
/// # Shapes
/// - input `[b, c, h, w]`; output `[b, h·w]`
pub fn channel_mean<B: Backend>(features: Tensor<B, 4>) -> Tensor<B, 2> {
    let [batch, channels, height, width] = features.dims();
    let ones = Tensor::<B, 3>::ones([1, 1, channels], &features.device()).cast(features.dtype());
    ones.matmul(features.reshape([batch, channels, height * width]))
        .div_scalar(channels as f64)
        .reshape([batch, height * width])
}

/// Mean squared distance, as `F.mse_loss`: with feature `flex`, one pass on all cores on the CPU
/// backend (`sskd_kernels::mse`), Burn's operations elsewhere.
///
/// # Shapes
/// - inputs of equal shape; output `[1]`
pub fn mse<B: Backend, const D: usize>(input: Tensor<B, D>, target: Tensor<B, D>) -> Tensor<B, 1> {
    #[cfg(feature = "flex")]
    if let Some(loss) = sskd_kernels::mse(input.clone(), target.clone()) {
        return loss;
    }
    (input - target).powf_scalar(2.0).mean()
}

/// Mean smooth-L1 (Huber, β = 1) distance, as `F.smooth_l1_loss`: with feature `flex`, one
/// pass on all cores on the CPU backend (`sskd_kernels::smooth_l1`), Burn's operations
/// elsewhere.
///
/// # Shapes
/// - inputs of equal shape; output `[1]`
pub fn smooth_l1<B: Backend, const D: usize>(
    input: Tensor<B, D>,
    target: Tensor<B, D>,
) -> Tensor<B, 1> {
    #[cfg(feature = "flex")]
    if let Some(loss) = sskd_kernels::smooth_l1(input.clone(), target.clone()) {
        return loss;
    }
    let difference = (input - target).abs();
    let quadratic = difference.clone().lower_elem(1.0);
    let loss = difference
        .clone()
        .powf_scalar(2.0)
        .mul_scalar(0.5)
        .mask_where(quadratic.bool_not(), difference.sub_scalar(0.5));
    loss.mean()
}

/// Flattens every dimension after the first. `[b, …]` → `[b, rest]`.
pub fn flatten_rows<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, 2> {
    let dims = tensor.dims();
    let rest: usize = dims[1..].iter().product();
    tensor.reshape([dims[0], rest])
}

/// An error unless the outputs hold the embedding.
pub fn embedding_of<B: Backend>(
    method: &'static str,
    outputs: &crate::NetworkOutputs<B>,
    which: &str,
) -> Result<Tensor<B, 2>, LossError> {
    outputs
        .embedding
        .clone()
        .ok_or_else(|| LossError::BadInput {
            method,
            message: format!("needs the {which}'s pooled embedding (feat[-1])"),
        })
}

/// The stage maps `feat[1:-1]` (every feature map after the stem), or an error.
pub fn stage_maps<B: Backend>(
    method: &'static str,
    outputs: &crate::NetworkOutputs<B>,
    which: &str,
) -> Result<Vec<Tensor<B, 4>>, LossError> {
    if outputs.features.len() < 2 {
        return Err(LossError::BadInput {
            method,
            message: format!(
                "needs the {which}'s feature maps (feat[1:-1]); got {}",
                outputs.features.len()
            ),
        });
    }
    Ok(outputs.features[1..].to_vec())
}

/// The zipped pairs of stage maps `(s_l, t_l)` of student and teacher, `l` over `feat[1:-1]`
/// (the shorter list wins), or an error naming `method` if either network lacks them.
pub fn stage_pairs<B: Backend>(
    method: &'static str,
    inputs: &crate::DistillInputs<B>,
) -> Result<impl Iterator<Item = (Tensor<B, 4>, Tensor<B, 4>)>, LossError> {
    let student = stage_maps(method, &inputs.student, "student")?;
    let teacher = stage_maps(method, &inputs.teacher, "teacher")?;
    Ok(student.into_iter().zip(teacher))
}

/// The sum of per-layer terms (`[1]` each); there is at least one.
pub fn sum_layers<B: Backend>(terms: impl Iterator<Item = Tensor<B, 1>>) -> Tensor<B, 1> {
    terms.reduce(|a, b| a + b).expect("at least one layer pair")
}

/// The last feature map `feat[-2]`, or an error.
pub fn last_map<B: Backend>(
    method: &'static str,
    outputs: &crate::NetworkOutputs<B>,
    which: &str,
) -> Result<Tensor<B, 4>, LossError> {
    outputs
        .features
        .last()
        .cloned()
        .ok_or_else(|| LossError::BadInput {
            method,
            message: format!("needs the {which}'s last feature map (feat[-2])"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn the_channel_mean_and_its_gradient_are_mean_dim_s() {
        type Ad = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let input = Tensor::<Ad, 4>::from_data(
            TensorData::new(
                (0..2 * 3 * 2 * 2)
                    .map(|i| (i * i % 7) as f32 - 2.5)
                    .collect(),
                [2, 3, 2, 2],
            ),
            &device,
        );
        let weights = Tensor::<Ad, 2>::from_data(
            TensorData::new((0..8).map(|i| i as f32 * 0.5 - 1.0).collect(), [2, 4]),
            &device,
        );
        let gradient = |reduce: &dyn Fn(Tensor<Ad, 4>) -> Tensor<Ad, 2>| {
            let tracked = input.clone().require_grad();
            let mean = reduce(tracked.clone());
            let grads = (mean.clone() * weights.clone()).sum().backward();
            (mean.into_data(), tracked.grad(&grads).unwrap().into_data())
        };
        let (ours, ours_grad) = gradient(&|x| channel_mean(x));
        let (expected, expected_grad) = gradient(&|x| x.mean_dim(1).reshape([2, 4]));
        ours.assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::absolute(1e-6));
        ours_grad.assert_approx_eq::<f32>(&expected_grad, burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn selection_keeps_correct_rows_and_least_wrong() {
        // Ranks: two correct rows, four wrong (1, 3, 1, 2); ratio 0.5 keeps 2 wrong: the two
        // rank-1 rows.
        assert_eq!(select_by_rank(&[0, 1, 3, 0, 1, 2], 0.5), vec![0, 1, 3, 4]);
        assert_eq!(select_by_rank(&[2, 1, 3], 1.0), vec![0, 1, 2]);
        assert_eq!(select_by_rank(&[2, 1, 3], 0.0), Vec::<usize>::new());
        // Tie at the cut-off: rows 1 and 2 both have rank 1, one slot; the earlier row wins.
        assert_eq!(select_by_rank(&[0, 1, 1, 4], 0.5), vec![0, 1]);
    }

    #[test]
    fn rank_counts_strictly_larger_entries() {
        let device = Default::default();
        let scores = Tensor::<Flex, 2>::from_floats([[1.0, 3.0, 2.0], [5.0, 5.0, 1.0]], &device);
        let targets = Tensor::<Flex, 1, Int>::from_ints([2, 1], &device);
        assert_eq!(to_host_ints(target_rank(scores, targets)), vec![1, 0]);
    }

    #[test]
    fn kl_of_identical_logits_is_zero_and_empty_is_zero() {
        let device = Default::default();
        let logits = Tensor::<Flex, 2>::from_floats([[1.0, -2.0, 0.5]], &device);
        let kl: f32 = kl_batchmean(logits.clone(), logits, 4.0).into_scalar();
        assert!(kl.abs() < 1e-7);
        let empty = Tensor::<Flex, 2>::zeros([0, 3], &device);
        let kl: f32 = kl_batchmean(empty.clone(), empty, 4.0).into_scalar();
        assert_eq!(kl, 0.0);
    }

    #[test]
    fn non_finite_inputs_are_reported() {
        let device = Default::default();
        let bad = Tensor::<Flex, 2>::from_floats([[1.0, f32::NAN]], &device);
        assert!(ensure_finite("kd", "student logits", &bad).is_err());
        let good = Tensor::<Flex, 2>::from_floats([[1.0, 2.0]], &device);
        assert!(ensure_finite("kd", "student logits", &good).is_ok());
        let labels =
            Tensor::<Flex, 1, Int>::from_data(TensorData::new(vec![2i64, 150], [2]), &device);
        let error = ensure_labels("kd", &labels, 100).unwrap_err().to_string();
        assert_eq!(error, "kd: label 150 of row 1 is outside 0..100");
        let labels = Tensor::<Flex, 1, Int>::from_data(TensorData::new(vec![-1i64], [1]), &device);
        assert!(ensure_labels("kd", &labels, 100).is_err());
        assert!(ensure_labels("kd", &labels.add_scalar(1), 100).is_ok());
    }
}
