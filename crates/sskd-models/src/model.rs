//! [`Model`]: any backbone of the zoo behind one type.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::mobilenetv2::MobileNetV2;
use crate::resnet::ResNet;
use crate::shufflenet_v1::ShuffleNetV1;
use crate::shufflenet_v2::ShuffleNetV2;
use crate::vgg::Vgg;
use crate::wrn::WideResNet;
use crate::ModelOutput;

/// Any backbone of the zoo. Build one by name with [`create_model`](crate::create_model).
///
/// # Shapes
/// - input `[batch, 3, h, w]`
/// - output: see [`ModelOutput`]
// Built once per run and moved rarely; the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model<B: Backend> {
    /// CIFAR ResNets, CIFAR ResNet18/34/50 and ImageNet ResNet18/34/50.
    ResNet(ResNet<B>),
    /// Wide ResNets.
    WideResNet(WideResNet<B>),
    /// VGG with batch norm.
    Vgg(Vgg<B>),
    /// MobileNetV2 (CRD variant).
    MobileNetV2(MobileNetV2<B>),
    /// ShuffleNetV1.
    ShuffleNetV1(ShuffleNetV1<B>),
    /// ShuffleNetV2.
    ShuffleNetV2(ShuffleNetV2<B>),
}

impl<B: Backend> Model<B> {
    /// Runs the backbone. Batch norm uses batch statistics on an autodiff backend and running
    /// statistics otherwise (run a frozen network on `B::InnerBackend` via `.valid()`).
    pub fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        match self {
            Model::ResNet(net) => net.forward(input),
            Model::WideResNet(net) => net.forward(input),
            Model::Vgg(net) => net.forward(input),
            Model::MobileNetV2(net) => net.forward(input),
            Model::ShuffleNetV1(net) => net.forward(input),
            Model::ShuffleNetV2(net) => net.forward(input),
        }
    }

    /// Length `d` of the pooled embedding (the input width of the classifier).
    pub fn embedding_dim(&self) -> usize {
        match self {
            Model::ResNet(net) => net.embedding_dim(),
            Model::WideResNet(net) => net.embedding_dim(),
            Model::Vgg(net) => net.embedding_dim(),
            Model::MobileNetV2(net) => net.embedding_dim(),
            Model::ShuffleNetV1(net) => net.embedding_dim(),
            Model::ShuffleNetV2(net) => net.embedding_dim(),
        }
    }

    /// Number of classes of the classifier.
    pub fn num_classes(&self) -> usize {
        let classifier = match self {
            Model::ResNet(net) => &net.fc,
            Model::WideResNet(net) => &net.fc,
            Model::Vgg(net) => &net.classifier,
            Model::MobileNetV2(net) => &net.classifier,
            Model::ShuffleNetV1(net) => &net.linear,
            Model::ShuffleNetV2(net) => &net.linear,
        };
        classifier.weight.dims()[1]
    }

    /// The family name, for messages.
    pub fn family(&self) -> &'static str {
        match self {
            Model::ResNet(_) => "ResNet",
            Model::WideResNet(_) => "WideResNet",
            Model::Vgg(_) => "VGG",
            Model::MobileNetV2(_) => "MobileNetV2",
            Model::ShuffleNetV1(_) => "ShuffleNetV1",
            Model::ShuffleNetV2(_) => "ShuffleNetV2",
        }
    }

    /// Maps a key of the reference PyTorch state dict (after any `module.` / `backbone.` prefix
    /// is removed) onto this model's parameter path, with PyTorch's leaf names (`weight`,
    /// `bias`, `running_mean`, `running_var`). `None` if the key cannot belong to this family.
    pub fn burn_path(&self, torch_key: &str) -> Option<String> {
        self.key_mapper()(torch_key)
    }

    /// The family's key mapping of [`Model::burn_path`] as a plain function, usable after the
    /// model has been moved.
    pub fn key_mapper(&self) -> fn(&str) -> Option<String> {
        match self {
            Model::ResNet(_) => ResNet::<B>::burn_path,
            Model::WideResNet(_) => WideResNet::<B>::burn_path,
            Model::Vgg(_) => Vgg::<B>::burn_path,
            Model::MobileNetV2(_) => MobileNetV2::<B>::burn_path,
            Model::ShuffleNetV1(_) => ShuffleNetV1::<B>::burn_path,
            Model::ShuffleNetV2(_) => ShuffleNetV2::<B>::burn_path,
        }
    }
}
