//! The run-time check that takes the kernels: is the generic backend `B` one of Flex's types?

use std::any::{Any, TypeId};

use burn::backend::{Autodiff, Flex};

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
