//! The mean over channels of a power of a feature map, `mean_C(f^p)` at every pixel (the
//! attention maps of AT and FT before their normalisation), and its gradient, on burn-flex's
//! tensors in one pass each (the images on all cores).
//!
//! Composed of Burn's operations this is a power of the whole map, a reduction over the middle
//! axis and, for the gradient, the power's derivative and a product with the broadcast
//! gradient: passes over every activation of three stages, each on one thread on burn-flex
//! 0.21. Here the forward pass reads the map once and writes `[b, h·w]`; the backward pass
//! writes `f̄ = ḡ · p · f^(p−1) / C` once. `p = 2` is computed as `f · f` (as PyTorch's `pow(2)`),
//! other exponents with `powf` (NaN for negative bases, as PyTorch). Sums over the channels run
//! in channel order: the result does not depend on the thread count. `f32` and `f64` only
//! ([`supports`]).

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;

use crate::conv_geometry::ConvFloat;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{vec_by_chunks, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// `[batch, channels, height · width]` of a rank-4 map.
fn sizes(features: &FlexTensor) -> [usize; 3] {
    let dims = features.layout().shape().to_vec();
    assert_eq!(
        dims.len(),
        4,
        "channel mean: needs [batch, channels, height, width], got {dims:?}"
    );
    [dims[0], dims[1], dims[2] * dims[3]]
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "channel mean")
}

/// `x^p`, exact for `p = 2`.
#[inline]
fn power<T: ConvFloat>(x: T, p: T) -> T {
    if p == T::from(2.0).expect("2 is a float") {
        x * x
    } else {
        x.powf(p)
    }
}

/// `p · x^(p−1)`, the derivative of [`power`].
#[inline]
fn power_slope<T: ConvFloat>(x: T, p: T) -> T {
    let two = T::from(2.0).expect("2 is a float");
    if p == two {
        two * x
    } else {
        p * x.powf(p - T::one())
    }
}

fn forward_typed<T: ConvFloat + Element>(features: &FlexTensor, p: f64) -> FlexTensor {
    let [batch, channels, pixels] = sizes(features);
    let features = values::<T>(features);
    let data = features.storage::<T>();
    let p = T::from(p).expect("the exponent fits the float type");
    let count = T::from(channels).expect("a channel count is a float");
    let parallel = data.len() >= PARALLEL_ELEMENTS;
    let means = vec_by_chunks(batch * pixels, pixels, parallel, |b, mean: &mut [T]| {
        let image = &data[b * channels * pixels..][..channels * pixels];
        for plane in image.chunks_exact(pixels) {
            for (m, &x) in mean.iter_mut().zip(plane) {
                *m = *m + power(x, p);
            }
        }
        mean.iter_mut().for_each(|m| *m = *m / count);
    });
    tensor_from(means, vec![batch, pixels])
}

fn backward_typed<T: ConvFloat + Element>(
    features: &FlexTensor,
    p: f64,
    means_grad: &FlexTensor,
) -> FlexTensor {
    let shape = features.layout().shape().to_vec();
    let [batch, channels, pixels] = sizes(features);
    let (features, means_grad) = (values::<T>(features), values::<T>(means_grad));
    let (data, means_grad) = (features.storage::<T>(), means_grad.storage::<T>());
    assert_eq!(
        means_grad.len(),
        batch * pixels,
        "channel mean: gradient of another shape"
    );
    let p = T::from(p).expect("the exponent fits the float type");
    let count = T::from(channels).expect("a channel count is a float");
    let parallel = data.len() >= PARALLEL_ELEMENTS;
    let grad = vec_by_chunks(
        data.len(),
        channels * pixels,
        parallel,
        |b, grad_image: &mut [T]| {
            let image = &data[b * channels * pixels..][..channels * pixels];
            let mean_grad = &means_grad[b * pixels..][..pixels];
            let planes = grad_image
                .chunks_exact_mut(pixels)
                .zip(image.chunks_exact(pixels));
            for (grad_plane, plane) in planes {
                for ((g, &x), &m) in grad_plane.iter_mut().zip(plane).zip(mean_grad) {
                    *g = m * power_slope(x, p) / count;
                }
            }
        },
    );
    tensor_from(grad, shape)
}

/// `mean_C(f^p)` at every pixel of `features [b, c, h, w]`, flattened: `[b, h·w]`, as PyTorch's
/// `f.pow(p).mean(1).view(b, -1)`.
///
/// # Panics
/// If `features` is not rank 4, or not `f32` or `f64` ([`supports`]).
pub fn channel_mean_of_powers(features: &FlexTensor, p: f64) -> FlexTensor {
    per_float!("channel mean", features.dtype(), forward_typed(features, p))
}

/// The gradient of [`channel_mean_of_powers`] with respect to `features`, from the gradient of
/// its output `[b, h·w]`.
///
/// # Panics
/// As [`channel_mean_of_powers`], or if the gradient's shape does not match.
pub fn channel_mean_of_powers_backward(
    features: &FlexTensor,
    p: f64,
    means_grad: &FlexTensor,
) -> FlexTensor {
    per_float!(
        "channel mean",
        features.dtype(),
        backward_typed(features, p, means_grad)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::spread;

    /// The means and `f̄` by their definitions for `[b, c, hw]` values and a mean gradient.
    fn naive(x: &[f64], g: &[f64], [batch, channels, pixels]: [usize; 3], p: f64) -> [Vec<f64>; 2] {
        let at = |b: usize, c: usize, i: usize| x[(b * channels + c) * pixels + i];
        let mut means = vec![0.0; batch * pixels];
        let mut grad = vec![0.0; x.len()];
        for b in 0..batch {
            for i in 0..pixels {
                means[b * pixels + i] =
                    (0..channels).map(|c| at(b, c, i).powf(p)).sum::<f64>() / channels as f64;
                for c in 0..channels {
                    grad[(b * channels + c) * pixels + i] =
                        g[b * pixels + i] * p * at(b, c, i).powf(p - 1.0) / channels as f64;
                }
            }
        }
        [means, grad]
    }

    #[test]
    fn means_and_gradient_match_the_definitions() {
        // Small (one thread) and large (images on all cores); p = 2 and a fractional p on
        // positive values.
        for (shape, p, positive) in [
            ([2, 3, 2, 5], 2.0, false),
            ([6, 8, 32, 32], 2.0, false),
            ([3, 4, 4, 4], 1.5, true),
        ] {
            let [batch, channels, h, w] = shape;
            let mut x = spread(batch * channels * h * w, 1);
            if positive {
                x.iter_mut().for_each(|v| *v = v.abs() + 0.1);
            }
            let g = spread(batch * h * w, 2);
            let features = tensor_from(x.clone(), shape.to_vec());
            let means = channel_mean_of_powers(&features, p);
            let grad = channel_mean_of_powers_backward(
                &features,
                p,
                &tensor_from(g.clone(), vec![batch, h * w]),
            );
            let [want_means, want_grad] = naive(&x, &g, [batch, channels, h * w], p);
            assert_eq!(means.layout().shape().to_vec(), vec![batch, h * w]);
            for (ours, want) in [(means, want_means), (grad, want_grad)] {
                for (a, b) in ours.storage::<f64>().iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-13 * (1.0 + b.abs()),
                        "{shape:?} p {p}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
