//! The ResNet family: the CIFAR ResNets of `models/resnet.py` (resnet8 … resnet110, resnet8x4,
//! resnet32x4, the ×0.5 variants), the CIFAR ResNet18/34/50 of `models/resnetv2.py`, and the
//! torchvision ImageNet ResNet18/34/50 (v1.5 bottleneck: the stride sits on the 3×3).
//!
//! One [`ResNet`] covers all three: they differ only in the stem, the number of stages, the
//! block kind and the widths, which [`ResNetConfig`] holds.

use crate::conv2d::Conv2d;
use crate::key_rules::{KeyRules, NOT_A_KEY};
use burn::config::Config;
use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};

use crate::backbone::Backbone;
use crate::batch_norm::BatchNorm;
use burn::tensor::{backend::Backend, Tensor};

use crate::layers::{
    add, batch_norm, classifier, global_avg_pool, max_pool2d, relu, ConvBn, ConvInit, LinearInit,
    SquareConvConfig,
};
use crate::ModelOutput;

/// The stem of a ResNet.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum ResNetStem {
    /// `conv3×3(3→c0, stride 1) → BN → ReLU`, no max-pool (CIFAR).
    Cifar,
    /// `conv7×7(3→c0, stride 2, pad 3) → BN → ReLU → maxpool 3×3/2 (pad 1)` (ImageNet).
    ImageNet,
}

/// The residual block of a ResNet.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum BlockKind {
    /// Two 3×3 convolutions, expansion 1.
    Basic,
    /// 1×1 → 3×3 (strided) → 1×1 with expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Number of classes of the classifier.
    pub num_classes: usize,
    /// Output channels of the stem (`c0`).
    pub stem_width: usize,
    /// Width of each stage (before the block expansion). The first stage has stride 1, every
    /// later one stride 2.
    pub stage_widths: Vec<usize>,
    /// Number of blocks in each stage.
    pub blocks_per_stage: Vec<usize>,
    /// Basic or bottleneck blocks.
    pub block: BlockKind,
    /// CIFAR or ImageNet stem.
    #[config(default = "ResNetStem::Cifar")]
    pub stem: ResNetStem,
}

impl ResNetConfig {
    /// A CIFAR ResNet of `models/resnet.py`: depth `6n + 2`, basic blocks, three stages of
    /// widths `widths[1..4]` after a stem of width `widths[0]`.
    ///
    /// # Panics
    /// If `depth − 2` is not a multiple of 6.
    pub fn cifar(depth: usize, widths: [usize; 4], num_classes: usize) -> Self {
        assert!(
            depth >= 8 && (depth - 2).is_multiple_of(6),
            "CIFAR ResNet depth must be 6n + 2, got {depth}"
        );
        let blocks = (depth - 2) / 6;
        Self::new(
            num_classes,
            widths[0],
            widths[1..].to_vec(),
            vec![blocks; 3],
            BlockKind::Basic,
        )
    }

    /// A four-stage ResNet (64, 128, 256, 512) with the given blocks per stage: the CIFAR form of
    /// `models/resnetv2.py` or, with [`ResNetStem::ImageNet`], torchvision's.
    pub fn four_stage(
        blocks_per_stage: [usize; 4],
        block: BlockKind,
        stem: ResNetStem,
        num_classes: usize,
    ) -> Self {
        Self::new(
            num_classes,
            64,
            vec![64, 128, 256, 512],
            blocks_per_stage.to_vec(),
            block,
        )
        .with_stem(stem)
    }

    /// Length of the pooled embedding.
    pub fn embedding_dim(&self) -> usize {
        self.stage_widths.last().copied().unwrap_or(self.stem_width) * self.block.expansion()
    }

