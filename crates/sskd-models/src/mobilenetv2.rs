//! MobileNetV2 of `models/mobilenetv2.py` as the CRD / SSKD benchmark uses it (`mobile_half`:
//! expansion 6, width ×0.5, plain ReLU, a stride-2 stem, and a first 1×1 expansion convolution
//! even where the expansion is 1).

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use crate::backbone::{Backbone, ReferenceCall};
use crate::key_rules::{KeyRules, NOT_A_KEY};
use crate::layers::{
    add, classifier, global_avg_pool, relu, ConvBn, ConvInit, LinearInit, SquareConvConfig,
};
use crate::ModelOutput;

/// The inverted-residual settings `(t, c, n, s)` of the reference before the width multiplier
/// (`t = expansion` is replaced by the configured expansion where it is not 1).
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Configuration of a [`MobileNetV2`].
#[derive(Config, Debug)]
pub struct MobileNetV2Config {
    /// Number of classes.
    pub num_classes: usize,
    /// Expansion ratio `T` of the inverted residuals.
    #[config(default = 6)]
    pub expansion: usize,
    /// Width multiplier.
    #[config(default = 0.5)]
    pub width_mult: f64,
}

impl MobileNetV2Config {
    /// Channels of the last 1×1 convolution: 1280, or `1280 · width` when `width > 1`.
    pub fn embedding_dim(&self) -> usize {
        if self.width_mult > 1.0 {
            (1280.0 * self.width_mult) as usize
        } else {
            1280
        }
    }

    /// Builds the network with the reference initialisation (like VGG).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MobileNetV2<B> {
        let init = ConvInit::FanOutNormal;
        let mut channels_in = (32.0 * self.width_mult) as usize;
        let conv1 = SquareConvConfig::new([3, channels_in], 3, init)
            .with_stride(2)
            .init_with_bn(device);
        let blocks = SETTINGS
            .iter()
            .map(|&(t, c, n, s)| {
                let expansion = if t == 1 { 1 } else { self.expansion };
                let channels_out = (c as f64 * self.width_mult) as usize;
                (0..n)
                    .map(|index| {
                        let stride = if index == 0 { s } else { 1 };
                        let block = InvertedResidual::new(
                            channels_in,
                            channels_out,
                            stride,
                            expansion,
                            device,
                        );
                        channels_in = channels_out;
                        block
                    })
                    .collect()
            })
            .collect();
        let last = self.embedding_dim();
        MobileNetV2 {
            conv1,
            blocks,
            conv2: SquareConvConfig::new([channels_in, last], 1, init).init_with_bn(device),
            classifier: classifier(last, self.num_classes, LinearInit::Normal001, device),
        }
    }
}

/// An inverted residual: `1×1 expand → BN → ReLU → 3×3 depthwise(stride) → BN → ReLU → 1×1
/// project → BN`, plus the input when the stride is 1 and the widths match.
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h / stride, w / stride]`
#[derive(Module, Debug)]
pub struct InvertedResidual<B: Backend> {
    /// Pointwise expansion (`conv.0`, `conv.1`).
    pub expand: ConvBn<B>,
    /// Depthwise 3×3 (`conv.3`, `conv.4`).
    pub depthwise: ConvBn<B>,
    /// Pointwise linear projection (`conv.6`, `conv.7`).
    pub project: ConvBn<B>,
    /// Whether the input is added to the output.
    pub residual: bool,
}

impl<B: Backend> InvertedResidual<B> {
    fn new(
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        expansion: usize,
        device: &B::Device,
    ) -> Self {
        let hidden = channels_in * expansion;
        let init = ConvInit::FanOutNormal;
        Self {
            expand: SquareConvConfig::new([channels_in, hidden], 1, init).init_with_bn(device),
            depthwise: SquareConvConfig::new([hidden, hidden], 3, init)
                .with_stride(stride)
                .with_groups(hidden)
                .init_with_bn(device),
            project: SquareConvConfig::new([hidden, channels_out], 1, init).init_with_bn(device),
            residual: stride == 1 && channels_in == channels_out,
        }
    }

    /// Applies the block.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let hidden = self.expand.forward_relu(input.clone());
        let hidden = self.depthwise.forward_relu(hidden);
        let output = self.project.forward(hidden);
        if self.residual {
            add(output, input)
        } else {
            output
        }
    }
}

/// MobileNetV2 (CRD variant): stem `conv3×3(stride 2)`, seven groups of inverted residuals,
/// `conv1×1(→1280)`, global average pool, `Linear`.
///
/// # Shapes
/// - input `[batch, 3, 32, 32]`
/// - features `[16,16,16]`, `[12,16,16]`, `[16,8,8]`, `[48,4,4]`, `[160,2,2]` at width 0.5
/// - embedding `[batch, 1280]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct MobileNetV2<B: Backend> {
    /// Stem (`conv1.0`, `conv1.1`).
    pub conv1: ConvBn<B>,
    /// The seven groups of inverted residuals.
    pub blocks: Vec<Vec<InvertedResidual<B>>>,
    /// Last 1×1 convolution (`conv2.0`, `conv2.1`).
    pub conv2: ConvBn<B>,
    /// Classifier (`classifier.0` in RepDistiller, `classifier` in SSKD).
    pub classifier: Linear<B>,
}

