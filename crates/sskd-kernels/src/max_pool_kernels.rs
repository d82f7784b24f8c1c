//! 2D max pooling on burn-flex's tensors: the forward pass with each output's argmax, and the
//! gradient scattered back through it, the planes on all cores.
//!
//! burn-flex 0.21 runs a 2D max pooling as a 3D one, generic scalar loops that bound-check every
//! tap and write `i64` indices (8.4 % of `head/vgg13/16`'s samples, docs/performance.md). Here
//! each output's window is clipped to the image once, and the argmax is a `u32` index into the
//! input plane.
//!
//! As PyTorch's CPU kernel (`cpu_max_pool`): a window starts from −∞ at its first element in
//! the image and takes any larger value, or a NaN, so a tie keeps the first maximum and the last
//! NaN wins; the gradient adds each output's gradient at its argmax, in output order. Floor
//! mode (no `ceil_mode`); `f32` and `f64` ([`supports`]).

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::conv_geometry::ConvFloat;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{zeroed_vec, MIN_SLICE};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// The window of a 2D max pooling, per axis (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dOptions {
    /// The window's size.
    pub kernel_size: [usize; 2],
    /// The step between two windows.
    pub stride: [usize; 2],
    /// The implicit −∞ padding on each side.
    pub padding: [usize; 2],
    /// The step between two taps of a window.
    pub dilation: [usize; 2],
}

impl MaxPool2dOptions {
    /// Output positions along `axis` for an input of `size` (floor mode, as PyTorch's).
    fn out_size(&self, axis: usize, size: usize) -> usize {
        let reach = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1;
        match (size + 2 * self.padding[axis]).checked_sub(reach) {
            Some(room) => room / self.stride[axis] + 1,
            None => 0,
        }
    }

    /// The input positions along `axis` that output position `out` reads: first, end and step.
    fn window(&self, axis: usize, out: usize, size: usize) -> (usize, usize, usize) {
        let step = self.dilation[axis];
        let start = (out * self.stride[axis]) as isize - self.padding[axis] as isize;
        let end = (start + (step * (self.kernel_size[axis] - 1)) as isize + 1).min(size as isize);
        let mut first = start;
        while first < 0 {
            first += step as isize;
        }
        (first as usize, end.max(first) as usize, step)
    }
}

/// The index of a window that reads no input element (its gradient goes nowhere).
const EMPTY: u32 = u32::MAX;

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "max_pool2d")
}

/// Planes of `plane_len` elements that one task of a parallel pass takes at least.
fn planes_per_task(plane_len: usize) -> usize {
    MIN_SLICE.div_ceil(plane_len.max(1))
}

fn forward_typed<T: ConvFloat + Element>(
    x: &FlexTensor,
    options: MaxPool2dOptions,
) -> (FlexTensor, Vec<u32>) {
    let [batch, channels, height, width]: [usize; 4] = x
        .layout()
        .shape()
        .to_vec()
        .try_into()
        .expect("max_pool2d: a [N, C, H, W] tensor");
    assert!(
        height * width <= EMPTY as usize,
        "max_pool2d: planes of {height}×{width} do not fit u32 indices"
    );
    let (out_h, out_w) = (options.out_size(0, height), options.out_size(1, width));
    let x = values::<T>(x);
    let data = x.storage::<T>();
    let (in_plane, out_plane) = (height * width, out_h * out_w);
    let mut output = zeroed_vec::<T>(batch * channels * out_plane);
    let mut indices = vec![EMPTY; batch * channels * out_plane];
    if in_plane == 0 {
        // Every window is empty: −∞, as a window of padding alone.
        output.fill(T::neg_infinity());
    } else if out_plane > 0 {
        output
            .par_chunks_mut(out_plane)
            .zip(indices.par_chunks_mut(out_plane))
            .zip(data.par_chunks(in_plane))
            .with_min_len(planes_per_task(out_plane))
            .for_each(|((out, index), plane)| {
                for (o, (value, argmax)) in out.iter_mut().zip(index.iter_mut()).enumerate() {
                    let (rows, cols) = (
                        options.window(0, o / out_w, height),
                        options.window(1, o % out_w, width),
                    );
                    (*value, *argmax) = window_max(plane, width, rows, cols);
                }
            });
    }
    let output = tensor_from(output, vec![batch, channels, out_h, out_w]);
    (output, indices)
}

