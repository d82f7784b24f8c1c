//! The mean distance of two tensors of one shape, squared (`F.mse_loss`) or smooth-L1
//! (`F.smooth_l1_loss`, Huber with β = 1), and its gradient, on burn-flex's tensors in one pass
//! each.
//!
//! Composed of Burn's operations, `F.smooth_l1_loss(input, target)` is a subtraction, an
//! absolute value, a comparison, a square, a `mask_where` and a mean, and as many passes again
//! for the gradient, each on one thread on burn-flex 0.21 (~15 % of the RKD loss's samples over
//! its two `[64³]` angle tensors, docs/losses.md); the squared error a subtraction, a `powf`
//! and a mean, its gradient a `powf` again (~22 % of FitNet's samples on one thread,
//! docs/performance.md). Here the loss is one pass of partial sums over fixed slices of 8,192
//! elements (on all cores when large), added in slice order, so the result does not depend on
//! the thread count; the gradient is one pass. `f32` and `f64` only ([`supports`]).
//!
//! Per element, with `d = input − target`: [`Distance::Squared`] `d²`, derivative by `input`
//! `2d`; [`Distance::SmoothL1`] `0.5 d²` where `|d| < 1`, else `|d| − 0.5`, derivative `d`
//! where `|d| < 1`, else `sign(d)`. NaN stays NaN, as in PyTorch.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::conv_geometry::ConvFloat;
use crate::elementwise_kernels::same_shape;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{vec_by_chunks, MIN_SLICE, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor, distance: Distance) -> FlexTensor {
    contiguous_as::<T>(tensor, distance.name())
}

/// The distance each pair of elements adds to the mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distance {
    /// `d²`, as `F.mse_loss`.
    Squared,
    /// `0.5 d²` where `|d| < 1`, else `|d| − 0.5`, as `F.smooth_l1_loss` (β = 1).
    SmoothL1,
}

impl Distance {
    /// The loss's name in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Squared => "mse",
            Self::SmoothL1 => "smooth_l1",
        }
    }

    /// The term of one difference.
    #[inline]
    fn term<T: ConvFloat>(self, difference: T) -> T {
        let half = T::from(0.5).expect("0.5 is a float");
        match self {
            Self::Squared => difference * difference,
            Self::SmoothL1 if difference.abs() < T::one() => half * difference * difference,
            Self::SmoothL1 => difference.abs() - half,
        }
    }

    /// The derivative of [`Self::term`] (NaN passes).
    #[inline]
    fn slope<T: ConvFloat>(self, difference: T) -> T {
        match self {
            Self::Squared => difference + difference,
            Self::SmoothL1 if difference.abs() < T::one() || difference.is_nan() => difference,
            Self::SmoothL1 => difference.signum(),
        }
    }
}

fn forward_typed<T: ConvFloat + Element>(
    input: &FlexTensor,
    target: &FlexTensor,
    distance: Distance,
) -> FlexTensor {
    let (input, target) = (values::<T>(input, distance), values::<T>(target, distance));
    let (input, target) = (input.storage::<T>(), target.storage::<T>());
    let slices: Vec<T> = input
        .par_chunks(MIN_SLICE)
        .with_min_len(PARALLEL_ELEMENTS / MIN_SLICE)
        .zip(target.par_chunks(MIN_SLICE))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&a, &b)| distance.term(a - b))
                .sum::<T>()
        })
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
    distance: Distance,
) -> FlexTensor {
    let shape = input.layout().shape().to_vec();
    let values = |tensor| values::<T>(tensor, distance);
    let (input, target, grad) = (values(input), values(target), values(grad));
    let (input, target) = (input.storage::<T>(), target.storage::<T>());
    let count = T::from(input.len()).expect("an element count is a float");
    let scale = grad.storage::<T>()[0] / count;
    let parallel = input.len() >= PARALLEL_ELEMENTS;
    let input_grad = vec_by_chunks(input.len(), MIN_SLICE, parallel, |slice, part| {
        let start = slice * MIN_SLICE;
        let pairs = input[start..].iter().zip(&target[start..]);
        for (d, (&a, &b)) in part.iter_mut().zip(pairs) {
            *d = distance.slope(a - b) * scale;
        }
    });
    tensor_from(input_grad, shape)
}