impl<B: Backend> Backbone<B> for MobileNetV2<B> {
    const FAMILY: &'static str = "MobileNetV2";

    /// Runs the network; see [`ModelOutput`]. The reference ignores `preact` for this model, so
    /// `preact_features` is `None`.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        self.forward_call(input, ReferenceCall::default())
    }

    /// The last 1×1 convolution (`conv2`) is not among the reference's `get_feat_modules()`:
    /// with `feature_layers_only` its batch norm runs frozen in inference mode.
    fn forward_call(&self, input: Tensor<B, 4>, call: ReferenceCall) -> ModelOutput<B> {
        let run_groups = |hidden: Tensor<B, 4>, groups: std::ops::Range<usize>| {
            self.blocks[groups]
                .iter()
                .flatten()
                .fold(hidden, |hidden, block| block.forward(hidden))
        };
        let stem = self.conv1.forward_relu(input); // [batch, 16, 16, 16]
        let stage1 = run_groups(stem.clone(), 0..2); // [batch, 12, 16, 16]
        let stage2 = run_groups(stage1.clone(), 2..3); // [batch, 16, 8, 8]
        let stage3 = run_groups(stage2.clone(), 3..5); // [batch, 48, 4, 4]
        let stage4 = run_groups(stage3.clone(), 5..7); // [batch, 160, 2, 2]
        let last = match call.feature_layers_only {
            true => self
                .conv2
                .bn
                .forward_frozen(self.conv2.conv.forward(stage4.clone())),
            false => self.conv2.forward(stage4.clone()),
        };
        let embedding = global_avg_pool(relu(last)); // [batch, 1280]
        ModelOutput {
            logits: self.classifier.forward(embedding.clone()),
            embedding,
            features: vec![stem, stage1, stage2, stage3, stage4],
            preact_features: None,
        }
    }

    /// `mobilenetv2.py` numbers the layers of its `Sequential`s: `conv1.0/1` are
    /// `conv1.conv/bn`; a block's `conv.{0,1,3,4,6,7}` are its `{expand,depthwise,project}
    /// .{conv,bn}`; the classifier is `classifier.0` in RepDistiller (a `Sequential`) and
    /// `classifier` in SSKD's copy.
    const KEY_RULES: KeyRules = KeyRules {
        common: &[
            ("^conv1.0", "conv1.conv"),
            ("^conv1.1", "conv1.bn"),
            ("^conv2.0", "conv2.conv"),
            ("^conv2.1", "conv2.bn"),
            ("conv.0", "expand.conv"),
            ("conv.1", "expand.bn"),
            ("conv.3", "depthwise.conv"),
            ("conv.4", "depthwise.bn"),
            ("conv.6", "project.conv"),
            ("conv.7", "project.bn"),
            ("conv.{a}", NOT_A_KEY),
        ],
        spellings: &[&[("^classifier.0", "classifier")], &[]],
    };

    /// `AvgPool2d(2, ceil_mode=True)` accepts a last map of 1×1, which any input leaves.
    fn min_input_side(&self) -> usize {
        1
    }

    fn classifier(&self) -> &Linear<B> {
        &self.classifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn half_width_feature_shapes() {
        let device = Default::default();
        let model = MobileNetV2Config::new(100).init::<Flex>(&device);
        let output = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
        let dims: Vec<_> = output.features.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [1, 16, 16, 16],
                [1, 12, 16, 16],
                [1, 16, 8, 8],
                [1, 48, 4, 4],
                [1, 160, 2, 2]
            ]
        );
        assert_eq!(output.embedding.dims(), [1, 1280]);
    }

    #[test]
    fn both_classifier_layouts_map() {
        for key in ["classifier.0.weight", "classifier.weight"] {
            assert_eq!(
                MobileNetV2::<Flex>::burn_path(key).as_deref(),
                Some("classifier.weight")
            );
        }
        assert_eq!(
            MobileNetV2::<Flex>::burn_path("blocks.3.2.conv.7.running_var").as_deref(),
            Some("blocks.3.2.project.bn.running_var")
        );
        assert_eq!(
            MobileNetV2::<Flex>::burn_path("blocks.3.2.conv.2.weight"),
            None
        );
    }
}
