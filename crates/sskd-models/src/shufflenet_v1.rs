//! ShuffleNetV1 of `models/ShuffleNetv1.py` (`ShuffleV1`: out planes 240/480/960, blocks
//! 4/8/4, 3 groups), with the reference's ReLU after the depthwise convolution and PyTorch's
//! default initialisation.

use crate::conv2d::Conv2d;
use crate::key_rules::KeyRules;
use burn::config::Config;
use burn::module::Module;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};

use crate::backbone::Backbone;
use crate::batch_norm::BatchNorm;
use burn::tensor::{backend::Backend, Tensor};

use crate::layers::{
    add, batch_norm, cat_channels, channel_shuffle, classifier, global_avg_pool, relu, ConvInit,
    LinearInit, SquareConvConfig,
};
use crate::ModelOutput;

/// Configuration of a [`ShuffleNetV1`].
#[derive(Config, Debug)]
pub struct ShuffleNetV1Config {
    /// Number of classes.
    pub num_classes: usize,
    /// Output channels of the three stages.
    #[config(default = "[240, 480, 960]")]
    pub out_planes: [usize; 3],
    /// Blocks per stage.
    #[config(default = "[4, 8, 4]")]
    pub num_blocks: [usize; 3],
    /// Groups of the pointwise group convolutions.
    #[config(default = 3)]
    pub groups: usize,
}

impl ShuffleNetV1Config {
    /// Length of the pooled embedding (the last stage's width).
    pub fn embedding_dim(&self) -> usize {
        self.out_planes[2]
    }

    /// Builds the network with PyTorch's default initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ShuffleNetV1<B> {
        let mut channels_in = 24;
        let mut stage = |out_planes: usize, blocks: usize| -> Vec<ShuffleUnitV1<B>> {
            (0..blocks)
                .map(|index| {
                    let (stride, concat_planes) =
                        if index == 0 { (2, channels_in) } else { (1, 0) };
                    let unit = ShuffleUnitV1::new(
                        channels_in,
                        out_planes - concat_planes,
                        stride,
                        self.groups,
                        device,
                    );
                    channels_in = out_planes;
                    unit
                })
                .collect()
        };
        let layer1 = stage(self.out_planes[0], self.num_blocks[0]);
        let layer2 = stage(self.out_planes[1], self.num_blocks[1]);
        let layer3 = stage(self.out_planes[2], self.num_blocks[2]);
        ShuffleNetV1 {
            conv1: SquareConvConfig::new([3, 24], 1, ConvInit::PyTorchDefault).init(device),
            bn1: batch_norm(24, device),
            layer1,
            layer2,
            layer3,
            linear: classifier(
                self.out_planes[2],
                self.num_classes,
                LinearInit::PyTorchDefault,
                device,
            ),
        }
    }
}

