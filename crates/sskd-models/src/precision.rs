//! Changing the float type of a whole module (parameters and running statistics).
//!
//! Burn creates parameters in the backend's default float type (`f32`); a CPU run in `f64`
//! (burn-flex keeps each tensor's type at run time) casts the model once, after loading its
//! weights, and feeds it `f64` inputs. Every operation then stays in `f64`, including the
//! optimizer's state, which is created from the gradients.

use burn::module::{Module, ModuleMapper, Param};
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
        let layer = cast_floats(BatchNormConfig::new(3).init::<B>(&device), DType::F64);
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
