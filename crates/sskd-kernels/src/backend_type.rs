//! The run-time check that takes the kernels: is the generic backend `B` one of Flex's types?

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, ComputePropertyDone, OpsKind, OpsPrep};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

/// The CPU backend with autodiff, as Burn's book writes it.
pub(crate) type CpuAutodiff = Autodiff<Flex>;

/// Whether `B` is `Target`.
pub(crate) fn is<B: 'static, Target: 'static>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Target>()
}

/// `value` as type `To`, which the caller has checked it is (with [`is`]).
pub(crate) fn same_type<From: 'static, To: 'static>(value: From) -> To {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<To>()
        .unwrap_or_else(|_| unreachable!("the caller compared the type ids"))
}

/// `tensor`'s float primitive as backend `Target`'s, which the caller has checked `B` is.
pub(crate) fn primitive_of<Target: Backend, B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> FloatTensor<Target> {
    same_type::<_, Tensor<Target, D>>(tensor)
        .into_primitive()
        .tensor()
}

/// A float primitive of backend `Source` as a tensor of `B`, which the caller has checked
/// `Source` is.
pub(crate) fn tensor_of<B: Backend, Source: Backend, const D: usize>(
    primitive: FloatTensor<Source>,
) -> Tensor<B, D> {
    same_type(Tensor::<Source, D>::from_primitive(TensorPrimitive::Float(
        primitive,
    )))
}

/// Which implementation an operation of this crate takes for a tensor of backend `B`.
pub(crate) enum KernelPath {
    /// This crate's autodiff operation over its `Flex` kernels.
    Autodiff,
    /// This crate's `Flex` kernels.
    Flex,
    /// Burn's own tensor operations.
    Burn,
}

/// The path for backend `B`, where this crate's kernels take the tensors' type when
/// `supported`: Burn's when the kernels are switched off, not supported, or `B` is not
/// `Autodiff<Flex>` or `Flex`.
pub(crate) fn kernel_path<B: Backend>(supported: bool) -> KernelPath {
    if !crate::enabled() || !supported {
        return KernelPath::Burn;
    }
    if is::<B, CpuAutodiff>() {
        return KernelPath::Autodiff;
    }
    if is::<B, Flex>() {
        return KernelPath::Flex;
    }
    KernelPath::Burn
}

/// The autodiff tensor of an operation's `output`: recorded with `state` for the backward pass
/// of `Op` when a parent of `prep` tracks gradients, a constant otherwise.
pub(crate) fn finish<Op: Backward<Flex, N>, const N: usize>(
    prep: OpsPrep<Op, Flex, Op::State, NoCheckpointing, N, ComputePropertyDone>,
    state: Op::State,
    output: FlexTensor,
) -> FloatTensor<CpuAutodiff> {
    match prep.stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
