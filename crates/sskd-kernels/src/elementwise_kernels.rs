//! Element-wise passes on burn-flex's tensors on all cores: ReLU, leaky ReLU, their gradients
//! and the sum of two tensors of one shape (a residual connection).
//!
//! burn-flex 0.21.0 runs its unary and binary operations (`ops/unary.rs`, `ops/binary.rs`) on
//! the calling thread, so every ReLU and residual add of a training step left the other cores
//! idle (our CPU use was 1.2–1.8 of 2 cores against PyTorch's 1.9–2.0,
//! docs/performance.md). Here the output is written by rayon's threads, in slices of at least
//! 8,192 elements, over an input's own buffer when nothing else holds it; tensors below 32,768
//! elements stay on the calling thread. `f32` and `f64` only ([`supports`]).
//!
//! ReLU follows PyTorch: `max(x, 0)` with NaN passed through (burn-flex's `x.max(0.0)` turns
//! NaN into 0, which would hide a diverged activation), and the gradient flows where the
//! output is positive, as both libraries' backward passes do. Leaky ReLU likewise follows
//! PyTorch: `x` where it is not below zero, else `slope · x`; the gradient is `dy` where `x > 0`
//! and `slope · dy` elsewhere (at `x = 0` too, where Burn's composite takes `dy`), read from
//! the output, whose sign is the input's for the slopes taken here (`slope ≥ 0`).

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{for_each_chunk, slice_len, MIN_SLICE, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// A float type the kernels run in (`f32`, `f64`).
trait PassFloat:
    Element + bytemuck::Pod + PartialOrd + core::ops::Add<Output = Self> + core::ops::Mul<Output = Self>
{
}
impl PassFloat for f32 {}
impl PassFloat for f64 {}

/// PyTorch's ReLU: `x` where it is not below zero (NaN included), else zero.
#[inline]
pub(crate) fn relu_of<T: PartialOrd + bytemuck::Zeroable + Copy>(x: T) -> T {
    if x < T::zeroed() {
        T::zeroed()
    } else {
        x
    }
}

/// `f(x[i])` for every element, on all cores when the slice is large.
fn map_unary<S, T>(x: &[S], f: impl Fn(S) -> T + Sync + Send) -> Vec<T>
where
    S: Copy + Send + Sync,
    T: Send,
{
    if x.len() < PARALLEL_ELEMENTS {
        return x.iter().map(|&v| f(v)).collect();
    }
    let mut out = Vec::with_capacity(x.len());
    out.par_extend(x.par_iter().with_min_len(MIN_SLICE).map(|&v| f(v)));
    out
}

/// `f(a[i], b[i])` for every element of two equally long slices, on all cores when large.
fn map_binary<S, T>(a: &[S], b: &[S], f: impl Fn(S, S) -> T + Sync + Send) -> Vec<T>
where
    S: Copy + Send + Sync,
    T: Send,
{
    assert_eq!(
        a.len(),
        b.len(),
        "element-wise pass over slices of two lengths"
    );
    if a.len() < PARALLEL_ELEMENTS {
        return a.iter().zip(b).map(|(&u, &v)| f(u, v)).collect();
    }
    let mut out = Vec::with_capacity(a.len());
    let pairs = a.par_iter().zip(b.par_iter()).with_min_len(MIN_SLICE);
    out.par_extend(pairs.map(|(&u, &v)| f(u, v)));
    out
}

pub(crate) fn contiguous<T: Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "element-wise pass")
}

/// A contiguous tensor of `like`'s shape holding `data`.
fn tensor_like<T: Element + bytemuck::Pod>(data: Vec<T>, like: &FlexTensor) -> FlexTensor {
    tensor_from(data, like.layout().shape().to_vec())
}

/// Panics, naming `what`, unless `a` and `b` have one shape.
pub(crate) fn same_shape(a: &FlexTensor, b: &FlexTensor, what: &str) {
    let (a, b) = (a.layout().shape(), b.layout().shape());
    assert_eq!(a, b, "{what}: tensors of shapes {a:?} and {b:?}");
}