/// The largest value of the window `rows × cols` (each first, end, step) of a plane `width`
/// wide, and its index, as PyTorch's `cpu_max_pool` takes it.
#[inline]
fn window_max<T: ConvFloat>(
    plane: &[T],
    width: usize,
    (row, row_end, row_step): (usize, usize, usize),
    (col, col_end, col_step): (usize, usize, usize),
) -> (T, u32) {
    let (mut max, mut argmax) = (T::neg_infinity(), EMPTY);
    if row < row_end && col < col_end {
        argmax = (row * width + col) as u32;
    }
    for ih in (row..row_end).step_by(row_step) {
        for iw in (col..col_end).step_by(col_step) {
            let value = plane[ih * width + iw];
            if value > max || value.is_nan() {
                (max, argmax) = (value, (ih * width + iw) as u32);
            }
        }
    }
    (max, argmax)
}

fn backward_typed<T: ConvFloat + Element>(
    x_shape: [usize; 4],
    output_grad: &FlexTensor,
    indices: &[u32],
) -> FlexTensor {
    let [batch, channels, height, width] = x_shape;
    let grad = values::<T>(output_grad);
    let dy = grad.storage::<T>();
    assert_eq!(
        dy.len(),
        indices.len(),
        "max_pool2d: a gradient of another shape than the output"
    );
    let in_plane = height * width;
    let out_plane = dy.len() / (batch * channels).max(1);
    let mut dx = zeroed_vec::<T>(batch * channels * in_plane);
    if out_plane > 0 && in_plane > 0 {
        dx.par_chunks_mut(in_plane)
            .zip(dy.par_chunks(out_plane))
            .zip(indices.par_chunks(out_plane))
            .with_min_len(planes_per_task(out_plane))
            .for_each(|((dx, dy), argmax)| {
                for (&g, &at) in dy.iter().zip(argmax) {
                    if at != EMPTY {
                        dx[at as usize] = dx[at as usize] + g;
                    }
                }
            });
    }
    tensor_from(dx, x_shape.to_vec())
}

/// `max_pool2d(x)` of `x [N, C, H, W]`: the output `[N, C, OH, OW]` and each output's argmax
/// in its input plane (`ih · W + iw`; `u32::MAX` for a window that reads no element).
///
/// # Panics
/// If `x` is not a 4D `f32` or `f64` tensor ([`supports`]), or a kernel size, stride or
/// dilation is 0.
pub fn max_pool2d_with_indices(
    x: &FlexTensor,
    options: MaxPool2dOptions,
) -> (FlexTensor, Vec<u32>) {
    assert!(
        options
            .kernel_size
            .iter()
            .chain(&options.stride)
            .chain(&options.dilation)
            .all(|&v| v > 0),
        "max_pool2d: kernel size, stride and dilation must be positive, got {options:?}"
    );
    per_float!("max_pool2d", x.dtype(), forward_typed(x, options))
}

