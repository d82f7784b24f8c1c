//! Architectures by name, as configs and command lines spell them (`wrn_40_2`, `resnet32x4`,
//! `ShuffleV1`, …), in the manner of timm's `create_model`.

use burn::config::Config;
use burn::tensor::backend::Backend;

use crate::mobilenetv2::MobileNetV2Config;
use crate::resnet::{BlockKind, ResNetConfig, ResNetStem};
use crate::shufflenet_v1::ShuffleNetV1Config;
use crate::shufflenet_v2::ShuffleNetV2Config;
use crate::vgg::VggConfig;
use crate::wrn::WideResNetConfig;
use crate::{Model, ModelError};

/// Every registered name, in the order of the spec's zoo. `resnet18/34/50` (lower case) are
/// the torchvision ImageNet networks; `ResNet18/34/50` are the CIFAR forms of `resnetv2.py`.
const NAMES: &[&str] = &[
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
    "resnet14x05",
    "resnet20x05",
    "resnet20x0375",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "vgg8",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "MobileNetV2",
    "ShuffleV1",
    "ShuffleV2",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "resnet18",
    "resnet34",
    "resnet50",
];

/// The registered architecture names.
pub fn model_names() -> &'static [&'static str] {
    NAMES
}

/// The configuration of any architecture of the zoo.
#[derive(Config, Debug)]
pub enum ModelSpec {
    /// A ResNet (CIFAR, CIFAR four-stage or ImageNet).
    ResNet(ResNetConfig),
    /// A Wide ResNet.
    WideResNet(WideResNetConfig),
    /// A VGG-BN.
    Vgg(VggConfig),
    /// MobileNetV2.
    MobileNetV2(MobileNetV2Config),
    /// ShuffleNetV1.
    ShuffleNetV1(ShuffleNetV1Config),
    /// ShuffleNetV2.
    ShuffleNetV2(ShuffleNetV2Config),
}

impl ModelSpec {
    /// The configuration registered under `name`, with `num_classes` classes.
    pub fn from_name(name: &str, num_classes: usize) -> Result<Self, ModelError> {
        if num_classes == 0 {
            return Err(ModelError::ZeroClasses {
                name: name.to_string(),
            });
        }
        let cifar = |depth, widths| Self::ResNet(ResNetConfig::cifar(depth, widths, num_classes));
        let four_stage = |blocks, kind, stem| {
            Self::ResNet(ResNetConfig::four_stage(blocks, kind, stem, num_classes))
        };
        let wrn = |depth, k| Self::WideResNet(WideResNetConfig::new(depth, k, num_classes));
        let spec = match name {
            "resnet8" => cifar(8, [16, 16, 32, 64]),
            "resnet14" => cifar(14, [16, 16, 32, 64]),
            "resnet20" => cifar(20, [16, 16, 32, 64]),
            "resnet32" => cifar(32, [16, 16, 32, 64]),
            "resnet44" => cifar(44, [16, 16, 32, 64]),
            "resnet56" => cifar(56, [16, 16, 32, 64]),
            "resnet110" => cifar(110, [16, 16, 32, 64]),
            "resnet8x4" => cifar(8, [32, 64, 128, 256]),
            "resnet32x4" => cifar(32, [32, 64, 128, 256]),
            "resnet14x05" => cifar(14, [8, 8, 16, 32]),
            "resnet20x05" => cifar(20, [8, 8, 16, 32]),
            "resnet20x0375" => cifar(20, [6, 6, 12, 24]),
            "wrn_16_1" => wrn(16, 1),
            "wrn_16_2" => wrn(16, 2),
            "wrn_40_1" => wrn(40, 1),
            "wrn_40_2" => wrn(40, 2),
            "vgg8" | "vgg11" | "vgg13" | "vgg16" | "vgg19" => {
                let depth = name[3..]
                    .parse()
                    .expect("registered VGG names end in a depth");
                Self::Vgg(VggConfig::from_depth(depth, num_classes).expect("registered VGG depth"))
            }
            "MobileNetV2" => Self::MobileNetV2(MobileNetV2Config::new(num_classes)),
            "ShuffleV1" => Self::ShuffleNetV1(ShuffleNetV1Config::new(num_classes)),
            "ShuffleV2" => Self::ShuffleNetV2(ShuffleNetV2Config::new(num_classes)),
            "ResNet18" => four_stage([2, 2, 2, 2], BlockKind::Basic, ResNetStem::Cifar),
            "ResNet34" => four_stage([3, 4, 6, 3], BlockKind::Basic, ResNetStem::Cifar),
            "ResNet50" => four_stage([3, 4, 6, 3], BlockKind::Bottleneck, ResNetStem::Cifar),
            "resnet18" => four_stage([2, 2, 2, 2], BlockKind::Basic, ResNetStem::ImageNet),
            "resnet34" => four_stage([3, 4, 6, 3], BlockKind::Basic, ResNetStem::ImageNet),
            "resnet50" => four_stage([3, 4, 6, 3], BlockKind::Bottleneck, ResNetStem::ImageNet),
            _ => {
                return Err(ModelError::UnknownArchitecture {
                    name: name.to_string(),
                    known: NAMES.join(", "),
                })
            }
        };
        Ok(spec)
    }

    /// Length `d` of the pooled embedding (also the SS head's width).
    pub fn embedding_dim(&self) -> usize {
        match self {
            Self::ResNet(config) => config.embedding_dim(),
            Self::WideResNet(config) => config.embedding_dim(),
            Self::Vgg(config) => config.embedding_dim(),
            Self::MobileNetV2(config) => config.embedding_dim(),
            Self::ShuffleNetV1(config) => config.embedding_dim(),
            Self::ShuffleNetV2(config) => config.embedding_dim(),
        }
    }

    /// Builds the model with the reference initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Model<B> {
        match self {
            Self::ResNet(config) => Model::ResNet(config.init(device)),
            Self::WideResNet(config) => Model::WideResNet(config.init(device)),
            Self::Vgg(config) => Model::Vgg(config.init(device)),
            Self::MobileNetV2(config) => Model::MobileNetV2(config.init(device)),
            Self::ShuffleNetV1(config) => Model::ShuffleNetV1(config.init(device)),
            Self::ShuffleNetV2(config) => Model::ShuffleNetV2(config.init(device)),
        }
    }
}

/// Builds the architecture registered under `name` with `num_classes` classes, initialised as
/// the reference zoo does.
///
/// ```
/// use burn::backend::Flex;
/// let model = sskd_models::create_model::<Flex>("wrn_40_2", 100, &Default::default()).unwrap();
/// assert_eq!(model.embedding_dim(), 128);
/// assert!(sskd_models::create_model::<Flex>("wrn_40_3", 100, &Default::default()).is_err());
/// ```
pub fn create_model<B: Backend>(
    name: &str,
    num_classes: usize,
    device: &B::Device,
) -> Result<Model<B>, ModelError> {
    Ok(ModelSpec::from_name(name, num_classes)?.init(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves() {
        for name in model_names() {
            assert!(ModelSpec::from_name(name, 100).is_ok(), "{name}");
        }
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let message = ModelSpec::from_name("resnet9", 100)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("unknown architecture `resnet9`"),
            "{message}"
        );
        assert!(
            message.contains("wrn_40_2") && message.contains("ShuffleV1"),
            "{message}"
        );
    }

    #[test]
    fn zero_classes_is_an_error() {
        assert!(ModelSpec::from_name("resnet8", 0).is_err());
    }
}
