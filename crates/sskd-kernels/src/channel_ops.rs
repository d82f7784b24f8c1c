//! Channel concatenation and channel shuffle through
//! [`channel_kernels`](crate::channel_kernels) on the CPU backend, and through Burn's own
//! tensor operations on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use std::ops::Range;

use crate::backend_type::{
    finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath as Path,
};
use crate::channel_kernels;

fn path_for<B: Backend>(x: &Tensor<B, 4>) -> Path {
    kernel_path::<B>(channel_kernels::supports(x.dtype()))
}

/// ShuffleNet's channel shuffle in `groups` groups: output channel `i · groups + k` is input
/// channel `k · channels/groups + i`, as PyTorch's
/// `x.view(b, g, c/g, h, w).transpose(1, 2).reshape(b, c, h, w)`.
///
/// On `Autodiff<Flex>` and `Flex` one copy of whole planes (forward and gradient, both
/// contiguous); elsewhere Burn's `reshape → swap_dims → reshape`.
///
/// # Shapes
/// - x `[batch, channels, h, w]`, output the same
///
/// # Panics
/// If `groups` is 0 or does not divide the channels.
pub fn channel_shuffle<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    assert!(
        groups > 0 && channels.is_multiple_of(groups),
        "channel_shuffle: {channels} channels in {groups} groups"
    );
    match path_for(&x) {
        Path::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, 4>(x);
            tensor_of::<B, CpuAutodiff, 4>(shuffle_tracked(x, groups))
        }
        Path::Flex => {
            let x = primitive_of::<Flex, _, 4>(x);
            tensor_of::<B, Flex, 4>(channel_kernels::channel_shuffle(&x, groups))
        }
        Path::Burn => x
            .reshape([batch, groups, channels / groups, height, width])
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]),
    }
}

