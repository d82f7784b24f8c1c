//! ReLU, leaky ReLU and the sum of two tensors of one shape through
//! [`elementwise_kernels`](crate::elementwise_kernels) (all cores, in place where a buffer is
//! free) on the CPU backend, and through Burn's own operations on every other backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use crate::backend_type::{finish, kernel_path, primitive_of, tensor_of, CpuAutodiff, KernelPath};
use crate::elementwise_kernels;

fn path_for<B: Backend, const D: usize>(x: &Tensor<B, D>) -> KernelPath {
    kernel_path::<B>(elementwise_kernels::supports(x.dtype()))
}

/// The rectified linear unit `max(x, 0)`, as `burn::tensor::activation::relu`, with PyTorch's
/// NaN handling on the CPU backend (NaN stays NaN; Burn's `Flex` turns it into 0).
///
/// On `Autodiff<Flex>` and `Flex` one pass on all cores, written over `x`'s buffer when
/// nothing else holds it; the gradient likewise. Elsewhere Burn's `relu`.
///
/// # Shapes
/// - x: any, output the same
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    rectify(x, Rectifier::Relu)
}

/// Leaky ReLU, `x` where `x ≥ 0` and `negative_slope · x` elsewhere, as
/// `burn::tensor::activation::leaky_relu`, with PyTorch's gradient at 0 (`negative_slope ·
/// dy`; Burn's composite takes `dy`) on the CPU backend.
///
/// On `Autodiff<Flex>` and `Flex` one pass on all cores for `negative_slope ≥ 0`, written over
/// `x`'s buffer when nothing else holds it, and one for the gradient (burn-flex's composite
/// runs three serial passes, and more in the backward pass). Elsewhere, and for negative
/// slopes, Burn's `leaky_relu`.
///
/// # Shapes
/// - x: any, output the same
pub fn leaky_relu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    negative_slope: f64,
) -> Tensor<B, D> {
    if negative_slope >= 0.0 {
        rectify(x, Rectifier::Leaky(negative_slope))
    } else {
        burn::tensor::activation::leaky_relu(x, negative_slope)
    }
}

/// Which rectifier [`rectify`] applies.
#[derive(Clone, Copy, Debug)]
enum Rectifier {
    Relu,
    /// Leaky ReLU with this slope (`≥ 0`).
    Leaky(f64),
}

impl Rectifier {
    fn forward(self, x: FlexTensor) -> FlexTensor {
        match self {
            Rectifier::Relu => elementwise_kernels::relu(x),
            Rectifier::Leaky(slope) => elementwise_kernels::leaky_relu(x, slope),
        }
    }

    fn backward(self, output: &FlexTensor, grad: FlexTensor) -> FlexTensor {
        match self {
            Rectifier::Relu => elementwise_kernels::relu_backward(output, grad),
            Rectifier::Leaky(slope) => {
                elementwise_kernels::leaky_relu_backward(output, grad, slope)
            }
        }
    }

    fn burn<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Rectifier::Relu => burn::tensor::activation::relu(x),
            Rectifier::Leaky(slope) => burn::tensor::activation::leaky_relu(x, slope),
        }
    }
}

/// `rectifier` applied to `x` by the kernels where the backend is the CPU's, else by Burn.
fn rectify<B: Backend, const D: usize>(x: Tensor<B, D>, rectifier: Rectifier) -> Tensor<B, D> {
    match path_for(&x) {
        KernelPath::Autodiff => {
            let x = primitive_of::<CpuAutodiff, _, D>(x);
            tensor_of::<B, CpuAutodiff, D>(rectify_tracked(x, rectifier))
        }
        KernelPath::Flex => {
            let x = primitive_of::<Flex, _, D>(x);
            tensor_of::<B, Flex, D>(rectifier.forward(x))
        }
        KernelPath::Burn => rectifier.burn(x),
    }
}

/// `a + b` for tensors of one shape (a residual connection), as `a + b` by Burn's operator.
///
/// On `Autodiff<Flex>` and `Flex` one pass on all cores, written over an operand's buffer when
/// nothing else holds it. Elsewhere, and for operands of different shapes or types (Burn
/// broadcasts), Burn's `add`.
///
/// # Shapes
/// - a, b: the same shape (or shapes Burn broadcasts), output that shape
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return a + b;
    }
    match path_for(&a) {
        KernelPath::Autodiff => {
            let (a, b) = (
                primitive_of::<CpuAutodiff, _, D>(a),
                primitive_of::<CpuAutodiff, _, D>(b),
            );
            tensor_of::<B, CpuAutodiff, D>(add_tracked(a, b))
        }
        KernelPath::Flex => {
            let (a, b) = (primitive_of::<Flex, _, D>(a), primitive_of::<Flex, _, D>(b));
            tensor_of::<B, Flex, D>(elementwise_kernels::add(a, b))
        }
        KernelPath::Burn => a + b,
    }
}

/// A rectifier's autodiff operation; its state is the output (the gradient's mask).
#[derive(Debug)]
struct RectifierBackward(Rectifier);

impl Backward<Flex, 1> for RectifierBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            self.0.backward(&output, grad)
        });
    }
}

