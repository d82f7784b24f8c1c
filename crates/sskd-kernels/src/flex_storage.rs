//! burn-flex tensors read and made in the kernels' element type: every kernel of this crate
//! reads its inputs as contiguous slices and returns a fresh contiguous tensor.

use burn_backend::Element;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};

/// `tensor` laid out contiguously over its whole buffer (itself when it already is, else a
/// copy), ready for `storage::<T>()`.
///
/// # Panics
/// If `tensor` does not hold `T`; `op` names the operation in the message.
pub(crate) fn contiguous_as<T: Element>(tensor: &FlexTensor, op: &str) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    assert_eq!(tensor.dtype(), T::dtype(), "{op}: mixed float types");
    tensor
}

/// A contiguous tensor of `shape` holding `data`.
pub(crate) fn tensor_from<T: Element + bytemuck::Pod>(
    data: Vec<T>,
    shape: Vec<usize>,
) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape)),
        T::dtype(),
    )
}