/// The gradient of [`max_pool2d_with_indices`] with respect to `x` (of shape `x_shape`) for the
/// output's gradient `output_grad` and the forward pass's `indices`.
///
/// # Panics
/// If `output_grad` is not `f32` or `f64` or does not hold one value per index.
pub fn max_pool2d_backward(
    x_shape: [usize; 4],
    output_grad: &FlexTensor,
    indices: &[u32],
) -> FlexTensor {
    per_float!(
        "max_pool2d",
        output_grad.dtype(),
        backward_typed(x_shape, output_grad, indices)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::spread;

    fn options(kernel: usize, stride: usize, padding: usize, dilation: usize) -> MaxPool2dOptions {
        MaxPool2dOptions {
            kernel_size: [kernel, kernel],
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [dilation, dilation],
        }
    }

    /// The definition: every window position by its padded coordinates, the first maximum
    /// (or the last NaN), and the gradient added at it.
    fn naive(x: &[f64], shape: [usize; 4], o: MaxPool2dOptions, dy_seed: usize) -> [Vec<f64>; 3] {
        let [n, c, h, w] = shape;
        let (oh, ow) = (o.out_size(0, h), o.out_size(1, w));
        let dy = spread(n * c * oh * ow, dy_seed);
        let (mut out, mut dx) = (Vec::new(), vec![0.0; x.len()]);
        for plane in 0..n * c {
            for (p, q) in (0..oh).flat_map(|p| (0..ow).map(move |q| (p, q))) {
                let (mut max, mut at) = (f64::NEG_INFINITY, None);
                for (i, j) in
                    (0..o.kernel_size[0]).flat_map(|i| (0..o.kernel_size[1]).map(move |j| (i, j)))
                {
                    let r = (p * o.stride[0] + i * o.dilation[0]) as isize - o.padding[0] as isize;
                    let s = (q * o.stride[1] + j * o.dilation[1]) as isize - o.padding[1] as isize;
                    if r < 0 || s < 0 || r >= h as isize || s >= w as isize {
                        continue;
                    }
                    let index = plane * h * w + r as usize * w + s as usize;
                    if at.is_none() || x[index] > max || x[index].is_nan() {
                        (max, at) = (x[index], Some(index));
                    }
                }
                out.push(max);
                if let Some(at) = at {
                    dx[at] += dy[(plane * oh + p) * ow + q];
                }
            }
        }
        [out, dx, dy]
    }

    fn check(x: Vec<f64>, shape: [usize; 4], o: MaxPool2dOptions) {
        let [want, want_dx, dy] = naive(&x, shape, o, 3);
        let (out, indices) = max_pool2d_with_indices(&tensor_from(x, shape.to_vec()), o);
        let out = out.storage::<f64>().to_vec();
        assert_eq!(out.len(), want.len(), "{shape:?} {o:?}");
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{shape:?} {o:?} [{i}]: {a} {b}"
            );
        }
        let [n, c, h, w] = shape;
        let out_shape = vec![n, c, o.out_size(0, h), o.out_size(1, w)];
        let dx = max_pool2d_backward(shape, &tensor_from(dy, out_shape), &indices);
        assert_eq!(dx.storage::<f64>(), want_dx.as_slice(), "{shape:?} {o:?}");
    }

    #[test]
    fn windows_and_gradients_match_the_definition() {
        for (shape, o) in [
            ([2, 3, 8, 8], options(2, 2, 0, 1)),
            ([2, 3, 9, 7], options(3, 2, 1, 1)),
            ([1, 4, 7, 9], options(3, 1, 1, 1)),
            ([1, 2, 9, 9], options(3, 2, 1, 2)),
            ([3, 2, 5, 6], options(2, 1, 1, 1)),
            ([16, 64, 8, 8], options(2, 2, 0, 1)),
        ] {
            check(spread(shape.iter().product(), 1), shape, o);
        }
        let asymmetric = MaxPool2dOptions {
            kernel_size: [3, 2],
            stride: [1, 2],
            padding: [1, 0],
            dilation: [2, 1],
        };
        check(spread(2 * 3 * 7 * 8, 2), [2, 3, 7, 8], asymmetric);
        let empty = tensor_from(Vec::<f64>::new(), vec![2, 3, 0, 4]);
        let (out, indices) = max_pool2d_with_indices(&empty, options(1, 1, 1, 1));
        assert_eq!(out.layout().shape().to_vec(), vec![2, 3, 2, 6]);
        assert!(out.storage::<f64>().iter().all(|&v| v == f64::NEG_INFINITY));
        assert!(indices.iter().all(|&i| i == EMPTY));
    }

    /// Ties keep the first maximum, the last NaN wins, and a plane of −∞ still points into its
    /// window.
    #[test]
    fn ties_nan_and_infinities_follow_pytorch() {
        let shape = [1, 3, 4, 4];
        let mut x = vec![1.0; 16];
        x.extend((0..16).map(|i| if i % 5 == 0 { f64::NAN } else { i as f64 }));
        x.extend([f64::NEG_INFINITY; 16]);
        for o in [options(2, 2, 0, 1), options(3, 1, 1, 1)] {
            check(x.clone(), shape, o);
        }
        let (_, indices) =
            max_pool2d_with_indices(&tensor_from(x, shape.to_vec()), options(2, 2, 0, 1));
        assert_eq!(
            &indices[..4],
            [0, 2, 8, 10],
            "ties: the first of each window"
        );
        assert_eq!(&indices[8..], [0, 2, 8, 10], "−∞: the first of each window");
    }
}