/// A ShuffleNetV1 unit: `gconv1×1 → BN → ReLU → shuffle → dwconv3×3(stride) → BN → ReLU →
/// gconv1×1 → BN`, combined with the shortcut (identity and add at stride 1; 3×3/2 average pool
/// and concatenation at stride 2), then ReLU.
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`
/// - output `[batch, channels_branch (+ channels_in at stride 2), h / stride, w / stride]`
#[derive(Module, Debug)]
pub struct ShuffleUnitV1<B: Backend> {
    /// Pointwise group convolution in.
    pub conv1: Conv2d<B>,
    /// Its batch norm.
    pub bn1: BatchNorm<B>,
    /// Depthwise 3×3.
    pub conv2: Conv2d<B>,
    /// Its batch norm.
    pub bn2: BatchNorm<B>,
    /// Pointwise group convolution out.
    pub conv3: Conv2d<B>,
    /// Its batch norm.
    pub bn3: BatchNorm<B>,
    /// Groups of the shuffle after `conv1`.
    pub shuffle_groups: usize,
    /// The 3×3/2 average-pool shortcut of a stride-2 unit (counts padding, as PyTorch's default).
    pub shortcut_pool: Option<AvgPool2d>,
}

impl<B: Backend> ShuffleUnitV1<B> {
    fn new(
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        groups: usize,
        device: &B::Device,
    ) -> Self {
        let mid = channels_out / 4;
        let first_groups = if channels_in == 24 { 1 } else { groups };
        let init = ConvInit::PyTorchDefault;
        Self {
            conv1: SquareConvConfig::new([channels_in, mid], 1, init)
                .with_groups(first_groups)
                .init(device),
            bn1: batch_norm(mid, device),
            conv2: SquareConvConfig::new([mid, mid], 3, init)
                .with_stride(stride)
                .with_groups(mid)
                .init(device),
            bn2: batch_norm(mid, device),
            conv3: SquareConvConfig::new([mid, channels_out], 1, init)
                .with_groups(groups)
                .init(device),
            bn3: batch_norm(channels_out, device),
            shuffle_groups: first_groups,
            shortcut_pool: (stride == 2).then(|| {
                AvgPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_count_include_pad(true)
                    .init()
            }),
        }
    }

    /// Returns `(output, preact)`: the unit output and its value before the final ReLU.
    pub fn forward(&self, input: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let hidden = self.bn1.forward_relu(self.conv1.forward(input.clone()));
        let hidden = channel_shuffle(hidden, self.shuffle_groups);
        let hidden = self.bn2.forward_relu(self.conv2.forward(hidden));
        let branch = self.bn3.forward(self.conv3.forward(hidden));
        let preact = match &self.shortcut_pool {
            Some(pool) => cat_channels(branch, pool.forward(input)),
            None => add(branch, input),
        };
        (relu(preact.clone()), preact)
    }
}

/// ShuffleNetV1: stem `conv1×1(3→24) → BN → ReLU`, three stages of shuffle units, global average
/// pool, `Linear`.
///
/// # Shapes
/// - input `[batch, 3, 32, 32]`
/// - features `[24,32,32]`, `[240,16,16]`, `[480,8,8]`, `[960,4,4]`
/// - embedding `[batch, 960]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct ShuffleNetV1<B: Backend> {
    /// Stem convolution.
    pub conv1: Conv2d<B>,
    /// Stem batch norm.
    pub bn1: BatchNorm<B>,
    /// Stage 1.
    pub layer1: Vec<ShuffleUnitV1<B>>,
    /// Stage 2.
    pub layer2: Vec<ShuffleUnitV1<B>>,
    /// Stage 3.
    pub layer3: Vec<ShuffleUnitV1<B>>,
    /// Classifier.
    pub linear: Linear<B>,
}

/// Runs the units of a stage; returns the output and the last unit's pre-ReLU value.
fn run_stage<B: Backend>(
    units: &[ShuffleUnitV1<B>],
    input: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    units
        .iter()
        .fold((input.clone(), input), |(hidden, _), unit| {
            unit.forward(hidden)
        })
}

impl<B: Backend> Backbone<B> for ShuffleNetV1<B> {
    const FAMILY: &'static str = "ShuffleNetV1";

    /// Runs the network; see [`ModelOutput`]. `preact_features` holds each stage's output
    /// before its final ReLU.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        let stem = self.bn1.forward_relu(self.conv1.forward(input)); // [batch, 24, 32, 32]
        let (stage1, preact1) = run_stage(&self.layer1, stem.clone()); // [batch, 240, 16, 16]
        let (stage2, preact2) = run_stage(&self.layer2, stage1.clone()); // [batch, 480, 8, 8]
        let (stage3, preact3) = run_stage(&self.layer3, stage2.clone()); // [batch, 960, 4, 4]
        let embedding = global_avg_pool(stage3.clone()); // [batch, 960]
        ModelOutput {
            logits: self.linear.forward(embedding.clone()),
            embedding,
            features: vec![stem.clone(), stage1, stage2, stage3],
            preact_features: Some(vec![stem, preact1, preact2, preact3]),
        }
    }

    /// PyTorch keys of `ShuffleNetv1.py` already match this module's paths.
    const KEY_RULES: KeyRules = KeyRules::SAME;

    /// `F.avg_pool2d(out, 4)` after three stride-2 stages: the last map must be 4×4.
    fn min_input_side(&self) -> usize {
        crate::backbone::min_side_for_window(3, 4)
    }

    fn classifier(&self) -> &Linear<B> {
        &self.linear
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn shapes_at_32() {
        let device = Default::default();
        let model = ShuffleNetV1Config::new(100).init::<Flex>(&device);
        let output = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
        let dims: Vec<_> = output.features.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [1, 24, 32, 32],
                [1, 240, 16, 16],
                [1, 480, 8, 8],
                [1, 960, 4, 4]
            ]
        );
        assert_eq!(output.logits.dims(), [1, 100]);
    }
}