/// `tensor`'s elements, writable in place: `Some` when its storage is not shared and holds
/// exactly its elements in order (a fresh operation's output, not a view).
fn own_elements<T: Element + bytemuck::Pod>(tensor: &mut FlexTensor) -> Option<&mut [T]> {
    let len = tensor.layout().num_elements();
    if tensor.dtype() != T::dtype() || tensor.layout().contiguous_offsets() != Some((0, len)) {
        return None;
    }
    tensor
        .try_storage_mut::<T>()
        .filter(|values| values.len() == len)
}

/// `tensor`'s elements, writable in place: its own storage when nothing else holds it and it
/// holds exactly its elements in order; otherwise `tensor` is first replaced by a contiguous
/// copy of its own.
pub(crate) fn owned_contiguous<T: Element + bytemuck::Pod + Send + Sync>(
    tensor: &mut FlexTensor,
) -> &mut [T] {
    if own_elements::<T>(tensor).is_none() {
        let shared = contiguous::<T>(tensor);
        *tensor = tensor_like(map_unary(shared.storage::<T>(), |v: T| v), &shared);
    }
    own_elements::<T>(tensor).expect("a fresh contiguous buffer is the tensor's own")
}

/// Runs `work(start, slice)` over `values` cut into one slice per thread (at least
/// [`MIN_SLICE`] long), in parallel when `values` is large; `start` is the slice's offset.
pub(crate) fn for_each_slice<T: Send>(
    values: &mut [T],
    work: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let len = values.len();
    let slice = slice_len(len);
    for_each_chunk(values, slice, len >= PARALLEL_ELEMENTS, |index, part| {
        work(index * slice, part)
    });
}

/// `f(x[i])` for every element of `x`: in `x`'s own storage when it may be overwritten, else
/// in a new buffer.
fn unary_into<T: PassFloat>(mut x: FlexTensor, f: impl Fn(T) -> T + Sync + Send) -> FlexTensor {
    if let Some(values) = own_elements::<T>(&mut x) {
        for_each_slice(values, |_, part| part.iter_mut().for_each(|v| *v = f(*v)));
        return x;
    }
    let x = contiguous::<T>(&x);
    tensor_like(map_unary(x.storage::<T>(), f), &x)
}

