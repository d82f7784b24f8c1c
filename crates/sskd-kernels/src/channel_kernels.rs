//! Channel concatenation and channel shuffle of NCHW tensors on burn-flex's tensors, as copies
//! of whole `[h, w]` planes.
//!
//! Burn composes a channel shuffle as `reshape → swap_dims → reshape`, and burn-flex 0.21.0
//! copies the swapped five-dimensional view element by element (`StridedIter`, a scalar walk of
//! the strides); a channel concatenation's gradient comes back as strided slices of the output
//! gradient, which the next element-wise operation (ReLU's backward in a ShuffleNet unit) walks
//! the same way. Both are permutations of planes: here every output plane is one `memcpy` of
//! a source plane, the result is contiguous, and images are copied in parallel. The copies are
//! type-blind (elements moved as 1-, 2-, 4- or 8-byte words), so every dtype takes them.

use burn_backend::DType;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};

use crate::parallel_chunks::vec_by_chunks;

/// A 4-D tensor's storage read as `[batch, channels]` planes of `h · w` contiguous elements.
struct Planes<'a, E> {
    data: &'a [E],
    start: usize,
    batch_stride: usize,
    channel_stride: usize,
    plane: usize,
}

impl<'a, E: bytemuck::Pod> Planes<'a, E> {
    /// The planes of `tensor`, which [`plane_contiguous`] has made plane-contiguous.
    fn of(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        Self {
            data: bytemuck::cast_slice(tensor.bytes()),
            start: layout.start_offset(),
            batch_stride: strides[0] as usize,
            channel_stride: strides[1] as usize,
            plane: shape[2] * shape[3],
        }
    }

    /// Plane `(image, channel)`.
    fn plane(&self, image: usize, channel: usize) -> &'a [E] {
        let start = self.start + image * self.batch_stride + channel * self.channel_stride;
        &self.data[start..start + self.plane]
    }
}

/// `tensor` itself when each of its `[h, w]` planes is contiguous and its batch and channel
/// strides are not negative (a channel slice of a contiguous tensor is), else a contiguous copy.
fn plane_contiguous(tensor: &FlexTensor) -> FlexTensor {
    let layout = tensor.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    let rows_contiguous = shape[3] <= 1 || strides[3] == 1;
    let plane_contiguous = shape[2] <= 1 || strides[2] == shape[3] as isize;
    if rows_contiguous && plane_contiguous && strides[0] >= 0 && strides[1] >= 0 {
        if strides[3] == 1 && strides[2] == shape[3] as isize {
            return tensor.clone();
        }
        // Size-1 axes with other strides: rewrite them so planes read as one slice.
        let canonical = vec![strides[0], strides[1], shape[3] as isize, 1];
        return tensor.clone().with_layout(Layout::new(
            shape.clone(),
            canonical,
            layout.start_offset(),
        ));
    }
    tensor.to_contiguous()
}

