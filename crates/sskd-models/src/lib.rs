//! # sskd-models
//!
//! The knowledge-distillation model zoo of the CRD / SSKD codebases (CIFAR-100 ResNets, Wide
//! ResNets, VGG-BN, MobileNetV2 ×0.5, ShuffleNetV1/V2, CIFAR ResNet18/34/50) and the torchvision
//! ImageNet ResNet18/34/50, generic over any Burn backend.
//!
//! Every backbone returns a [`ModelOutput`]: the logits, the pooled embedding (`feat[-1]` of the
//! reference code), the per-stage feature maps and, where the reference defines it, their
//! pre-activation variant. Each family implements [`Backbone`]; [`Model`] holds any of them.
//! Architectures are built by name through the [registry](create_model) (one table of names),
//! PyTorch checkpoints are read by [`import`], and the self-supervision head of SSKD is
//! [`SelfSupervisionHead`].
//!
//! Adding a family: its file (a config with `embedding_dim` and `init`, a network implementing
//! [`Backbone`]), one row of the family table in `model.rs`, and its names in the registry's
//! table.
//!
//! ## Example
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use sskd_models::create_model;
//!
//! let device = Default::default();
//! let model = create_model::<Flex>("resnet8", 100, &device).unwrap();
//! let output = model.forward(Tensor::zeros([2, 3, 32, 32], &device));
//! assert_eq!(output.logits.dims(), [2, 100]);
//! // An unknown name is an error that lists the known ones.
//! assert!(create_model::<Flex>("resnet9", 100, &device).is_err());
//! ```
//!
//! ## Feature flags
//! - `flex` (default): sskd-kernels' CPU kernels for the convolutions and batch norms of the zoo
//!   on `Flex` and `Autodiff<Flex>`, taken at run time; every other backend runs Burn's
//!   operations (and the batch norm's composite of generic ops) either way.
//!   Without it the crate depends on `burn` without a backend; binaries, tests and benches
//!   choose one.
#![warn(missing_docs)]

pub mod atomic;
mod backbone;
pub mod batch_norm;
pub mod checkpoint;
pub mod conv2d;
pub mod elementwise;
mod error;
pub mod export;
pub mod head;
pub mod import;
pub mod key_rules;
pub mod layers;
pub mod mobilenetv2;
mod model;
mod output;
pub mod precision;
pub mod registry;
pub mod resnet;
pub mod shufflenet_v1;
pub mod shufflenet_v2;
pub mod vgg;
pub mod wrn;

pub use backbone::{Backbone, ReferenceCall};
pub use error::ModelError;
pub use head::{BackboneWithHead, SelfSupervisionHead, SelfSupervisionHeadConfig};
pub use model::{InputLimits, Model, ModelSpec};
pub use output::ModelOutput;
pub use registry::{create_model, model_names};

/// Number of trainable parameters of `module`: every parameter tensor except batch-norm
/// running statistics (which Burn's `num_params` also counts), as PyTorch's
/// `sum(p.numel() for p in model.parameters())` does.
pub fn trainable_parameter_count<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    module: &M,
) -> usize {
    use burn_store::ModuleSnapshot;
    module
        .collect(None, None, true)
        .iter()
        .filter(|snapshot| {
            let path = snapshot.full_path();
            !(path.ends_with(".running_mean") || path.ends_with(".running_var"))
        })
        .map(|snapshot| snapshot.shape.num_elements())
        .sum()
}