/// `mean(distance(input − target))`, as PyTorch's `F.mse_loss` or `F.smooth_l1_loss` (β = 1):
/// a `[1]` tensor (NaN for empty tensors).
///
/// # Panics
/// If the tensors differ in shape or type, or are not `f32` or `f64` ([`supports`]).
pub fn mean_distance(input: &FlexTensor, target: &FlexTensor, distance: Distance) -> FlexTensor {
    same_shape(input, target, distance.name());
    per_float!(
        distance.name(),
        input.dtype(),
        forward_typed(input, target, distance)
    )
}

/// The gradient of [`mean_distance`] with respect to `input` for the loss's gradient `grad`
/// (`[1]`); `target`'s is its negation.
///
/// # Panics
/// As [`mean_distance`].
pub fn mean_distance_backward(
    input: &FlexTensor,
    target: &FlexTensor,
    grad: &FlexTensor,
    distance: Distance,
) -> FlexTensor {
    same_shape(input, target, distance.name());
    per_float!(
        distance.name(),
        input.dtype(),
        backward_typed(input, target, grad, distance)
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

    /// Each distance's term and derivative by definition.
    fn definition(distance: Distance, d: f64) -> (f64, f64) {
        match distance {
            Distance::Squared => (d * d, 2.0 * d),
            Distance::SmoothL1 if d.abs() < 1.0 => (0.5 * d * d, d),
            Distance::SmoothL1 => (d.abs() - 0.5, d.signum()),
        }
    }

    #[test]
    fn loss_and_gradients_match_the_definition_on_both_paths() {
        for distance in [Distance::Squared, Distance::SmoothL1] {
            for len in [1, 9, PARALLEL_ELEMENTS + 4_321] {
                let (input, target) = (values(len, 1), values(len, 2));
                let differences: Vec<f64> = input.iter().zip(&target).map(|(a, b)| a - b).collect();
                let expected = differences
                    .iter()
                    .map(|&d| definition(distance, d).0)
                    .sum::<f64>()
                    / len as f64;
                let loss = mean_distance(&tensor(input.clone()), &tensor(target.clone()), distance);
                let loss = loss.storage::<f64>()[0];
                assert!(
                    (loss - expected).abs() <= 1e-12 * expected.abs(),
                    "{distance:?}: {loss} vs {expected}"
                );
                let grad = tensor(vec![3.0]);
                let input_grad =
                    mean_distance_backward(&tensor(input), &tensor(target), &grad, distance);
                for (index, &d) in differences.iter().enumerate() {
                    let want = definition(distance, d).1 * (3.0 / len as f64);
                    let ours = input_grad.storage::<f64>()[index];
                    assert_eq!(ours, want, "{distance:?} [{index}]");
                }
            }
        }
    }

    #[test]
    fn nan_passes_and_an_empty_mean_is_nan() {
        for distance in [Distance::Squared, Distance::SmoothL1] {
            let (nan, zeros) = (tensor(vec![f64::NAN, 0.0]), tensor(vec![0.0, 0.0]));
            let loss = mean_distance(&nan, &zeros, distance);
            assert!(loss.storage::<f64>()[0].is_nan());
            let grad = mean_distance_backward(&nan, &zeros, &tensor(vec![1.0]), distance);
            assert!(grad.storage::<f64>()[0].is_nan());
            let empty = mean_distance(&tensor(vec![]), &tensor(vec![]), distance);
            assert!(empty.storage::<f64>()[0].is_nan());
        }
    }
}
