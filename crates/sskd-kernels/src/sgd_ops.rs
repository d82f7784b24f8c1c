//! [`sgd_step`]: one step of SGD with momentum and weight decay on a parameter, through
//! [`sgd_kernels`](crate::sgd_kernels) (one pass on all cores) on the CPU backend.

use burn::backend::Flex;
use burn::tensor::{backend::Backend, DType, Tensor};

use crate::backend_type::{is, primitive_of, tensor_of};
use crate::sgd_kernels::{self, SgdScalars};

/// Whether [`sgd_step`] takes parameters of `dtype` on backend `B`: `Flex` (the inner backend
/// of `Autodiff<Flex>`, where optimizers run), `f32` or `f64`, the kernels switched on.
pub fn sgd_step_applies<B: Backend>(dtype: DType) -> bool {
    crate::enabled() && is::<B, Flex>() && sgd_kernels::supports(dtype)
}

/// One step of `torch.optim.SGD` (momentum, coupled weight decay, no dampening or Nesterov) of
/// `weight` with its gradient `grad` and its `velocity` (`None` at the first step, and always
/// when μ = 0): the new weight and velocity, in one pass on all cores, with the same values as
/// the composite `d = g + w·λ; v = v·μ + d; w − v·lr` of Burn's tensor operations.
///
/// # Panics
/// Unless [`sgd_step_applies`]`::<B>(weight.dtype())`; if the tensors' shapes differ.
///
/// # Shapes
/// - weight, grad, velocity: one shape, the outputs the same
pub fn sgd_step<B: Backend, const D: usize>(
    weight: Tensor<B, D>,
    grad: Tensor<B, D>,
    velocity: Option<Tensor<B, D>>,
    scalars: SgdScalars,
) -> (Tensor<B, D>, Option<Tensor<B, D>>) {
    assert!(
        sgd_step_applies::<B>(weight.dtype()),
        "sgd_step: a {:?} parameter on a backend other than Flex",
        weight.dtype()
    );
    let (weight, velocity) = sgd_kernels::sgd_update(
        primitive_of::<Flex, _, D>(weight),
        primitive_of::<Flex, _, D>(grad),
        velocity.map(primitive_of::<Flex, _, D>),
        scalars,
    );
    (
        tensor_of::<B, Flex, D>(weight),
        velocity.map(tensor_of::<B, Flex, D>),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of both signs over `len` elements, long enough for the parallel pass.
    fn values(len: usize, seed: u64, dtype: DType) -> Tensor<Flex, 1> {
        let values: Vec<f64> = (0..len as u64)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 101.0 - 5.0)
            .collect();
        Tensor::<Flex, 1>::from_floats(values.as_slice(), &Default::default()).cast(dtype)
    }

    /// The composite of Burn's operations the kernel replaces (sskd-train's `Sgd::step`).
    fn composite(
        weight: Tensor<Flex, 1>,
        grad: Tensor<Flex, 1>,
        velocity: Option<Tensor<Flex, 1>>,
        s: SgdScalars,
    ) -> (Tensor<Flex, 1>, Option<Tensor<Flex, 1>>) {
        let direction = match s.weight_decay {
            0.0 => grad,
            decay => grad.add(weight.clone().mul_scalar(decay)),
        };
        let (direction, velocity) = match (s.momentum, velocity) {
            (0.0, _) => (direction, None),
            (_, None) => (direction.clone(), Some(direction)),
            (momentum, Some(v)) => {
                let v = v.mul_scalar(momentum).add(direction);
                (v.clone(), Some(v))
            }
        };
        (weight.sub(direction.mul_scalar(s.lr)), velocity)
    }

    fn bits(tensor: Tensor<Flex, 1>) -> Vec<f64> {
        tensor.into_data().convert::<f64>().to_vec::<f64>().unwrap()
    }

    /// Bit for bit the composite's values, in `f32` and `f64`, on the serial and parallel
    /// passes, with and without momentum and weight decay, at the first step and after it;
    /// inputs still held elsewhere are not written.
    #[test]
    fn steps_match_the_composite_bit_for_bit() {
        for dtype in [DType::F32, DType::F64] {
            for len in [37, 70_001] {
                for (momentum, weight_decay) in [(0.9, 5e-4), (0.0, 5e-4), (0.9, 0.0), (0.0, 0.0)] {
                    let s = SgdScalars {
                        lr: 0.05,
                        momentum,
                        weight_decay,
                    };
                    let (w, g) = (values(len, 1, dtype), values(len, 2, dtype));
                    let (w1, v1) = sgd_step(w.clone(), g.clone(), None, s);
                    let (cw1, cv1) = composite(w.clone(), g.clone(), None, s);
                    assert_eq!(bits(w1.clone()), bits(cw1), "{dtype:?} {len} {s:?}: first");
                    assert_eq!(v1.clone().map(bits), cv1.map(bits));
                    let g2 = values(len, 3, dtype);
                    let (w2, v2) = sgd_step(w1.clone(), g2.clone(), v1.clone(), s);
                    let (cw2, cv2) = composite(w1, g2, v1, s);
                    assert_eq!(bits(w2), bits(cw2), "{dtype:?} {len} {s:?}: second");
                    assert_eq!(v2.map(bits), cv2.map(bits));
                    assert_eq!(bits(w), bits(values(len, 1, dtype)), "a held input changed");
                }
            }
        }
    }

    #[test]
    fn other_types_and_backends_are_left_to_the_composite() {
        assert!(sgd_step_applies::<Flex>(DType::F32));
        assert!(!sgd_step_applies::<Flex>(DType::F16));
        assert!(!sgd_step_applies::<burn::backend::Autodiff<Flex>>(
            DType::F32
        ));
    }
}