/// `f(a[i], b[i])` for every element of two tensors of one shape: in `a`'s own storage when it
/// may be overwritten, else in a new buffer.
fn binary_into<T: PassFloat>(
    mut a: FlexTensor,
    b: &FlexTensor,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> FlexTensor {
    let b = contiguous::<T>(b);
    let second = b.storage::<T>();
    if let Some(values) = own_elements::<T>(&mut a) {
        for_each_slice(values, |start, part| {
            for (v, &o) in part.iter_mut().zip(&second[start..]) {
                *v = f(*v, o);
            }
        });
        return a;
    }
    let a = contiguous::<T>(&a);
    tensor_like(map_binary(a.storage::<T>(), second, f), &a)
}

fn relu_typed<T: PassFloat>(x: FlexTensor) -> FlexTensor {
    unary_into(x, relu_of::<T>)
}

fn relu_backward_typed<T: PassFloat>(output: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    binary_into(
        grad,
        output,
        |g, y: T| if y > T::zeroed() { g } else { T::zeroed() },
    )
}

fn leaky_relu_typed<T: PassFloat>(x: FlexTensor, slope: f64) -> FlexTensor {
    let slope = T::from_elem(slope);
    unary_into(x, move |v: T| if v < T::zeroed() { v * slope } else { v })
}

fn leaky_relu_backward_typed<T: PassFloat>(
    output: &FlexTensor,
    grad: FlexTensor,
    slope: f64,
) -> FlexTensor {
    let slope = T::from_elem(slope);
    binary_into(
        grad,
        output,
        move |g, y: T| if y > T::zeroed() { g } else { g * slope },
    )
}

fn add_typed<T: PassFloat>(a: FlexTensor, b: FlexTensor) -> FlexTensor {
    // Either operand's storage may take the sum (IEEE addition commutes exactly).
    if a.is_unique() || !b.is_unique() {
        binary_into(a, &b, |u: T, v| u + v)
    } else {
        binary_into(b, &a, |u: T, v| u + v)
    }
}

/// `max(x, 0)` element by element (NaN stays NaN), as a contiguous tensor of `x`'s shape:
/// `x`'s own storage, overwritten, when nothing else holds it.
///
/// # Panics
/// If `x` is not `f32` or `f64` ([`supports`]).
pub fn relu(x: FlexTensor) -> FlexTensor {
    per_float!("relu", x.dtype(), relu_typed(x))
}

/// ReLU's gradient: `grad` where `output` (ReLU's output) is positive, else zero; in `grad`'s
/// own storage when nothing else holds it.
///
/// # Panics
/// If the tensors differ in shape or type, or are not `f32` or `f64`.
pub fn relu_backward(output: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    same_shape(output, &grad, "relu_backward");
    per_float!(
        "relu_backward",
        grad.dtype(),
        relu_backward_typed(output, grad)
    )
}

/// Panics unless leaky ReLU's gradient can be read from its output at `slope`.
fn check_slope(slope: f64) {
    assert!(
        slope >= 0.0,
        "leaky_relu: negative slope {slope} (the kernels take slopes ≥ 0)"
    );
}

/// PyTorch's leaky ReLU, `x` where it is not below zero (NaN included) and `slope · x`
/// elsewhere, as a contiguous tensor of `x`'s shape: `x`'s own storage, overwritten, when
/// nothing else holds it.
///
/// # Panics
/// If `x` is not `f32` or `f64`, or `slope` is negative or NaN.
pub fn leaky_relu(x: FlexTensor, slope: f64) -> FlexTensor {
    check_slope(slope);
    per_float!("leaky_relu", x.dtype(), leaky_relu_typed(x, slope))
}

/// Leaky ReLU's gradient from its output: `grad` where `output` is positive, else `slope ·
/// grad`; in `grad`'s own storage when nothing else holds it.
///
/// # Panics
/// If the tensors differ in shape or type, are not `f32` or `f64`, or `slope` is negative
/// or NaN.
pub fn leaky_relu_backward(output: &FlexTensor, grad: FlexTensor, slope: f64) -> FlexTensor {
    check_slope(slope);
    same_shape(output, &grad, "leaky_relu_backward");
    per_float!(
        "leaky_relu_backward",
        grad.dtype(),
        leaky_relu_backward_typed(output, grad, slope)
    )
}

/// `a + b` element by element, for tensors of one shape: in the storage of an operand that
/// nothing else holds, if there is one.
///
/// # Panics
/// If the tensors differ in shape or type, or are not `f32` or `f64`.
pub fn add(a: FlexTensor, b: FlexTensor) -> FlexTensor {
    same_shape(&a, &b, "add");
    per_float!("add", a.dtype(), add_typed(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::Shape;

    fn tensor(data: Vec<f64>) -> FlexTensor {
        let len = data.len();
        tensor_from(data, vec![len])
    }

    /// Values of both signs and zeros, long enough for the parallel path when `len` is.
    fn ramp(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 101.0 - 5.0)
            .collect()
    }

    /// Runs `pass` on a tensor of `values` twice: once holding it elsewhere too (a new
    /// buffer) and once not (in place); both answers must agree.
    fn both_ways(values: &[f64], pass: impl Fn(FlexTensor) -> FlexTensor) -> Vec<f64> {
        let shared = tensor(values.to_vec());
        let copied = pass(shared.clone());
        assert_eq!(
            shared.storage::<f64>(),
            values,
            "a shared input was overwritten"
        );
        let in_place = pass(tensor(values.to_vec()));
        assert_eq!(copied.storage::<f64>(), in_place.storage::<f64>());
        in_place.storage::<f64>().to_vec()
    }

    #[test]
    fn passes_match_their_definitions_on_every_path() {
        for len in [0, 7, PARALLEL_ELEMENTS + 12_345] {
            let (x, g) = (ramp(len, 1), ramp(len, 2));
            let y = both_ways(&x, relu);
            let expected_y: Vec<f64> = x.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect();
            assert_eq!(y, expected_y);
            let dx = both_ways(&g, |grad| relu_backward(&tensor(y.clone()), grad));
            let expected_dx: Vec<f64> = y
                .iter()
                .zip(&g)
                .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
                .collect();
            assert_eq!(dx, expected_dx);
            let sum = both_ways(&x, |a| add(a, tensor(g.clone())));
            assert_eq!(sum, both_ways(&x, |b| add(tensor(g.clone()), b)));
            let expected_sum: Vec<f64> = x.iter().zip(&g).map(|(a, b)| a + b).collect();
            assert_eq!(sum, expected_sum);
        }
    }

    #[test]
    fn leaky_relu_matches_pytorchs_definition_on_every_path() {
        for slope in [0.1, 0.0, 1.5] {
            for len in [0, 7, PARALLEL_ELEMENTS + 12_345] {
                let (x, g) = (ramp(len, 3), ramp(len, 4));
                let y = both_ways(&x, |x| leaky_relu(x, slope));
                let expected_y: Vec<f64> = x
                    .iter()
                    .map(|&v| if v > 0.0 { v } else { v * slope })
                    .collect();
                assert_eq!(y, expected_y);
                // PyTorch's gradient reads the input: `dy` where `x > 0`, else `slope · dy`.
                let dx = both_ways(&g, |grad| {
                    leaky_relu_backward(&tensor(y.clone()), grad, slope)
                });
                let expected_dx: Vec<f64> = x
                    .iter()
                    .zip(&g)
                    .map(|(&x, &g)| if x > 0.0 { g } else { g * slope })
                    .collect();
                assert_eq!(dx, expected_dx, "slope {slope}, {len} elements");
            }
        }
        let y = leaky_relu(tensor(vec![f64::NAN, -0.0, 0.0]), 0.1);
        assert!(y.storage::<f64>()[0].is_nan());
        assert_eq!(
            y.storage::<f64>()[1..]
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            [(-0.0f64).to_bits(), 0]
        );
    }

    #[test]
    #[should_panic(expected = "negative slope")]
    fn leaky_relu_refuses_a_negative_slope() {
        leaky_relu(tensor(vec![1.0]), -0.2);
    }

    #[test]
    fn relu_passes_nan_through_and_blocks_its_gradient() {
        let y = relu(tensor(vec![f64::NAN, -1.0, 2.0]));
        let values = y.storage::<f64>();
        assert!(values[0].is_nan());
        assert_eq!(&values[1..], &[0.0, 2.0]);
        let dx = relu_backward(&y, tensor(vec![1.0, 1.0, 1.0]));
        assert_eq!(dx.storage::<f64>(), &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn views_are_read_in_logical_order_and_left_alone() {
        let x = tensor((0..6).map(|v| v as f64 - 2.0).collect());
        let view = x.reshape(Shape::from(vec![2, 3])).transpose(0, 1);
        let y = relu(view);
        assert_eq!(y.layout().shape().to_vec(), vec![3, 2]);
        assert_eq!(y.storage::<f64>(), &[0.0, 1.0, 0.0, 2.0, 0.0, 3.0]);
        assert_eq!(x.storage::<f64>(), &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        let narrowed = tensor(vec![1.0, 2.0, 3.0, 4.0]).narrow(0, 1, 2);
        let sum = add(narrowed, tensor(vec![10.0, 20.0]));
        assert_eq!(sum.storage::<f64>(), &[12.0, 23.0]);
    }
}
