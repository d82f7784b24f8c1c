//! Architectures by name, as configs and command lines spell them (`wrn_40_2`, `resnet32x4`,
//! `ShuffleV1`, …), in the manner of timm's `create_model`.

use burn::tensor::backend::Backend;

use crate::mobilenetv2::MobileNetV2Config;
use crate::resnet::{BlockKind, ResNetConfig, ResNetStem};
use crate::shufflenet_v1::ShuffleNetV1Config;
use crate::shufflenet_v2::ShuffleNetV2Config;
use crate::vgg::VggConfig;
use crate::wrn::WideResNetConfig;
use crate::{Model, ModelError, ModelSpec};

/// The architectures by name, in the order of the CRD / SSKD model zoo: each row a name and the
/// configuration it stands for, given the number of classes, and where the SSKD and CRD
/// scripts train it as a student with another learning rate than [`STUDENT_LR`], that rate.
/// `resnet18/34/50` (lower case) are the torchvision ImageNet networks; `ResNet18/34/50` are
/// the CIFAR forms of `resnetv2.py`.
macro_rules! architectures {
    ($($name:literal => $spec:expr $(; student_lr $lr:literal)?,)*) => {
        /// Every registered name, in the table's order.
        const NAMES: &[&str] = &[$($name),*];

        /// The configuration registered under `name`, as a function of the class count.
        fn registered(name: &str) -> Option<fn(usize) -> ModelSpec> {
            match name {
                $($name => Some($spec),)*
                _ => None,
            }
        }

        /// The student learning rate of the SSKD and CRD scripts for the architecture `name`.
        pub fn student_lr(name: &str) -> Option<f64> {
            match name {
                // The row's own rate when it gives one (the last of the list), else the
                // scripts' default.
                $($name => [STUDENT_LR $(, $lr)?].last().copied(),)*
                _ => None,
            }
        }
    };
}

/// The student learning rate of the SSKD and CRD scripts (`--learning_rate 0.05`), but for the
/// rows of the table that say otherwise.
pub const STUDENT_LR: f64 = 0.05;

const CIFAR_WIDTHS: [usize; 4] = [16, 16, 32, 64];
const X4_WIDTHS: [usize; 4] = [32, 64, 128, 256];
const X05_WIDTHS: [usize; 4] = [8, 8, 16, 32];
const X0375_WIDTHS: [usize; 4] = [6, 6, 12, 24];

fn cifar(depth: usize, widths: [usize; 4], classes: usize) -> ModelSpec {
    ModelSpec::ResNet(ResNetConfig::cifar(depth, widths, classes))
}

fn four_stage(blocks: [usize; 4], kind: BlockKind, stem: ResNetStem, classes: usize) -> ModelSpec {
    ModelSpec::ResNet(ResNetConfig::four_stage(blocks, kind, stem, classes))
}

fn wrn(depth: usize, widen: usize, classes: usize) -> ModelSpec {
    ModelSpec::WideResNet(WideResNetConfig::new(depth, widen, classes))
}

fn vgg(depth: usize, classes: usize) -> ModelSpec {
    ModelSpec::Vgg(VggConfig::from_depth(depth, classes).expect("registered VGG depth"))
}

use BlockKind::{Basic, Bottleneck};
use ResNetStem::{Cifar, ImageNet};

architectures! {
    "resnet8" => |n| cifar(8, CIFAR_WIDTHS, n),
    "resnet14" => |n| cifar(14, CIFAR_WIDTHS, n),
    "resnet20" => |n| cifar(20, CIFAR_WIDTHS, n),
    "resnet32" => |n| cifar(32, CIFAR_WIDTHS, n),
    "resnet44" => |n| cifar(44, CIFAR_WIDTHS, n),
    "resnet56" => |n| cifar(56, CIFAR_WIDTHS, n),
    "resnet110" => |n| cifar(110, CIFAR_WIDTHS, n),
    "resnet8x4" => |n| cifar(8, X4_WIDTHS, n),
    "resnet32x4" => |n| cifar(32, X4_WIDTHS, n),
    "resnet14x05" => |n| cifar(14, X05_WIDTHS, n),
    "resnet20x05" => |n| cifar(20, X05_WIDTHS, n),
    "resnet20x0375" => |n| cifar(20, X0375_WIDTHS, n),
    "wrn_16_1" => |n| wrn(16, 1, n),
    "wrn_16_2" => |n| wrn(16, 2, n),
    "wrn_40_1" => |n| wrn(40, 1, n),
    "wrn_40_2" => |n| wrn(40, 2, n),
    "vgg8" => |n| vgg(8, n),
    "vgg11" => |n| vgg(11, n),
    "vgg13" => |n| vgg(13, n),
    "vgg16" => |n| vgg(16, n),
    "vgg19" => |n| vgg(19, n),
    "MobileNetV2" => |n| ModelSpec::MobileNetV2(MobileNetV2Config::new(n)); student_lr 0.01,
    "ShuffleV1" => |n| ModelSpec::ShuffleNetV1(ShuffleNetV1Config::new(n)); student_lr 0.01,
    "ShuffleV2" => |n| ModelSpec::ShuffleNetV2(ShuffleNetV2Config::new(n)); student_lr 0.01,
    "ResNet18" => |n| four_stage([2, 2, 2, 2], Basic, Cifar, n),
    "ResNet34" => |n| four_stage([3, 4, 6, 3], Basic, Cifar, n),
    "ResNet50" => |n| four_stage([3, 4, 6, 3], Bottleneck, Cifar, n),
    "resnet18" => |n| four_stage([2, 2, 2, 2], Basic, ImageNet, n),
    "resnet34" => |n| four_stage([3, 4, 6, 3], Basic, ImageNet, n),
    "resnet50" => |n| four_stage([3, 4, 6, 3], Bottleneck, ImageNet, n),
}

/// The registered architecture names.
pub fn model_names() -> &'static [&'static str] {
    NAMES
}

impl ModelSpec {
    /// The configuration registered under `name`, with `num_classes` classes.
    pub fn from_name(name: &str, num_classes: usize) -> Result<Self, ModelError> {
        if num_classes == 0 {
            return Err(ModelError::ZeroClasses {
                name: name.to_string(),
            });
        }
        let spec = registered(name).ok_or_else(|| ModelError::UnknownArchitecture {
            name: name.to_string(),
            known: NAMES.join(", "),
        })?;
        Ok(spec(num_classes))
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

    #[test]
    fn the_table_gives_the_scripts_student_learning_rates() {
        assert_eq!(student_lr("MobileNetV2"), Some(0.01));
        assert_eq!(student_lr("ShuffleV2"), Some(0.01));
        assert_eq!(student_lr("resnet8x4"), Some(STUDENT_LR));
        assert_eq!(student_lr("resnet9"), None);
    }
}
