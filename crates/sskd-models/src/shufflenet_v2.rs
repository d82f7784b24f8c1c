//! ShuffleNetV2 of `models/ShuffleNetv2.py` (`ShuffleV2`, net size 1: out channels
//! 116/232/464/1024, blocks 3/7/3), PyTorch's default initialisation.

use crate::conv2d::Conv2d;
use crate::key_rules::KeyRules;
use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;

use crate::backbone::{Backbone, ReferenceCall};
use crate::batch_norm::BatchNorm;
use burn::tensor::{backend::Backend, Tensor};

use crate::layers::{
    batch_norm, cat_channels, cat_channels_shuffled, classifier, global_avg_pool, narrow_channels,
    relu, ConvInit, LinearInit, SquareConvConfig,
};
use crate::ModelOutput;

/// Configuration of a [`ShuffleNetV2`].
#[derive(Config, Debug)]
pub struct ShuffleNetV2Config {
    /// Number of classes.
    pub num_classes: usize,
    /// Output channels of the three stages and of the last 1×1 convolution.
    #[config(default = "[116, 232, 464, 1024]")]
    pub out_channels: [usize; 4],
    /// Basic blocks per stage (after its down-sampling block).
    #[config(default = "[3, 7, 3]")]
    pub num_blocks: [usize; 3],
}

impl ShuffleNetV2Config {
    /// Length of the pooled embedding.
    pub fn embedding_dim(&self) -> usize {
        self.out_channels[3]
    }

    /// Builds the network with PyTorch's default initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ShuffleNetV2<B> {
        let stage = |channels_in: usize, channels_out: usize, blocks: usize| ShuffleStageV2 {
            down: DownBlock::new(channels_in, channels_out, device),
            blocks: (0..blocks)
                .map(|_| SplitBlock::new(channels_out, device))
                .collect(),
        };
        let [c1, c2, c3, last] = self.out_channels;
        ShuffleNetV2 {
            conv1: SquareConvConfig::new([3, 24], 1, ConvInit::PyTorchDefault).init(device),
            bn1: batch_norm(24, device),
            layer1: stage(24, c1, self.num_blocks[0]),
            layer2: stage(c1, c2, self.num_blocks[1]),
            layer3: stage(c2, c3, self.num_blocks[2]),
            conv2: SquareConvConfig::new([c3, last], 1, ConvInit::PyTorchDefault).init(device),
            bn2: batch_norm(last, device),
            linear: classifier(last, self.num_classes, LinearInit::PyTorchDefault, device),
        }
    }
}

/// The basic unit: split the channels in halves, keep the first, run the second through
/// `conv1×1 → BN → ReLU → dwconv3×3 → BN → conv1×1 → BN → ReLU`, concatenate, shuffle (2 groups).
///
/// # Shapes
/// - input and output `[batch, channels, h, w]`
#[derive(Module, Debug)]
pub struct SplitBlock<B: Backend> {
    /// Pointwise in.
    pub conv1: Conv2d<B>,
    /// Its batch norm.
    pub bn1: BatchNorm<B>,
    /// Depthwise 3×3.
    pub conv2: Conv2d<B>,
    /// Its batch norm.
    pub bn2: BatchNorm<B>,
    /// Pointwise out.
    pub conv3: Conv2d<B>,
    /// Its batch norm.
    pub bn3: BatchNorm<B>,
}

impl<B: Backend> SplitBlock<B> {
    fn new(channels: usize, device: &B::Device) -> Self {
        let half = channels / 2;
        let init = ConvInit::PyTorchDefault;
        Self {
            conv1: SquareConvConfig::new([half, half], 1, init).init(device),
            bn1: batch_norm(half, device),
            conv2: SquareConvConfig::new([half, half], 3, init)
                .with_groups(half)
                .init(device),
            bn2: batch_norm(half, device),
            conv3: SquareConvConfig::new([half, half], 1, init).init(device),
            bn3: batch_norm(half, device),
        }
    }