    /// Builds the network with the reference initialisation (Kaiming-normal fan-out convs,
    /// BN γ = 1 and β = 0, PyTorch-default classifier).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let (conv1, maxpool) = match self.stem {
            ResNetStem::Cifar => (
                SquareConvConfig::new([3, self.stem_width], 3, ConvInit::FanOutNormal).init(device),
                None,
            ),
            ResNetStem::ImageNet => (
                SquareConvConfig::new([3, self.stem_width], 7, ConvInit::FanOutNormal)
                    .with_stride(2)
                    .init(device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let mut channels_in = self.stem_width;
        let mut layers = Vec::with_capacity(self.stage_widths.len());
        for (stage, (&width, &blocks)) in self
            .stage_widths
            .iter()
            .zip(&self.blocks_per_stage)
            .enumerate()
        {
            let first_stride = if stage == 0 { 1 } else { 2 };
            let mut stage_blocks = Vec::with_capacity(blocks);
            for index in 0..blocks {
                let stride = if index == 0 { first_stride } else { 1 };
                let block = ResidualBlock::new(self.block, channels_in, width, stride, device);
                channels_in = width * self.block.expansion();
                stage_blocks.push(block);
            }
            layers.push(stage_blocks);
        }
        ResNet {
            conv1,
            bn1: batch_norm(self.stem_width, device),
            maxpool,
            layers,
            fc: classifier(
                channels_in,
                self.num_classes,
                LinearInit::PyTorchDefault,
                device,
            ),
        }
    }
}

/// A residual block, basic or bottleneck, post-activation.
///
/// Basic: `conv3×3(stride) → BN → ReLU → conv3×3 → BN`; bottleneck: `conv1×1 → BN → ReLU →
/// conv3×3(stride) → BN → ReLU → conv1×1(→4·width) → BN`. Then `+ shortcut` and ReLU. The
/// shortcut is the identity, or `conv1×1(stride) → BN` when the stride or the width changes.
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`
/// - output `[batch, width · expansion, h / stride, w / stride]`
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    /// First convolution (3×3 strided for basic, 1×1 for bottleneck).
    pub conv1: Conv2d<B>,
    /// Its batch norm.
    pub bn1: BatchNorm<B>,
    /// Second convolution (3×3; strided for bottleneck).
    pub conv2: Conv2d<B>,
    /// Its batch norm.
    pub bn2: BatchNorm<B>,
    /// Third convolution (bottleneck only).
    pub conv3: Option<Conv2d<B>>,
    /// Its batch norm (bottleneck only).
    pub bn3: Option<BatchNorm<B>>,
    /// Projection shortcut, when the shape changes.
    pub downsample: Option<ConvBn<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    /// A block from `channels_in` to `width · expansion` channels with the given stride.
    pub fn new(
        kind: BlockKind,
        channels_in: usize,
        width: usize,
        stride: usize,
        device: &B::Device,
    ) -> Self {
        let channels_out = width * kind.expansion();
        let init = ConvInit::FanOutNormal;
        let downsample = (stride != 1 || channels_in != channels_out).then(|| {
            SquareConvConfig::new([channels_in, channels_out], 1, init)
                .with_stride(stride)
                .init_with_bn(device)
        });
        match kind {
            BlockKind::Basic => Self {
                conv1: SquareConvConfig::new([channels_in, width], 3, init)
                    .with_stride(stride)
                    .init(device),
                bn1: batch_norm(width, device),
                conv2: SquareConvConfig::new([width, width], 3, init).init(device),
                bn2: batch_norm(width, device),
                conv3: None,
                bn3: None,
                downsample,
            },
            BlockKind::Bottleneck => Self {
                conv1: SquareConvConfig::new([channels_in, width], 1, init).init(device),
                bn1: batch_norm(width, device),
                conv2: SquareConvConfig::new([width, width], 3, init)
                    .with_stride(stride)
                    .init(device),
                bn2: batch_norm(width, device),
                conv3: Some(SquareConvConfig::new([width, channels_out], 1, init).init(device)),
                bn3: Some(batch_norm(channels_out, device)),
                downsample,
            },
        }
    }

    /// Returns `(output, preact)`: the block output and the residual sum before its final ReLU.
    pub fn forward(&self, input: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let shortcut = match &self.downsample {
            Some(projection) => projection.forward(input.clone()),
            None => input.clone(),
        };
        let hidden = self.bn1.forward_relu(self.conv1.forward(input));
        let branch = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let hidden = self.bn2.forward_relu(self.conv2.forward(hidden));
                bn3.forward(conv3.forward(hidden))
            }
            _ => self.bn2.forward(self.conv2.forward(hidden)),
        };
        let preact = add(branch, shortcut);
        (relu(preact.clone()), preact)
    }
}

/// A ResNet: stem, stages of residual blocks, global average pool, classifier.
///
/// # Shapes
/// - input `[batch, 3, h, w]` (32×32 for the CIFAR forms, 224×224 for ImageNet; any size the
///   strides allow)
/// - features: the stem output, then one map per stage
/// - embedding `[batch, last_width · expansion]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// Stem convolution.
    pub conv1: Conv2d<B>,
    /// Stem batch norm.
    pub bn1: BatchNorm<B>,
    /// Stem max-pool (ImageNet stem only).
    pub maxpool: Option<MaxPool2d>,
    /// The stages (`layer1`, `layer2`, … of the reference), each a list of blocks.
    pub layers: Vec<Vec<ResidualBlock<B>>>,
    /// The classifier (`fc` / `linear` of the reference).
    pub fc: Linear<B>,
}

