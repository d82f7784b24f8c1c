//! Gram matrices `G_b = X_b · X_bᵀ` of a batch of row sets, and their gradient, on burn-flex's
//! tensors (gemm's micro-kernels, batches on all cores).
//!
//! Burn composes a Gram matrix as `x.matmul(x.transpose())`: `x` enters the graph twice, and
//! the gradient of the transposed operand comes back as a strided view that burn-flex 0.21 adds
//! into `x`'s gradient element by element on one thread (24 % of the similarity-preserving
//! loss's time, docs/losses.md). The gradient of a Gram matrix needs one product instead:
//! `dX_b = (Ḡ_b + Ḡ_bᵀ) · X_b`. `f32` and `f64` only ([`supports`]).

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;

use crate::conv_geometry::{thread_count, ConvFloat};
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::gemm_product::{gemm, gemm_nt, MatRef};
use crate::parallel_chunks::{for_each_chunk, zeroed_vec};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// `[batch, rows, columns]` of a rank-3 tensor.
fn sizes(x: &FlexTensor) -> [usize; 3] {
    let dims = x.layout().shape().to_vec();
    assert_eq!(
        dims.len(),
        3,
        "gram: needs [batch, rows, columns], got {dims:?}"
    );
    [dims[0], dims[1], dims[2]]
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "gram")
}

/// Runs `per_batch(b, out_b, parallelism)` over the `batch` blocks of `out`: the batches on
/// separate threads, each product single-threaded, when there are enough of them, else one
/// after the other with the products on all threads (`parallelism` says which).
fn for_each_batch<T: ConvFloat>(
    out: &mut [T],
    batch: usize,
    per_batch: impl Fn(usize, &mut [T], gemm::Parallelism) + Sync + Send,
) {
    let block = out.len() / batch.max(1);
    let batches_in_parallel = batch >= thread_count();
    let parallelism = match batches_in_parallel {
        true => gemm::Parallelism::None,
        false => gemm::Parallelism::Rayon(0),
    };
    for_each_chunk(out, block, batches_in_parallel, |b, out_b| {
        per_batch(b, out_b, parallelism)
    });
}

fn forward_typed<T: ConvFloat + Element>(x: &FlexTensor) -> FlexTensor {
    let [batch, rows, columns] = sizes(x);
    let x = values::<T>(x);
    let data = x.storage::<T>();
    let mut gram = zeroed_vec::<T>(batch * rows * rows);
    if columns > 0 {
        for_each_batch(&mut gram, batch, |b, gram_b, parallelism| {
            let x_b = &data[b * rows * columns..][..rows * columns];
            gemm_nt(gram_b, (rows, rows, columns), x_b, x_b, false, parallelism);
        });
    }
    tensor_from(gram, vec![batch, rows, rows])
}

fn backward_typed<T: ConvFloat + Element>(x: &FlexTensor, gram_grad: &FlexTensor) -> FlexTensor {
    let [batch, rows, columns] = sizes(x);
    let (x, gram_grad) = (values::<T>(x), values::<T>(gram_grad));
    let (data, gram_grad) = (x.storage::<T>(), gram_grad.storage::<T>());
    assert_eq!(
        gram_grad.len(),
        batch * rows * rows,
        "gram: gradient of another shape"
    );
    let mut input_grad = zeroed_vec::<T>(batch * rows * columns);
    if rows > 0 {
        for_each_batch(&mut input_grad, batch, |b, grad_b, parallelism| {
            let g = &gram_grad[b * rows * rows..][..rows * rows];
            // Ḡ + Ḡᵀ, the gradient of both factors at once.
            let mut symmetric = g.to_vec();
            for (i, row) in symmetric.chunks_exact_mut(rows).enumerate() {
                for (j, value) in row.iter_mut().enumerate() {
                    *value = *value + g[j * rows + i];
                }
            }
            let x_b = &data[b * rows * columns..][..rows * columns];
            gemm(
                grad_b,
                (rows, columns, rows),
                MatRef::row_major(&symmetric, rows, rows),
                MatRef::row_major(x_b, rows, columns),
                false,
                parallelism,
            );
        });
    }
    tensor_from(input_grad, vec![batch, rows, columns])
}

/// The Gram matrices `G [batch, rows, rows]` of `x [batch, rows, columns]`:
/// `G[b, i, j] = Σ_k x[b, i, k] · x[b, j, k]`.
///
/// # Panics
/// If `x` is not rank 3, or not `f32` or `f64` ([`supports`]).
pub fn gram(x: &FlexTensor) -> FlexTensor {
    per_float!("gram", x.dtype(), forward_typed(x))
}

/// The gradient of [`gram`] with respect to `x`: `(Ḡ_b + Ḡ_bᵀ) · x_b` for each batch `b`.
///
/// # Panics
/// As [`gram`], or if `gram_grad` is not `[batch, rows, rows]`.
pub fn gram_backward(x: &FlexTensor, gram_grad: &FlexTensor) -> FlexTensor {
    per_float!("gram", x.dtype(), backward_typed(x, gram_grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(data: Vec<f64>, shape: [usize; 3]) -> FlexTensor {
        tensor_from(data, shape.to_vec())
    }

    use crate::test_values::spread as values;

    /// `G` and `dX` by their defining sums, in `f64`.
    fn naive(x: &[f64], g_bar: &[f64], [batch, rows, columns]: [usize; 3]) -> (Vec<f64>, Vec<f64>) {
        let at = |b: usize, i: usize, k: usize| x[(b * rows + i) * columns + k];
        let bar = |b: usize, i: usize, j: usize| g_bar[(b * rows + i) * rows + j];
        let mut gram = vec![0.0; batch * rows * rows];
        let mut grad = vec![0.0; batch * rows * columns];
        for b in 0..batch {
            for i in 0..rows {
                for j in 0..rows {
                    gram[(b * rows + i) * rows + j] =
                        (0..columns).map(|k| at(b, i, k) * at(b, j, k)).sum();
                }
                for k in 0..columns {
                    grad[(b * rows + i) * columns + k] = (0..rows)
                        .map(|j| (bar(b, i, j) + bar(b, j, i)) * at(b, j, k))
                        .sum();
                }
            }
        }
        (gram, grad)
    }

    #[test]
    fn matches_the_defining_sums_on_both_paths() {
        // One batch (parallel products), many batches (batches in parallel), an empty one.
        for shape in [[1, 5, 7], [6, 4, 3], [3, 1, 9], [2, 3, 0]] {
            let [batch, rows, columns] = shape;
            let x = values(batch * rows * columns, 1);
            let g_bar = values(batch * rows * rows, 2);
            let (gram_expected, grad_expected) = naive(&x, &g_bar, shape);
            let xt = tensor(x, shape);
            let gram_ours = gram(&xt);
            let grad_ours = gram_backward(&xt, &tensor(g_bar, [batch, rows, rows]));
            for (ours, expected) in [(&gram_ours, gram_expected), (&grad_ours, grad_expected)] {
                let ours = ours.storage::<f64>();
                assert_eq!(ours.len(), expected.len(), "{shape:?}");
                for (a, b) in ours.iter().zip(&expected) {
                    assert!(
                        (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                        "{shape:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