    /// Applies the unit.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let (kept, branch_preact) = self.kept_and_branch(input);
        cat_channels_shuffled(kept, relu(branch_preact), 2)
    }

    /// Returns `(output, preact)`; `preact` is `[kept half, branch before its last ReLU]`,
    /// unshuffled, as in the reference.
    pub fn forward_with_preact(&self, input: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (kept, branch_preact) = self.kept_and_branch(input);
        let output = cat_channels_shuffled(kept.clone(), relu(branch_preact.clone()), 2);
        (output, cat_channels(kept, branch_preact))
    }

    /// The kept half of the input's channels, and the branch before its last ReLU.
    fn kept_and_branch(&self, input: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let channels = input.dims()[1];
        let half = channels / 2;
        let kept = narrow_channels(input.clone(), 0..half);
        let branch = narrow_channels(input, half..channels);
        let branch = self.bn1.forward_relu(self.conv1.forward(branch));
        let branch = self.bn2.forward(self.conv2.forward(branch));
        (kept, self.bn3.forward(self.conv3.forward(branch)))
    }
}

/// The down-sampling unit: left `dwconv3×3/2 → BN → conv1×1 → BN → ReLU`, right `conv1×1 → BN →
/// ReLU → dwconv3×3/2 → BN → conv1×1 → BN → ReLU`, concatenated and shuffled (2 groups).
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h / 2, w / 2]`
#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    /// Left depthwise 3×3/2.
    pub conv1: Conv2d<B>,
    /// Its batch norm.
    pub bn1: BatchNorm<B>,
    /// Left pointwise.
    pub conv2: Conv2d<B>,
    /// Its batch norm.
    pub bn2: BatchNorm<B>,
    /// Right pointwise in.
    pub conv3: Conv2d<B>,
    /// Its batch norm.
    pub bn3: BatchNorm<B>,
    /// Right depthwise 3×3/2.
    pub conv4: Conv2d<B>,
    /// Its batch norm.
    pub bn4: BatchNorm<B>,
    /// Right pointwise out.
    pub conv5: Conv2d<B>,
    /// Its batch norm.
    pub bn5: BatchNorm<B>,
}

impl<B: Backend> DownBlock<B> {
    fn new(channels_in: usize, channels_out: usize, device: &B::Device) -> Self {
        let mid = channels_out / 2;
        let init = ConvInit::PyTorchDefault;
        Self {
            conv1: SquareConvConfig::new([channels_in, channels_in], 3, init)
                .with_stride(2)
                .with_groups(channels_in)
                .init(device),
            bn1: batch_norm(channels_in, device),
            conv2: SquareConvConfig::new([channels_in, mid], 1, init).init(device),
            bn2: batch_norm(mid, device),
            conv3: SquareConvConfig::new([channels_in, mid], 1, init).init(device),
            bn3: batch_norm(mid, device),
            conv4: SquareConvConfig::new([mid, mid], 3, init)
                .with_stride(2)
                .with_groups(mid)
                .init(device),
            bn4: batch_norm(mid, device),
            conv5: SquareConvConfig::new([mid, mid], 1, init).init(device),
            bn5: batch_norm(mid, device),
        }
    }

    /// Applies the unit.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let left = self.bn1.forward(self.conv1.forward(input.clone()));
        let left = self.bn2.forward_relu(self.conv2.forward(left));
        let right = self.bn3.forward_relu(self.conv3.forward(input));
        let right = self.bn4.forward(self.conv4.forward(right));
        let right = self.bn5.forward_relu(self.conv5.forward(right));
        cat_channels_shuffled(left, right, 2)
    }
}

/// A stage: one [`DownBlock`] (`layerK.0` in PyTorch) then basic units (`layerK.1…`).
#[derive(Module, Debug)]
pub struct ShuffleStageV2<B: Backend> {
    /// The down-sampling unit.
    pub down: DownBlock<B>,
    /// The basic units.
    pub blocks: Vec<SplitBlock<B>>,
}

impl<B: Backend> ShuffleStageV2<B> {
    /// Returns `(output, preact)` of the stage (`preact` of its last unit; the down-sampling
    /// unit's output when there is no other).
    pub fn forward(&self, input: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let hidden = self.down.forward(input);
        let Some((last, earlier)) = self.blocks.split_last() else {
            return (hidden.clone(), hidden);
        };
        let hidden = earlier
            .iter()
            .fold(hidden, |hidden, block| block.forward(hidden));
        last.forward_with_preact(hidden)
    }
}

/// ShuffleNetV2: stem `conv1×1(3→24) → BN → ReLU`, three stages, `conv1×1 → BN → ReLU`, global
/// average pool, `Linear`.
///
/// # Shapes
/// - input `[batch, 3, 32, 32]`
/// - features `[24,32,32]`, `[116,16,16]`, `[232,8,8]`, `[464,4,4]`
/// - embedding `[batch, 1024]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct ShuffleNetV2<B: Backend> {
    /// Stem convolution.
    pub conv1: Conv2d<B>,
    /// Stem batch norm.
    pub bn1: BatchNorm<B>,
    /// Stage 1.
    pub layer1: ShuffleStageV2<B>,
    /// Stage 2.
    pub layer2: ShuffleStageV2<B>,
    /// Stage 3.
    pub layer3: ShuffleStageV2<B>,
    /// Last 1×1 convolution.
    pub conv2: Conv2d<B>,
    /// Its batch norm.
    pub bn2: BatchNorm<B>,
    /// Classifier.
    pub linear: Linear<B>,
}