/// `cat([first, second], 1)`: the channels of `first`, then those of `second`.
///
/// On `Autodiff<Flex>` and `Flex` one copy of whole planes, and the two gradients come back as
/// contiguous tensors (Burn's are strided slices of the output gradient, which burn-flex's
/// element-wise operations then walk element by element); elsewhere `Tensor::cat`.
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`
///
/// # Panics
/// If batch, height or width disagree.
pub fn cat_channels<B: Backend>(first: Tensor<B, 4>, second: Tensor<B, 4>) -> Tensor<B, 4> {
    cat_channels_shuffled(first, second, 1)
}

/// [`channel_shuffle`]`(`[`cat_channels`]`(first, second), groups)`, as ShuffleNetV2's units
/// end.
///
/// On `Autodiff<Flex>` and `Flex` one copy of whole planes, and each gradient one copy back
/// (contiguous); elsewhere Burn's concatenation and shuffle.
///
/// # Shapes
/// - first `[batch, c1, h, w]`, second `[batch, c2, h, w]`, output `[batch, c1 + c2, h, w]`
///
/// # Panics
/// If batch, height or width disagree, or `groups` is 0 or does not divide `c1 + c2`.
pub fn cat_channels_shuffled<B: Backend>(
    first: Tensor<B, 4>,
    second: Tensor<B, 4>,
    groups: usize,
) -> Tensor<B, 4> {
    let same_dtype = first.dtype() == second.dtype();
    match path_for(&first) {
        Path::Autodiff if same_dtype => {
            let first = primitive_of::<CpuAutodiff, _, 4>(first);
            let second = primitive_of::<CpuAutodiff, _, 4>(second);
            tensor_of::<B, CpuAutodiff, 4>(cat_tracked(first, second, groups))
        }
        Path::Flex if same_dtype => {
            let first = primitive_of::<Flex, _, 4>(first);
            let second = primitive_of::<Flex, _, 4>(second);
            let output = channel_kernels::cat_channels_shuffled(&first, &second, groups);
            tensor_of::<B, Flex, 4>(output)
        }
        _ if groups == 1 => Tensor::cat(vec![first, second], 1),
        _ => channel_shuffle(Tensor::cat(vec![first, second], 1), groups),
    }
}

/// Channels `range` of `x`, as `x.slice([.., range, .., ..])`.
///
/// On `Autodiff<Flex>` and `Flex` the same strided view as Burn's slice, and its gradient one
/// pass (the part's planes between zero planes; Burn's zero-fills the whole gradient, then
/// copies the part into it); elsewhere Burn's slice.
///
/// # Shapes
/// - x `[batch, channels, h, w]`, output `[batch, range.len(), h, w]`
///
/// # Panics
/// If `range` is not within the channels.
pub fn narrow_channels<B: Backend>(x: Tensor<B, 4>, range: Range<usize>) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    assert!(
        range.start <= range.end && range.end <= channels,
        "narrow_channels: channels {range:?} of {channels}"
    );
    match path_for(&x) {
        Path::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, 4>(x);
            tensor_of::<B, CpuAutodiff, 4>(narrow_tracked(x, range))
        }
        _ => x.slice([0..batch, range, 0..height, 0..width]),
    }
}

/// The channel slice's autodiff operation; its state is the slice's first channel and the
/// input's channel count.
#[derive(Debug)]
struct NarrowBackward;

impl Backward<Flex, 1> for NarrowBackward {
    type State = (usize, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (start, channels) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            channel_kernels::widen_channels(&grad, start, channels)
        });
    }
}

fn narrow_tracked(x: FloatTensor<CpuAutodiff>, range: Range<usize>) -> FloatTensor<CpuAutodiff> {
    let channels = x.primitive.layout().shape()[1];
    let output = x.primitive.narrow(1, range.start, range.len());
    let prep = NarrowBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), (range.start, channels), output)
}

/// The shuffle's autodiff operation; its state is the group count.
#[derive(Debug)]
struct ShuffleBackward;

impl Backward<Flex, 1> for ShuffleBackward {
    type State = usize;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let groups = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |output_grad| {
            let inverse_groups = output_grad.layout().shape()[1] / groups;
            channel_kernels::channel_shuffle(&output_grad, inverse_groups)
        });
    }
}

fn shuffle_tracked(x: FloatTensor<CpuAutodiff>, groups: usize) -> FloatTensor<CpuAutodiff> {
    let output = channel_kernels::channel_shuffle(&x.primitive, groups);
    let prep = ShuffleBackward.prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), groups, output)
}

/// The (shuffled) concatenation's autodiff operation; its state is the channel count of the
/// first part and the shuffle's groups.
#[derive(Debug)]
struct CatBackward;

impl Backward<Flex, 2> for CatBackward {
    type State = (usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (split, groups) = ops.state;
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| channel_kernels::unshuffled_channels(&grad, 0, split, groups),
            |grad| {
                let channels = grad.layout().shape()[1];
                channel_kernels::unshuffled_channels(&grad, split, channels - split, groups)
            },
        );
    }
}

fn cat_tracked(
    first: FloatTensor<CpuAutodiff>,
    second: FloatTensor<CpuAutodiff>,
    groups: usize,
) -> FloatTensor<CpuAutodiff> {
    let split = first.primitive.layout().shape()[1];
    let output =
        channel_kernels::cat_channels_shuffled(&first.primitive, &second.primitive, groups);
    let prep = CatBackward.prepare::<NoCheckpointing>([first.node, second.node]);
    finish(prep.compute_bound(), (split, groups), output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::{Int, Tolerance};

    type Ad = Autodiff<Flex>;

    /// Distinct, irregular values (no shared random seed: tests run in parallel).
    fn random(shape: [usize; 4], seed: u64) -> Tensor<Ad, 4> {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len as u64)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f32 / 1009.0 - 0.5)
            .collect();
        Tensor::<Ad, 1>::from_floats(values.as_slice(), &Default::default())
            .reshape(shape)
            .require_grad()
    }

    fn burn_shuffle<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        x.reshape([b, groups, c / groups, h, w])
            .swap_dims(1, 2)
            .reshape([b, c, h, w])
    }

    /// A weighting that tells every output element apart, so a misplaced gradient shows.
    fn weights(shape: [usize; 4]) -> Tensor<Ad, 4> {
        let len: usize = shape.iter().product();
        Tensor::<Ad, 1, Int>::arange(0..len as i64, &Default::default())
            .float()
            .reshape(shape)
    }

    #[test]
    fn shuffle_matches_burns_composite_with_its_gradient() {
        let x = random([2, 6, 3, 4], 1);
        let ours = channel_shuffle(x.clone(), 3);
        let burns = burn_shuffle(x.clone(), 3);
        ours.to_data().assert_eq(&burns.to_data(), true);
        let ours_grad = x.grad(&(ours * weights([2, 6, 3, 4])).sum().backward());
        let burns_grad = x.grad(&(burns * weights([2, 6, 3, 4])).sum().backward());
        ours_grad
            .unwrap()
            .to_data()
            .assert_eq(&burns_grad.unwrap().to_data(), true);
    }

    #[test]
    fn cat_matches_burns_with_both_gradients_from_a_sliced_input() {
        // Each graph gets inputs of its own: a backward pass frees the nodes it walked.
        let run = |cat: fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
            let whole = random([2, 7, 3, 3], 2);
            let second = random([2, 4, 3, 3], 3);
            let first = whole.clone().slice([0..2, 2..5, 0..3, 0..3]);
            let out = cat(first, second.clone());
            let grads = (out.clone() * weights([2, 7, 3, 3])).sum().backward();
            let grad_of = |input: &Tensor<Ad, 4>| input.grad(&grads).unwrap().to_data();
            (out.to_data(), grad_of(&whole), grad_of(&second))
        };
        let ours = run(cat_channels);
        let burns = run(|a, b| Tensor::cat(vec![a, b], 1));
        let exact = Tolerance::absolute(0.0);
        ours.0.assert_approx_eq::<f32>(&burns.0, exact);
        ours.1.assert_approx_eq::<f32>(&burns.1, exact);
        ours.2.assert_approx_eq::<f32>(&burns.2, exact);
    }

    #[test]
    fn a_shuffled_cat_matches_burns_cat_then_shuffle_with_both_gradients() {
        for groups in [2, 3] {
            let run = |cat: &dyn Fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
                let whole = random([2, 7, 3, 3], 5);
                let second = random([2, 2, 3, 3], 6);
                let first = whole.clone().slice([0..2, 1..5, 0..3, 0..3]);
                let out = cat(first, second.clone());
                let grads = (out.clone() * weights([2, 6, 3, 3])).sum().backward();
                let grad_of = |input: &Tensor<Ad, 4>| input.grad(&grads).unwrap().to_data();
                (out.to_data(), grad_of(&whole), grad_of(&second))
            };
            let ours = run(&|a, b| cat_channels_shuffled(a, b, groups));
            let burns = run(&|a, b| burn_shuffle(Tensor::cat(vec![a, b], 1), groups));
            ours.0.assert_eq(&burns.0, true);
            ours.1.assert_eq(&burns.1, true);
            ours.2.assert_eq(&burns.2, true);
        }
    }

    #[test]
    fn a_channel_slice_matches_burns_with_its_gradient() {
        let run = |narrow: &dyn Fn(Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
            let x = random([2, 7, 3, 3], 7);
            // Two slices of one input, as a ShuffleNetV2 unit takes: their gradients add up.
            let (first, second) = (narrow(x.clone()), x.clone().slice([0..2, 5..7, 0..3, 0..3]));
            let out = cat_channels(first, second);
            let grads = (out.clone() * weights([2, 5, 3, 3])).sum().backward();
            (out.to_data(), x.grad(&grads).unwrap().to_data())
        };
        let ours = run(&|x| narrow_channels(x, 1..4));
        let burns = run(&|x| x.slice([0..2, 1..4, 0..3, 0..3]));
        ours.0.assert_eq(&burns.0, true);
        ours.1.assert_eq(&burns.1, true);
    }

    #[test]
    fn only_the_tracked_part_gets_a_gradient() {
        let tracked = random([1, 2, 2, 2], 4);
        let constant = Tensor::<Ad, 4>::ones([1, 3, 2, 2], &Default::default());
        let out = cat_channels(constant.clone(), tracked.clone());
        let grads = out.sum().backward();
        assert!(constant.grad(&grads).is_none());
        assert_eq!(tracked.grad(&grads).unwrap().dims(), [1, 2, 2, 2]);
    }
}
