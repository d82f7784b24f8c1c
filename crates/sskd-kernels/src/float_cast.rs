//! Half-precision tensors widened to `f32` for the kernels, and the results narrowed back.

use burn_backend::{DType, Element};
use burn_flex::{FlexTensor, Layout};
use burn_std::Bytes;

/// `tensor`'s elements as a contiguous `f32` tensor, each converted by `to_f32`.
pub(crate) fn cast_to_f32<E: Element + bytemuck::Pod>(
    tensor: FlexTensor,
    to_f32: fn(E) -> f32,
) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let shape = tensor.layout().shape().clone();
    let widened: Vec<f32> = tensor.storage::<E>().iter().map(|&v| to_f32(v)).collect();
    FlexTensor::new(
        Bytes::from_elems(widened),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// An `f32` tensor's elements converted to `E` by `from_f32`, contiguous.
pub(crate) fn cast_from_f32<E: Element + bytemuck::Pod>(
    tensor: FlexTensor,
    from_f32: fn(f32) -> E,
) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let shape = tensor.layout().shape().clone();
    let narrowed: Vec<E> = tensor
        .storage::<f32>()
        .iter()
        .map(|&v| from_f32(v))
        .collect();
    FlexTensor::new(
        Bytes::from_elems(narrowed),
        Layout::contiguous(shape),
        E::dtype(),
    )
}