/// The dims of a 4-D tensor.
fn dims_of(tensor: &FlexTensor) -> [usize; 4] {
    let shape = tensor.layout().shape();
    assert_eq!(
        shape.num_dims(),
        4,
        "channel copy: a 4-D NCHW tensor expected"
    );
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A contiguous `[batch, channels, h, w]` tensor of `dtype` whose plane `(b, j)` is
/// `inputs[i]`'s plane `(b, c)` for `Some((i, c)) = source(j)`, and zeros where `source(j)` is
/// `None`. Every input has the batch and plane size of the output.
fn gather_planes(
    inputs: &[FlexTensor],
    [batch, channels, height, width]: [usize; 4],
    source: &(dyn Fn(usize) -> Option<(usize, usize)> + Sync),
) -> FlexTensor {
    let dtype = inputs[0].dtype();
    let inputs: Vec<FlexTensor> = inputs.iter().map(plane_contiguous).collect();
    let bytes = match dtype.size() {
        1 => gather_typed::<u8>(&inputs, [batch, channels, height * width], source),
        2 => gather_typed::<u16>(&inputs, [batch, channels, height * width], source),
        4 => gather_typed::<u32>(&inputs, [batch, channels, height * width], source),
        8 => gather_typed::<u64>(&inputs, [batch, channels, height * width], source),
        size => panic!("channel copy: unsupported element size {size} ({dtype:?})"),
    };
    let shape = Shape::from(vec![batch, channels, height, width]);
    FlexTensor::new(bytes, Layout::contiguous(shape), dtype)
}

/// [`gather_planes`] moving elements as words of type `E` (of the dtype's size).
fn gather_typed<E: bytemuck::Pod + Send + Sync>(
    inputs: &[FlexTensor],
    [batch, channels, plane]: [usize; 3],
    source: &(dyn Fn(usize) -> Option<(usize, usize)> + Sync),
) -> Bytes {
    let views: Vec<Planes<'_, E>> = inputs.iter().map(Planes::of).collect();
    let out = vec_by_chunks(
        batch * channels * plane,
        channels * plane,
        true,
        |image, out_image| {
            for (j, dst) in out_image.chunks_exact_mut(plane.max(1)).enumerate() {
                if let Some((input, channel)) = source(j) {
                    dst.copy_from_slice(views[input].plane(image, channel));
                }
            }
        },
    );
    Bytes::from_elems(out)
}

/// `cat([first, second], dim = 1)`: `[batch, c1 + c2, h, w]`, contiguous.
///
/// # Panics
/// If the tensors are not 4-D, disagree in batch, height, width or dtype.
pub fn cat_channels(first: &FlexTensor, second: &FlexTensor) -> FlexTensor {
    cat_channels_shuffled(first, second, 1)
}

/// [`channel_shuffle`]`(`[`cat_channels`]`(first, second), groups)` in one copy (ShuffleNetV2's
/// units end so): `[batch, c1 + c2, h, w]`, contiguous.
///
/// # Panics
/// If the tensors are not 4-D, disagree in batch, height, width or dtype, or `groups` is 0 or
/// does not divide `c1 + c2`.
pub fn cat_channels_shuffled(first: &FlexTensor, second: &FlexTensor, groups: usize) -> FlexTensor {
    let [batch, c1, h, w] = dims_of(first);
    let [batch2, c2, h2, w2] = dims_of(second);
    assert!(
        (batch, h, w) == (batch2, h2, w2) && first.dtype() == second.dtype(),
        "cat_channels: [{batch}, _, {h}, {w}] {:?} and [{batch2}, _, {h2}, {w2}] {:?} disagree",
        first.dtype(),
        second.dtype()
    );
    let shuffle = Shuffle::new(c1 + c2, groups);
    let source = move |j: usize| match shuffle.source(j) {
        s if s < c1 => Some((0, s)),
        s => Some((1, s - c1)),
    };
    gather_planes(
        &[first.clone(), second.clone()],
        [batch, c1 + c2, h, w],
        &source,
    )
}

/// Channels `[start, start + len)` of `tensor` (`[batch, channels, h, w]`), contiguous: the
/// gradient of one part of [`cat_channels`].
pub fn narrow_channels(tensor: &FlexTensor, start: usize, len: usize) -> FlexTensor {
    unshuffled_channels(tensor, start, len, 1)
}

/// Channels `[start, start + len)` of the tensor whose shuffle in `groups` groups is `shuffled`
/// (`[batch, channels, h, w]`), contiguous: the gradient of one part of
/// [`cat_channels_shuffled`].
///
/// # Panics
/// If the channels are out of range, or `groups` is 0 or does not divide them.
pub fn unshuffled_channels(
    shuffled: &FlexTensor,
    start: usize,
    len: usize,
    groups: usize,
) -> FlexTensor {
    let [batch, channels, h, w] = dims_of(shuffled);
    assert!(
        start + len <= channels,
        "narrow_channels: channels {start}..{} of {channels}",
        start + len
    );
    let shuffle = Shuffle::new(channels, groups);
    let source = move |j: usize| Some((0, shuffle.position(start + j)));
    gather_planes(std::slice::from_ref(shuffled), [batch, len, h, w], &source)
}

/// `part` (`[batch, len, h, w]`) as channels `[start, start + len)` of a `[batch, channels, h,
/// w]` tensor of zeros, contiguous: the gradient of a channel slice.
///
/// # Panics
/// If the part does not fit in `channels`.
pub fn widen_channels(part: &FlexTensor, start: usize, channels: usize) -> FlexTensor {
    let [batch, len, h, w] = dims_of(part);
    assert!(
        start + len <= channels,
        "widen_channels: channels {start}..{} of {channels}",
        start + len
    );
    let source = move |j: usize| (start..start + len).contains(&j).then(|| (0, j - start));
    gather_planes(std::slice::from_ref(part), [batch, channels, h, w], &source)
}

/// ShuffleNet's channel shuffle of `channels` channels in `groups` groups, as a permutation.
#[derive(Clone, Copy, Debug)]
struct Shuffle {
    groups: usize,
    per_group: usize,
}

impl Shuffle {
    /// # Panics
    /// If `groups` is 0 or does not divide `channels`.
    fn new(channels: usize, groups: usize) -> Self {
        assert!(
            groups > 0 && channels.is_multiple_of(groups),
            "channel_shuffle: {channels} channels in {groups} groups"
        );
        Self {
            groups,
            per_group: channels / groups,
        }
    }

    /// The input channel that output channel `j` holds: `k · channels/groups + i` for
    /// `j = i · groups + k`.
    fn source(self, j: usize) -> usize {
        (j % self.groups) * self.per_group + j / self.groups
    }

    /// The output channel that input channel `s` goes to (the inverse of [`Shuffle::source`]).
    fn position(self, s: usize) -> usize {
        (s % self.per_group) * self.groups + s / self.per_group
    }
}

/// ShuffleNet's channel shuffle of `tensor` (`[batch, channels, h, w]`) in `groups` groups:
/// output channel `i · groups + k` is input channel `k · channels/groups + i`, as
/// `x.view(b, g, c/g, h, w).transpose(1, 2).reshape(b, c, h, w)` computes it. Its inverse (and
/// gradient) is the shuffle in `channels / groups` groups.
///
/// # Panics
/// If `groups` is 0 or does not divide the channels.
pub fn channel_shuffle(tensor: &FlexTensor, groups: usize) -> FlexTensor {
    let dims = dims_of(tensor);
    let shuffle = Shuffle::new(dims[1], groups);
    let source = move |j: usize| Some((0, shuffle.source(j)));
    gather_planes(std::slice::from_ref(tensor), dims, &source)
}

/// Whether the copies handle `dtype` (every dtype of 1, 2, 4 or 8 bytes).
pub(crate) fn supports(dtype: DType) -> bool {
    matches!(dtype.size(), 1 | 2 | 4 | 8) && !matches!(dtype, DType::QFloat(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::TensorData;

    fn tensor(shape: [usize; 4]) -> FlexTensor {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|v| v as f32).collect();
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }

    fn values(tensor: FlexTensor) -> Vec<f32> {
        tensor.into_data().to_vec::<f32>().unwrap()
    }

    /// Planes of `tensor` (`[b, c, h, w]`, values = flat index) in order, as `(b, c)` pairs.
    fn plane_ids(tensor: FlexTensor, [_, c, h, w]: [usize; 4]) -> Vec<(usize, usize)> {
        values(tensor)
            .chunks(h * w)
            .map(|plane| {
                let first = plane[0] as usize / (h * w);
                (first / c, first % c)
            })
            .collect()
    }

    #[test]
    fn shuffle_interleaves_groups_and_its_inverse_undoes_it() {
        let x = tensor([2, 6, 2, 3]);
        let shuffled = channel_shuffle(&x, 2);
        let ids = plane_ids(shuffled.clone(), [2, 6, 2, 3]);
        let expected: Vec<(usize, usize)> = (0..2)
            .flat_map(|b| [0, 3, 1, 4, 2, 5].map(|c| (b, c)))
            .collect();
        assert_eq!(ids, expected);
        assert_eq!(values(channel_shuffle(&shuffled, 3)), values(x));
    }

    #[test]
    fn cat_then_narrow_round_trips_on_strided_inputs() {
        let whole = tensor([3, 5, 2, 2]);
        // A channel slice (strided view) and a plain tensor.
        let part = whole.narrow(1, 1, 3);
        assert!(!part.is_contiguous());
        let other = tensor([3, 2, 2, 2]);
        let joined = cat_channels(&part, &other);
        assert_eq!(joined.layout().shape().to_vec(), vec![3, 5, 2, 2]);
        assert_eq!(
            values(narrow_channels(&joined, 0, 3)),
            values(part.to_contiguous())
        );
        assert_eq!(values(narrow_channels(&joined, 3, 2)), values(other));
    }

    #[test]
    fn a_shuffled_cat_is_the_shuffle_of_the_cat_and_its_parts_come_back() {
        let (first, second) = (tensor([2, 4, 1, 3]), tensor([2, 2, 1, 3]).narrow(1, 0, 2));
        for groups in [1, 2, 3, 6] {
            let fused = cat_channels_shuffled(&first, &second, groups);
            let composed = channel_shuffle(&cat_channels(&first, &second), groups);
            assert_eq!(values(fused.clone()), values(composed), "{groups} groups");
            let parts = (
                unshuffled_channels(&fused, 0, 4, groups),
                unshuffled_channels(&fused, 4, 2, groups),
            );
            assert_eq!(values(parts.0), values(first.clone()), "{groups} groups");
            assert_eq!(values(parts.1), values(second.clone()), "{groups} groups");
        }
    }

    #[test]
    fn a_widened_part_is_the_part_between_zeros() {
        let part = tensor([2, 3, 1, 2]).narrow(1, 1, 2);
        let wide = widen_channels(&part, 1, 4);
        assert_eq!(wide.layout().shape().to_vec(), vec![2, 4, 1, 2]);
        let image = |b: f32| {
            let first = b * 6.0;
            [
                0.0,
                0.0,
                first + 2.0,
                first + 3.0,
                first + 4.0,
                first + 5.0,
                0.0,
                0.0,
            ]
        };
        assert_eq!(values(wide), [image(0.0), image(1.0)].concat());
    }

    #[test]
    fn every_width_of_element_is_copied() {
        let data = TensorData::new((0..8i64).collect::<Vec<_>>(), vec![1, 4, 1, 2]);
        let x = FlexTensor::from_data(data);
        let shuffled = channel_shuffle(&x, 2).into_data().to_vec::<i64>().unwrap();
        assert_eq!(shuffled, vec![0, 1, 4, 5, 2, 3, 6, 7]);
    }
}