fn rectify_tracked(x: FloatTensor<CpuAutodiff>, rectifier: Rectifier) -> FloatTensor<CpuAutodiff> {
    let output = rectifier.forward(x.primitive);
    let prep = RectifierBackward(rectifier).prepare::<NoCheckpointing>([x.node]);
    finish(prep.compute_bound(), output.clone(), output)
}

/// The sum's autodiff operation: each operand's gradient is the output's.
#[derive(Debug)]
struct AddBackward;

impl Backward<Flex, 2> for AddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        binary::<Flex, _, _>(ops.parents, ops.node, grads, |grad| grad, |grad| grad);
    }
}

fn add_tracked(
    a: FloatTensor<CpuAutodiff>,
    b: FloatTensor<CpuAutodiff>,
) -> FloatTensor<CpuAutodiff> {
    let output = elementwise_kernels::add(a.primitive, b.primitive);
    AddBackward
        .prepare::<NoCheckpointing>([a.node, b.node])
        .compute_bound()
        .stateless(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Tolerance;

    type Ad = Autodiff<Flex>;

    /// Values of both signs, and zeros, in a `[2, 3, 5, 7]` tensor tracking its gradient.
    fn values(seed: u64) -> Tensor<Ad, 4> {
        let values: Vec<f64> = (0..210u64)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f64 / 101.0 - 5.0)
            .collect();
        Tensor::<Ad, 1>::from_floats(values.as_slice(), &Default::default())
            .reshape([2, 3, 5, 7])
            .require_grad()
    }

    /// `relu(a + b) · w`, summed, with the gradients of `a` and `b`, by the given ops.
    fn run(
        add: fn(Tensor<Ad, 4>, Tensor<Ad, 4>) -> Tensor<Ad, 4>,
        relu: fn(Tensor<Ad, 4>) -> Tensor<Ad, 4>,
    ) -> [burn::tensor::TensorData; 4] {
        let (a, b) = (values(1), values(2));
        let sum = add(a.clone(), b.clone());
        // `a` feeds the sum and, again, the loss: its gradient accumulates two terms.
        let out = relu(sum.clone()) * values(3).detach() + a.clone();
        let grads = out.clone().sum().backward();
        [
            out.into_data(),
            sum.into_data(),
            a.grad(&grads).unwrap().into_data(),
            b.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn match_burns_operations_with_their_gradients() {
        let ours = run(add, relu);
        let burns = run(|a, b| a + b, burn::tensor::activation::relu);
        for (ours, burns) in ours.iter().zip(&burns) {
            ours.assert_approx_eq::<f32>(burns, Tolerance::absolute(0.0));
        }
    }

    #[test]
    fn leaky_relu_and_its_gradient_follow_pytorch() {
        // `values` holds zeros, where PyTorch's gradient is `slope · dy` (Burn's takes `dy`).
        let (x, w) = (values(16), values(7).detach());
        let y = leaky_relu(x.clone(), 0.1);
        let grads = (y.clone() * w.clone()).sum().backward();
        let host = |t: burn::tensor::TensorData| t.to_vec::<f32>().unwrap();
        let (xs, ws) = (host(x.to_data()), host(w.into_data()));
        assert!(xs.contains(&0.0));
        let expected_y: Vec<f32> = xs
            .iter()
            .map(|&v| if v > 0.0 { v } else { v * 0.1 })
            .collect();
        let expected_dx: Vec<f32> = xs
            .iter()
            .zip(&ws)
            .map(|(&v, &w)| if v > 0.0 { w } else { w * 0.1 })
            .collect();
        assert_eq!(host(y.into_data()), expected_y);
        assert_eq!(host(x.grad(&grads).unwrap().into_data()), expected_dx);
        // A negative slope is Burn's composite.
        let burns = burn::tensor::activation::leaky_relu(x.clone(), -0.5);
        assert_eq!(
            host(leaky_relu(x, -0.5).into_data()),
            host(burns.into_data())
        );
    }

    #[test]
    fn untracked_operands_get_no_gradient_and_shapes_broadcast_through_burn() {
        let tracked = values(4);
        let constant = Tensor::<Ad, 4>::ones([2, 3, 5, 7], &Default::default());
        let grads = relu(add(constant.clone(), tracked.clone()))
            .sum()
            .backward();
        assert!(constant.grad(&grads).is_none());
        assert_eq!(tracked.grad(&grads).unwrap().dims(), [2, 3, 5, 7]);
        let row = Tensor::<Ad, 4>::ones([1, 1, 1, 7], &Default::default());
        assert_eq!(add(values(5), row).dims(), [2, 3, 5, 7]);
    }

    #[test]
    fn flex_without_autodiff_takes_the_kernels() {
        let x = Tensor::<Flex, 1>::from_floats([-1.0, f32::NAN, 2.0], &Default::default());
        let y = relu(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert!(y[0] == 0.0 && y[1].is_nan() && y[2] == 2.0);
        let leaky = leaky_relu(x.clone(), 0.5)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(leaky[0] == -0.5 && leaky[1].is_nan() && leaky[2] == 2.0);
        let sum = add(x.clone(), x).into_data().to_vec::<f32>().unwrap();
        assert_eq!([sum[0], sum[2]], [-2.0, 4.0]);
    }
}
