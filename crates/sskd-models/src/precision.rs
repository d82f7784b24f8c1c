//! Changing the float type of a whole module (parameters and running statistics).
//!
//! Burn creates parameters in the backend's default float type (`f32`); a CPU run in `f64`
//! (burn-flex keeps each tensor's type at run time) casts the model once, after loading its
//! weights, and feeds it `f64` inputs. Every operation then stays in `f64`, including the
//! optimizer's state, which is created from the gradients.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, DType, Tensor};

/// Casts every float tensor it visits to one type, keeping each parameter's id and whether it
/// is trained.
struct CastFloats {
    dtype: DType,
}

impl<B: Backend> ModuleMapper<B> for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.dtype;
        param.map(|tensor| {
            if tensor.dtype() == dtype {
                return tensor;
            }
            let trained = tensor.is_require_grad();
            // A fresh leaf: the cast must not become a node between the parameter and its grad.
            let cast = tensor.cast(dtype).detach();
            if trained {
                cast.require_grad()
            } else {
                cast
            }
        })
    }
}

/// `module` with every float parameter and running statistic in `dtype` (`F32`, `F64`, …).
pub fn cast_floats<B: Backend, M: Module<B>>(module: M, dtype: DType) -> M {
    module.map(&mut CastFloats { dtype })
}

/// Remembers the float type of the first float tensor it visits.
struct FirstFloatType(Option<DType>);

impl<B: Backend> ModuleVisitor<B> for FirstFloatType {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.0.is_none() {
            self.0 = Some(param.val().dtype());
        }
    }
}

/// The float type of `module`'s parameters (of its first one; [`cast_floats`] makes them
/// all alike), or `None` for a module without float tensors. Inputs are cast to it.
pub fn float_dtype<B: Backend, M: Module<B>>(module: &M) -> Option<DType> {
    let mut visitor = FirstFloatType(None);
    module.visit(&mut visitor);
    visitor.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_norm::BatchNormConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type B = Autodiff<Flex>;

    #[test]
    fn parameters_and_running_statistics_change_type_and_stay_trainable() {
        let device = Default::default();
        let layer = BatchNormConfig::new(3).init::<B>(&device);
        assert_eq!(float_dtype(&layer), Some(DType::F32));
        let layer = cast_floats(layer, DType::F64);
        assert_eq!(float_dtype(&layer), Some(DType::F64));
        assert_eq!(layer.gamma.val().dtype(), DType::F64);
        assert_eq!(layer.running_var.value().dtype(), DType::F64);
        let input = Tensor::<B, 2>::random([4, 3], Distribution::Default, &device).cast(DType::F64);
        let output = layer.forward(input);
        assert_eq!(output.dtype(), DType::F64);
        let grads = output.sum().backward();
        let gamma_grad = layer.gamma.grad(&grads).expect("γ is still trained");
        assert_eq!(gamma_grad.dtype(), DType::F64);
        assert_eq!(layer.running_mean.value_sync().dtype(), DType::F64);
    }
}