impl<B: Backend> Backbone<B> for ResNet<B> {
    const FAMILY: &'static str = "ResNet";

    /// Runs the network; see [`ModelOutput`].
    ///
    /// `features` = `[stem, stage 1, …, stage S]`; `preact_features` replaces each stage output
    /// by its last block's residual sum before the final ReLU.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        let mut hidden = self.bn1.forward_relu(self.conv1.forward(input)); // [batch, c0, h, w]
        if let Some(pool) = &self.maxpool {
            hidden = max_pool2d(pool, hidden); // [batch, 64, h/4, w/4]
        }
        let mut features = vec![hidden.clone()];
        let mut preact_features = vec![hidden.clone()];
        for stage in &self.layers {
            let mut stage_preact = hidden.clone();
            for block in stage {
                (hidden, stage_preact) = block.forward(hidden);
            }
            features.push(hidden.clone()); // [batch, width·expansion, h_s, w_s]
            preact_features.push(stage_preact);
        }
        let embedding = global_avg_pool(hidden); // [batch, d]
        ModelOutput {
            logits: self.fc.forward(embedding.clone()),
            embedding,
            features,
            preact_features: Some(preact_features),
        }
    }

    /// `layerK.` is `layers.{K−1}.`; the projection shortcut and the classifier are spelled
    /// `downsample.0/1` / `fc` (`resnet.py`, torchvision) or `shortcut.0/1` / `linear`
    /// (`resnetv2.py`), both `downsample.conv/bn` / `fc` here.
    const KEY_RULES: KeyRules = KeyRules {
        common: &[("layer{a+1}", "layers.{a}"), ("layer{a}", NOT_A_KEY)],
        spellings: &[
            &[
                ("downsample.0", "downsample.conv"),
                ("downsample.1", "downsample.bn"),
                ("downsample.{a}", NOT_A_KEY),
            ],
            &[
                ("shortcut.0", "downsample.conv"),
                ("shortcut.1", "downsample.bn"),
                ("shortcut.{a}", NOT_A_KEY),
                ("^linear", "fc"),
            ],
        ],
    };

    /// `resnet.py` (CIFAR stem, three stages, strides 1/2/2) pools with `AvgPool2d(8)`: the
    /// last map must be at least 8×8. `resnetv2.py` and torchvision pool adaptively.
    fn min_input_side(&self) -> usize {
        match (&self.maxpool, self.layers.len()) {
            (None, 3) => crate::backbone::min_side_for_window(2, 8),
            _ => 1,
        }
    }

    fn classifier(&self) -> &Linear<B> {
        &self.fc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn cifar_resnet8_shapes() {
        let device = Default::default();
        let model = ResNetConfig::cifar(8, [16, 16, 32, 64], 100).init::<Flex>(&device);
        let output = model.forward(Tensor::zeros([2, 3, 32, 32], &device));
        let dims: Vec<_> = output.features.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [2, 16, 32, 32],
                [2, 16, 32, 32],
                [2, 32, 16, 16],
                [2, 64, 8, 8]
            ]
        );
        assert_eq!(output.embedding.dims(), [2, 64]);
        assert_eq!(output.logits.dims(), [2, 100]);
    }

    #[test]
    fn resnet8x4_first_stage_projects() {
        let device = Default::default();
        let model = ResNetConfig::cifar(8, [32, 64, 128, 256], 10).init::<Flex>(&device);
        assert!(model.layers[0][0].downsample.is_some());
    }

    #[test]
    fn torch_keys_map_onto_stages() {
        assert_eq!(
            ResNet::<Flex>::burn_path("layer2.0.downsample.1.running_var").as_deref(),
            Some("layers.1.0.downsample.bn.running_var")
        );
        assert_eq!(
            ResNet::<Flex>::burn_path("layer4.2.shortcut.0.weight").as_deref(),
            Some("layers.3.2.downsample.conv.weight")
        );
        assert_eq!(
            ResNet::<Flex>::burn_path("linear.bias").as_deref(),
            Some("fc.bias")
        );
        assert_eq!(ResNet::<Flex>::burn_path("layer0.0.conv1.weight"), None);
    }
}
