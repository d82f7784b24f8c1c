//! [`Model`]: any backbone of the zoo behind one type, and [`ModelSpec`], any backbone's
//! configuration, both made from one table of the families.

// A model is built once per run and moved rarely; the size difference between the variants of
// `Model` (and of the record type its derive makes) costs nothing.
#![allow(clippy::large_enum_variant)]

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::backbone::{Backbone, ReferenceCall};
use crate::mobilenetv2::{MobileNetV2, MobileNetV2Config};
use crate::resnet::{ResNet, ResNetConfig};
use crate::shufflenet_v1::{ShuffleNetV1, ShuffleNetV1Config};
use crate::shufflenet_v2::{ShuffleNetV2, ShuffleNetV2Config};
use crate::vgg::{Vgg, VggConfig};
use crate::wrn::{WideResNet, WideResNetConfig};
use crate::ModelOutput;

macro_rules! families {
    ($($(#[doc = $doc:literal])* $variant:ident($network:ident, $config:ident),)*) => {
        /// Any backbone of the zoo. Build one by name with [`create_model`](crate::create_model).
        ///
        /// # Shapes
        /// - input `[batch, 3, h, w]`
        /// - output: see [`ModelOutput`]
        #[derive(Module, Debug)]
        pub enum Model<B: Backend> {
            $($(#[doc = $doc])* $variant($network<B>),)*
        }

        /// The configuration of any backbone of the zoo.
        #[derive(Config, Debug)]
        pub enum ModelSpec {
            $($(#[doc = $doc])* $variant($config),)*
        }

        impl<B: Backend> Model<B> {
            /// Runs the backbone. Batch norm uses batch statistics on an autodiff backend and
            /// running statistics otherwise (run a frozen network on `B::InnerBackend` via
            /// `.valid()`).
            pub fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
                match self {
                    $(Self::$variant(network) => network.forward(input),)*
                }
            }

            /// The network as RepDistiller calls it in a training step, side effects included
            /// (see [`Backbone::forward_call`]).
            pub fn forward_call(&self, input: Tensor<B, 4>, call: ReferenceCall) -> ModelOutput<B> {
                match self {
                    $(Self::$variant(network) => network.forward_call(input, call),)*
                }
            }

            /// Length `d` of the pooled embedding (the input width of the classifier).
            pub fn embedding_dim(&self) -> usize {
                match self {
                    $(Self::$variant(network) => network.embedding_dim(),)*
                }
            }

            /// Number of classes of the classifier.
            pub fn num_classes(&self) -> usize {
                match self {
                    $(Self::$variant(network) => network.num_classes(),)*
                }
            }

            /// The smallest side of a square input (see [`Backbone::min_input_side`]).
            pub fn min_input_side(&self) -> usize {
                match self {
                    $(Self::$variant(network) => network.min_input_side(),)*
                }
            }

            /// The family name, for messages.
            pub fn family(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$network<B> as Backbone<B>>::FAMILY,)*
                }
            }

            /// The family's key mapping of [`Model::burn_path`] as a plain function, usable
            /// after the model has been moved.
            pub fn key_mapper(&self) -> fn(&str) -> Option<String> {
                match self {
                    $(Self::$variant(_) => <$network<B> as Backbone<B>>::burn_path,)*
                }
            }

            /// The family's inverse mapping ([`Backbone::torch_keys`]) as a plain function:
            /// the reference state-dict keys of a parameter path, the most common first.
            pub fn key_namer(&self) -> fn(&str) -> Vec<String> {
                match self {
                    $(Self::$variant(_) => <$network<B> as Backbone<B>>::torch_keys,)*
                }
            }
        }

        impl ModelSpec {
            /// Length `d` of the pooled embedding (also the SS head's width).
            pub fn embedding_dim(&self) -> usize {
                match self {
                    $(Self::$variant(config) => config.embedding_dim(),)*
                }
            }

            /// Builds the model with the reference initialisation.
            pub fn init<B: Backend>(&self, device: &B::Device) -> Model<B> {
                match self {
                    $(Self::$variant(config) => Model::$variant(config.init(device)),)*
                }
            }
        }
    };
}

families! {
    /// CIFAR ResNets, CIFAR ResNet18/34/50 and ImageNet ResNet18/34/50.
    ResNet(ResNet, ResNetConfig),
    /// Wide ResNets.
    WideResNet(WideResNet, WideResNetConfig),
    /// VGG with batch norm.
    Vgg(Vgg, VggConfig),
    /// MobileNetV2 (CRD variant).
    MobileNetV2(MobileNetV2, MobileNetV2Config),
    /// ShuffleNetV1.
    ShuffleNetV1(ShuffleNetV1, ShuffleNetV1Config),
    /// ShuffleNetV2.
    ShuffleNetV2(ShuffleNetV2, ShuffleNetV2Config),
}

impl<B: Backend> Model<B> {
    /// Maps a key of the reference PyTorch state dict (after any `module.` / `backbone.` prefix
    /// is removed) onto this model's parameter path, with PyTorch's leaf names (`weight`,
    /// `bias`, `running_mean`, `running_var`). `None` if the key cannot belong to this family.
    pub fn burn_path(&self, torch_key: &str) -> Option<String> {
        self.key_mapper()(torch_key)
    }

    /// The inputs the network takes, as plain data (see [`InputLimits`]).
    pub fn input_limits(&self) -> InputLimits {
        InputLimits {
            family: self.family(),
            min_side: self.min_input_side(),
        }
    }

    /// An error when `height × width` images are smaller than the network takes (see
    /// [`Backbone::min_input_side`]): the reference PyTorch model refuses them.
    pub fn check_input(&self, size: [usize; 2]) -> Result<(), crate::ModelError> {
        self.input_limits().check(size)
    }
}

/// The smallest images a network takes, kept apart from the network (on any backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// The network family, for messages.
    pub family: &'static str,
    /// The smallest side of a square input ([`Backbone::min_input_side`]).
    pub min_side: usize,
}

impl InputLimits {
    /// An error naming the minimum when `[height, width]` is below it.
    pub fn check(&self, [height, width]: [usize; 2]) -> Result<(), crate::ModelError> {
        if height.min(width) >= self.min_side {
            return Ok(());
        }
        Err(crate::ModelError::InputTooSmall {
            family: self.family,
            height,
            width,
            minimum: self.min_side,
        })
    }
}
