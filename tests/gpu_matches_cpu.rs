//! The same graph on a GPU backend: resnet8's forward and backward, and the strided 1×1
//! projection's input gradient, on wgpu (in CI, Mesa's lavapipe Vulkan CPU adapter) and on CUDA
//! against the CPU backend, with the PyTorch fixture weights.
//!
//! Run with `cargo test --features wgpu-test --test gpu_matches_cpu` (wgpu) or
//! `--features cuda-test` (CUDA; an NVIDIA GPU). The first run compiles and autotunes kernels
//! (minutes on lavapipe; set `CUBECL_AUTOTUNE_LEVEL=minimal`).
#![cfg(any(feature = "wgpu-test", feature = "cuda-test"))]

mod common;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{assert_close, deterministic_input, values, Fixture};
use sskd::models::import::load_state_dict;
use sskd::models::{create_model, Model};

/// Logits, embedding and the gradient of `sum(logits²)` with respect to the stem convolution,
/// in training mode (batch statistics).
fn train_step<B: burn::tensor::backend::AutodiffBackend>(
    device: &B::Device,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let fixture = Fixture::read("resnet8");
    let model = create_model::<B>("resnet8", 100, device).unwrap();
    let model = load_state_dict(model, fixture.state_dict("")).unwrap();
    let output = model.forward(deterministic_input(fixture.input_shape(), device));
    let loss = output.logits.clone().powf_scalar(2.0).sum();
    let gradients = loss.backward();
    let Model::ResNet(resnet) = &model else {
        unreachable!("resnet8 is a ResNet")
    };
    let stem_grad: Tensor<B::InnerBackend, 4> =
        resnet.conv1.weight.grad(&gradients).expect("stem gradient");
    (
        values(output.logits),
        values(output.embedding),
        values(stem_grad),
    )
}

/// resnet8's training step on `B` against the CPU backend.
fn resnet8_matches_the_cpu<B: burn::tensor::backend::AutodiffBackend>() {
    let (cpu_logits, cpu_embedding, cpu_grad) = train_step::<Autodiff<Flex>>(&Default::default());
    let (gpu_logits, gpu_embedding, gpu_grad) = train_step::<B>(&Default::default());
    println!("GPU backend: {}", B::name(&Default::default()));
    assert_close("logits", &gpu_logits, &cpu_logits, 1e-4);
    assert_close("embedding", &gpu_embedding, &cpu_embedding, 1e-4);
    assert_close("stem gradient", &gpu_grad, &cpu_grad, 1e-3);
}

/// Input gradient of a 1×1 stride-2 projection through `layers::conv_forward`, which routes
/// around Burn 0.21's wrong strided-1×1 input gradient on the cubecl backends.
fn projection_input_grad<B: burn::tensor::backend::AutodiffBackend>(
    device: &B::Device,
) -> Vec<f32> {
    use burn::tensor::TensorData;
    use sskd::models::layers::{conv_forward, ConvInit, SquareConvConfig};
    let shape = [2, 16, 16, 16];
    let input = Tensor::<B, 4>::from_data(
        TensorData::new(common::deterministic("x", &shape), shape),
        device,
    )
    .require_grad();
    let mut projection = SquareConvConfig::new([16, 32], 1, ConvInit::FanOutNormal)
        .with_stride(2)
        .init::<B>(device);
    let weight_shape = [32, 16, 1, 1];
    projection.weight = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(
            common::deterministic("w.weight", &weight_shape),
            weight_shape,
        ),
        device,
    ));
    let gradients = conv_forward(&projection, input.clone())
        .powf_scalar(2.0)
        .sum()
        .backward();
    values(input.grad(&gradients).expect("input gradient"))
}

/// The strided projection's input gradient on `B` against the CPU backend.
fn projection_matches_the_cpu<B: burn::tensor::backend::AutodiffBackend>() {
    let cpu = projection_input_grad::<Autodiff<Flex>>(&Default::default());
    let gpu = projection_input_grad::<B>(&Default::default());
    assert_close("projection input gradient", &gpu, &cpu, 1e-4);
}

/// The two checks as tests of one backend.
macro_rules! backend_tests {
    ($module:ident, $feature:literal, $backend:ty) => {
        #[cfg(feature = $feature)]
        mod $module {
            #[test]
            fn resnet8_forward_and_backward_match_the_cpu() {
                super::resnet8_matches_the_cpu::<burn::backend::Autodiff<$backend>>();
            }

            #[test]
            fn strided_projection_gradient_matches_the_cpu() {
                super::projection_matches_the_cpu::<burn::backend::Autodiff<$backend>>();
            }
        }
    };
}

backend_tests!(wgpu, "wgpu-test", burn::backend::Wgpu);
backend_tests!(cuda, "cuda-test", burn::backend::Cuda);
