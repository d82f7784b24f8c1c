//! The mean smooth-L1 (Huber, β = 1) distance of two tensors of one shape, and its gradient,
//! on burn-flex's tensors in one pass each.
//!
//! `F.smooth_l1_loss(input, target)` composed of Burn's operations is a subtraction, an
//! absolute value, a comparison, a square, a `mask_where` and a mean, and as many passes again
//! for the gradient, each on one thread on burn-flex 0.21 (~15 % of the RKD loss's samples over
//! its two `[64³]` angle tensors, docs/losses.md). Here the loss is one pass of partial sums
//! over fixed slices of 8,192 elements (on all cores when large), added in slice order, so the
//! result does not depend on the thread count; the gradient is one pass writing both
//! operands' gradients. `f32` and `f64` only ([`supports`]).
//!
//! Per element, with `d = input − target`: `0.5 d²` where `|d| < 1`, else `|d| − 0.5`; its
//! derivative by `input` is `d` where `|d| < 1`, else `sign(d)` (NaN stays NaN), as PyTorch's.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::conv_geometry::ConvFloat;
use crate::elementwise_kernels::same_shape;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{for_each_chunk, zeroed_vec, MIN_SLICE, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "smooth_l1")
}

/// The smooth-L1 term of one difference.
#[inline]
fn term<T: ConvFloat>(difference: T) -> T {
    let size = difference.abs();
    let half = T::from(0.5).expect("0.5 is a float");
    if size < T::one() {
        half * difference * difference
    } else {
        size - half
    }
}

/// The derivative of [`term`]: `d` inside the unit interval, else its sign (NaN passes).
#[inline]
fn slope<T: ConvFloat>(difference: T) -> T {
    if difference.abs() < T::one() || difference.is_nan() {
        difference
    } else {
        difference.signum()
    }
}

fn forward_typed<T: ConvFloat + Element>(input: &FlexTensor, target: &FlexTensor) -> FlexTensor {
    let (input, target) = (values::<T>(input), values::<T>(target));
    let (input, target) = (input.storage::<T>(), target.storage::<T>());
    let slices: Vec<T> = input
        .par_chunks(MIN_SLICE)
        .with_min_len(PARALLEL_ELEMENTS / MIN_SLICE)
        .zip(target.par_chunks(MIN_SLICE))
        .map(|(a, b)| a.iter().zip(b).map(|(&a, &b)| term(a - b)).sum::<T>())
        .collect();
    let total: T = slices.into_iter().sum();
    let count = T::from(input.len()).expect("an element count is a float");
    // The mean of no element is NaN, as PyTorch's.
    tensor_from(vec![total / count], vec![1])
}

fn backward_typed<T: ConvFloat + Element>(
    input: &FlexTensor,
    target: &FlexTensor,
    grad: &FlexTensor,
) -> FlexTensor {
    let shape = input.layout().shape().to_vec();
    let (input, target, grad) = (values::<T>(input), values::<T>(target), values::<T>(grad));
    let (input, target) = (input.storage::<T>(), target.storage::<T>());
    let count = T::from(input.len()).expect("an element count is a float");
    let scale = grad.storage::<T>()[0] / count;
    let mut input_grad = zeroed_vec::<T>(input.len());
    let parallel = input.len() >= PARALLEL_ELEMENTS;
    for_each_chunk(&mut input_grad, MIN_SLICE, parallel, |slice, part| {
        let start = slice * MIN_SLICE;
        let pairs = input[start..].iter().zip(&target[start..]);
        for (d, (&a, &b)) in part.iter_mut().zip(pairs) {
            *d = slope(a - b) * scale;
        }
    });
    tensor_from(input_grad, shape)
}

/// `mean(smooth_l1(input − target))` with β = 1, as PyTorch's `F.smooth_l1_loss`: a `[1]`
/// tensor (NaN for empty tensors).
///
/// # Panics
/// If the tensors differ in shape or type, or are not `f32` or `f64` ([`supports`]).
pub fn smooth_l1(input: &FlexTensor, target: &FlexTensor) -> FlexTensor {
    same_shape(input, target, "smooth_l1");
    per_float!("smooth_l1", input.dtype(), forward_typed(input, target))
}

/// The gradient of [`smooth_l1`] with respect to `input` for the loss's gradient `grad`
/// (`[1]`); `target`'s is its negation.
///
/// # Panics
/// As [`smooth_l1`].
pub fn smooth_l1_backward(
    input: &FlexTensor,
    target: &FlexTensor,
    grad: &FlexTensor,
) -> FlexTensor {
    same_shape(input, target, "smooth_l1");
    per_float!(
        "smooth_l1",
        input.dtype(),
        backward_typed(input, target, grad)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_values::spread as values;

    fn tensor(data: Vec<f64>) -> FlexTensor {
        let len = data.len();
        tensor_from(data, vec![len])
    }

    #[test]
    fn loss_and_gradients_match_the_definition_on_both_paths() {
        for len in [1, 9, PARALLEL_ELEMENTS + 4_321] {
            let (input, target) = (values(len, 1), values(len, 2));
            let differences: Vec<f64> = input.iter().zip(&target).map(|(a, b)| a - b).collect();
            let expected = differences
                .iter()
                .map(|d| {
                    if d.abs() < 1.0 {
                        0.5 * d * d
                    } else {
                        d.abs() - 0.5
                    }
                })
                .sum::<f64>()
                / len as f64;
            let loss = smooth_l1(&tensor(input.clone()), &tensor(target.clone()));
            let loss = loss.storage::<f64>()[0];
            assert!(
                (loss - expected).abs() <= 1e-13 * expected.abs(),
                "{loss} vs {expected}"
            );
            let input_grad =
                smooth_l1_backward(&tensor(input), &tensor(target), &tensor(vec![3.0]));
            for (index, d) in differences.iter().enumerate() {
                let want = d.clamp(-1.0, 1.0) * (3.0 / len as f64);
                assert_eq!(input_grad.storage::<f64>()[index], want, "{index}");
            }
        }
    }

    #[test]
    fn nan_passes_and_an_empty_mean_is_nan() {
        let loss = smooth_l1(&tensor(vec![f64::NAN, 0.0]), &tensor(vec![0.0, 0.0]));
        assert!(loss.storage::<f64>()[0].is_nan());
        let grad = smooth_l1_backward(
            &tensor(vec![f64::NAN, 0.0]),
            &tensor(vec![0.0, 0.0]),
            &tensor(vec![1.0]),
        );
        assert!(grad.storage::<f64>()[0].is_nan());
        assert!(smooth_l1(&tensor(vec![]), &tensor(vec![])).storage::<f64>()[0].is_nan());
    }
}
