//! One step of SGD with momentum and coupled weight decay on a burn-flex parameter, in one pass
//! on all cores, written over the parameter's (and the velocity's) own buffer.
//!
//! `torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov=False)`:
//! `d = g + λ·w` (`d = g` when λ = 0); `v = d` at the first step, else `v = μ·v + d`;
//! `w ← w − lr·v` (`w ← w − lr·d` when μ = 0). Each element is computed as the composite of
//! tensor operations computes it (`w·λ`, then `g + ·`; `v·μ`, then `· + d`; `v·lr`, then
//! `w − ·`; the scalars in the tensors' type), so the two give the same bits. burn-flex 0.21 runs
//! that composite's five passes on one thread, while the other cores wait for the next step.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;
use num_traits::Float;
use rayon::prelude::*;

use crate::elementwise_kernels::{contiguous, for_each_slice, owned_contiguous, same_shape};
use crate::parallel_chunks::{slice_len, PARALLEL_ELEMENTS};

/// Whether [`sgd_update`] handles parameters of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// The scalars of an SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdScalars {
    /// The learning rate `lr`.
    pub lr: f64,
    /// The momentum μ (0: no velocity kept).
    pub momentum: f64,
    /// The coupled weight decay λ.
    pub weight_decay: f64,
}

/// A float type the step runs in (`f32`, `f64`).
trait StepFloat: Element + bytemuck::Pod + Float + Send + Sync {}
impl StepFloat for f32 {}
impl StepFloat for f64 {}

/// The step's scalars in the parameter's type, as Burn's scalar operations convert them.
struct Scalars<T> {
    lr: T,
    momentum: T,
    decay: Option<T>,
}

impl<T: StepFloat> Scalars<T> {
    fn of(scalars: SgdScalars) -> Self {
        let cast = |v: f64| T::from(v).expect("a float scalar converts");
        Self {
            lr: cast(scalars.lr),
            momentum: cast(scalars.momentum),
            decay: (scalars.weight_decay != 0.0).then(|| cast(scalars.weight_decay)),
        }
    }

    /// `d = g + λ·w`.
    #[inline]
    fn direction(&self, weight: T, grad: T) -> T {
        match self.decay {
            Some(decay) => grad + weight * decay,
            None => grad,
        }
    }
}

/// `work(w, a, b)` over equally long `w` (written), `a` (written) and `b` (read), on all cores
/// when they are long.
fn for_each_triple<T: Send + Sync>(
    w: &mut [T],
    a: &mut [T],
    b: &[T],
    work: impl Fn(&mut T, &mut T, &T) + Sync + Send,
) {
    let len = w.len();
    assert!(a.len() == len && b.len() == len, "SGD step: lengths differ");
    if len < PARALLEL_ELEMENTS {
        w.iter_mut()
            .zip(a.iter_mut())
            .zip(b)
            .for_each(|((w, a), b)| work(w, a, b));
        return;
    }
    let slice = slice_len(len);
    w.par_chunks_mut(slice)
        .zip(a.par_chunks_mut(slice))
        .zip(b.par_chunks(slice))
        .for_each(|((w, a), b)| {
            w.iter_mut()
                .zip(a.iter_mut())
                .zip(b)
                .for_each(|((w, a), b)| work(w, a, b));
        });
}

fn update_typed<T: StepFloat>(
    mut weight: FlexTensor,
    mut grad: FlexTensor,
    velocity: Option<FlexTensor>,
    scalars: SgdScalars,
) -> (FlexTensor, Option<FlexTensor>) {
    let s = Scalars::<T>::of(scalars);
    if scalars.momentum == 0.0 {
        let grad = contiguous::<T>(&grad);
        let g = grad.storage::<T>();
        let w = owned_contiguous::<T>(&mut weight);
        for_each_slice(w, |start, part| {
            for (w, &g) in part.iter_mut().zip(&g[start..]) {
                *w = *w - s.direction(*w, g) * s.lr;
            }
        });
        return (weight, None);
    }
    match velocity {
        // The first step: the gradient's buffer becomes the velocity, `v = d`.
        None => {
            let w = owned_contiguous::<T>(&mut weight);
            let v = owned_contiguous::<T>(&mut grad);
            for_each_pair(w, v, |w, v| {
                *v = s.direction(*w, *v);
                *w = *w - *v * s.lr;
            });
            (weight, Some(grad))
        }
        Some(mut velocity) => {
            let grad = contiguous::<T>(&grad);
            let w = owned_contiguous::<T>(&mut weight);
            let v = owned_contiguous::<T>(&mut velocity);
            for_each_triple(w, v, grad.storage::<T>(), |w, v, &g| {
                *v = *v * s.momentum + s.direction(*w, g);
                *w = *w - *v * s.lr;
            });
            (weight, Some(velocity))
        }
    }
}

/// `work(w, v)` over equally long `w` and `v` (both written), on all cores when long.
fn for_each_pair<T: Send + Sync>(
    w: &mut [T],
    v: &mut [T],
    work: impl Fn(&mut T, &mut T) + Sync + Send,
) {
    let len = w.len();
    assert_eq!(v.len(), len, "SGD step: lengths differ");
    if len < PARALLEL_ELEMENTS {
        w.iter_mut().zip(v.iter_mut()).for_each(|(w, v)| work(w, v));
        return;
    }
    let slice = slice_len(len);
    w.par_chunks_mut(slice)
        .zip(v.par_chunks_mut(slice))
        .for_each(|(w, v)| w.iter_mut().zip(v.iter_mut()).for_each(|(w, v)| work(w, v)));
}

/// One SGD step of `weight` with its gradient `grad` and, after the first step with momentum,
/// its `velocity`: the new weight and the new velocity (`None` when μ = 0), each in the
/// storage of the tensor it replaces when nothing else holds it (the gradient's at the first
/// step).
///
/// # Panics
/// If the tensors differ in shape or type, or are not `f32` or `f64` ([`supports`]).
pub fn sgd_update(
    weight: FlexTensor,
    grad: FlexTensor,
    velocity: Option<FlexTensor>,
    scalars: SgdScalars,
) -> (FlexTensor, Option<FlexTensor>) {
    same_shape(&weight, &grad, "sgd_update");
    if let Some(velocity) = &velocity {
        same_shape(&weight, velocity, "sgd_update");
    }
    per_float!(
        "sgd_update",
        weight.dtype(),
        update_typed(weight, grad, velocity, scalars)
    )
}