impl<B: Backend> Backbone<B> for ShuffleNetV2<B> {
    const FAMILY: &'static str = "ShuffleNetV2";

    /// Runs the network; see [`ModelOutput`]. `preact_features` holds each stage's last unit's
    /// `preact`.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        self.forward_call(input, ReferenceCall::default())
    }

    /// The last 1×1 convolution (`conv2`, `bn2`) is not among the reference's
    /// `get_feat_modules()`: with `feature_layers_only` its batch norm runs frozen in inference
    /// mode.
    fn forward_call(&self, input: Tensor<B, 4>, call: ReferenceCall) -> ModelOutput<B> {
        let stem = self.bn1.forward_relu(self.conv1.forward(input)); // [batch, 24, 32, 32]
        let (stage1, preact1) = self.layer1.forward(stem.clone()); // [batch, 116, 16, 16]
        let (stage2, preact2) = self.layer2.forward(stage1.clone()); // [batch, 232, 8, 8]
        let (stage3, preact3) = self.layer3.forward(stage2.clone()); // [batch, 464, 4, 4]
        let projected = self.conv2.forward(stage3.clone());
        let last = relu(match call.feature_layers_only {
            true => self.bn2.forward_frozen(projected),
            false => self.bn2.forward(projected),
        });
        let embedding = global_avg_pool(last); // [batch, 1024]
        ModelOutput {
            logits: self.linear.forward(embedding.clone()),
            embedding,
            features: vec![stem.clone(), stage1, stage2, stage3],
            preact_features: Some(vec![stem, preact1, preact2, preact3]),
        }
    }

    /// `ShuffleNetv2.py` numbers a stage's units: its position 0 is the `down` unit here,
    /// position `n + 1` is `blocks.{n}`.
    const KEY_RULES: KeyRules = KeyRules::one(&[
        ("layer{a}.0", "layer{a}.down"),
        ("layer{a}.{b+1}", "layer{a}.blocks.{b}"),
    ]);

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
        let model = ShuffleNetV2Config::new(100).init::<Flex>(&device);
        let output = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
        let dims: Vec<_> = output.features.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [1, 24, 32, 32],
                [1, 116, 16, 16],
                [1, 232, 8, 8],
                [1, 464, 4, 4]
            ]
        );
        assert_eq!(output.embedding.dims(), [1, 1024]);
    }

    #[test]
    fn first_unit_is_the_down_block() {
        assert_eq!(
            ShuffleNetV2::<Flex>::burn_path("layer2.0.bn5.weight").as_deref(),
            Some("layer2.down.bn5.weight")
        );
        assert_eq!(
            ShuffleNetV2::<Flex>::burn_path("layer2.3.conv1.weight").as_deref(),
            Some("layer2.blocks.2.conv1.weight")
        );
    }
}
