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

/// The elements of a 4-D `[B, C, H, W]` tensor of `T` whose images each lie contiguously (a
/// contiguous tensor, or a channel slice of one) from its first element on, and the distance
/// between two images; `None` for another layout or type.
pub(crate) fn image_blocks<T: Element + bytemuck::Pod>(
    tensor: &FlexTensor,
) -> Option<(&[T], usize)> {
    let layout = tensor.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    if tensor.dtype() != T::dtype() || shape.num_dims() != 4 {
        return None;
    }
    let (plane, image) = (shape[2] * shape[3], shape[1] * shape[2] * shape[3]);
    let dense = |axis: usize, step: usize| shape[axis] <= 1 || strides[axis] == step as isize;
    let images_dense = dense(3, 1) && dense(2, shape[3]) && dense(1, plane);
    let batch_stride = match shape[0] <= 1 {
        true => image,
        false => usize::try_from(strides[0]).ok()?,
    };
    let data: &[T] = bytemuck::try_cast_slice(tensor.bytes()).ok()?;
    let data = data.get(layout.start_offset()..)?;
    let fits = shape[0] == 0 || (shape[0] - 1) * batch_stride + image <= data.len();
    (images_dense && batch_stride >= image && fits).then_some((data, batch_stride))
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
