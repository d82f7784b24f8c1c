//! Wide ResNets of `models/wrn.py` (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2): pre-activation
//! blocks, widths 16k, 32k, 64k, dropout 0.

use crate::conv2d::Conv2d;
use crate::key_rules::KeyRules;
use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;

use crate::backbone::{Backbone, ReferenceCall};
use crate::batch_norm::BatchNorm;
use burn::tensor::{backend::Backend, Tensor};

use crate::layers::{
    add, batch_norm, classifier, conv_forward, global_avg_pool, relu, ConvInit, LinearInit,
    SquareConvConfig,
};
use crate::ModelOutput;

/// Configuration of a [`WideResNet`] `wrn_{depth}_{widen_factor}`.
#[derive(Config, Debug)]
pub struct WideResNetConfig {
    /// Depth `6n + 4`.
    pub depth: usize,
    /// Width multiplier `k`.
    pub widen_factor: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl WideResNetConfig {
    /// Channel widths of the stem and the three groups: `[16, 16k, 32k, 64k]`.
    pub fn widths(&self) -> [usize; 4] {
        let k = self.widen_factor;
        [16, 16 * k, 32 * k, 64 * k]
    }

    /// Length of the pooled embedding (`64k`).
    pub fn embedding_dim(&self) -> usize {
        self.widths()[3]
    }

    /// Builds the network with the reference initialisation: convs `N(0, sqrt(2/(k·k·out)))`,
    /// BN γ = 1 β = 0, classifier bias 0.
    ///
    /// # Panics
    /// If `depth − 4` is not a multiple of 6.
    pub fn init<B: Backend>(&self, device: &B::Device) -> WideResNet<B> {
        assert!(
            self.depth >= 10 && (self.depth - 4).is_multiple_of(6),
            "WRN depth must be 6n + 4, got {}",
            self.depth
        );
        let blocks = (self.depth - 4) / 6;
        let widths = self.widths();
        let group = |index: usize, stride: usize| WrnGroup {
            layer: (0..blocks)
                .map(|block| {
                    let channels_in = if block == 0 {
                        widths[index]
                    } else {
                        widths[index + 1]
                    };
                    let stride = if block == 0 { stride } else { 1 };
                    WrnBlock::new(channels_in, widths[index + 1], stride, device)
                })
                .collect(),
        };
        WideResNet {
            conv1: SquareConvConfig::new([3, 16], 3, ConvInit::FanOutNormal).init(device),
            block1: group(0, 1),
            block2: group(1, 2),
            block3: group(2, 2),
            bn1: batch_norm(widths[3], device),
            fc: classifier(widths[3], self.num_classes, LinearInit::ZeroBias, device),
        }
    }
}

/// A pre-activation WRN block.
///
/// If `in == out`: `x + conv2(ReLU(BN2(conv1(ReLU(BN1(x))))))`. Otherwise `x` is first replaced
/// by `ReLU(BN1(x))`, which feeds both the branch and the `conv1×1(stride)` shortcut.
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h / stride, w / stride]`
#[derive(Module, Debug)]
pub struct WrnBlock<B: Backend> {
    /// Pre-activation batch norm of the input.
    pub bn1: BatchNorm<B>,
    /// First 3×3 convolution (strided).
    pub conv1: Conv2d<B>,
    /// Batch norm after `conv1`.
    pub bn2: BatchNorm<B>,
    /// Second 3×3 convolution.
    pub conv2: Conv2d<B>,
    /// 1×1 projection when the width changes (`convShortcut` in PyTorch).
    pub conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> WrnBlock<B> {
    fn new(channels_in: usize, channels_out: usize, stride: usize, device: &B::Device) -> Self {
        let init = ConvInit::FanOutNormal;
        Self {
            bn1: batch_norm(channels_in, device),
            conv1: SquareConvConfig::new([channels_in, channels_out], 3, init)
                .with_stride(stride)
                .init(device),
            bn2: batch_norm(channels_out, device),
            conv2: SquareConvConfig::new([channels_out, channels_out], 3, init).init(device),
            conv_shortcut: (channels_in != channels_out).then(|| {
                SquareConvConfig::new([channels_in, channels_out], 1, init)
                    .with_stride(stride)
                    .init(device)
            }),
        }
    }

    /// Applies the block.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let activated = self.bn1.forward_relu(input.clone());
        let branch = self.bn2.forward_relu(self.conv1.forward(activated.clone()));
        let branch = self.conv2.forward(branch);
        match &self.conv_shortcut {
            Some(projection) => add(conv_forward(projection, activated), branch),
            None => add(input, branch),
        }
    }
}

/// A group of WRN blocks (`NetworkBlock` in PyTorch, whose blocks live in `.layer`).
#[derive(Module, Debug)]
pub struct WrnGroup<B: Backend> {
    /// The blocks.
    pub layer: Vec<WrnBlock<B>>,
}

impl<B: Backend> WrnGroup<B> {
    /// Applies the blocks in order.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.layer
            .iter()
            .fold(input, |hidden, block| block.forward(hidden))
    }
}

/// A Wide ResNet: `conv3×3(3→16)`, three groups, `BN → ReLU → avg-pool → Linear`.
///
/// # Shapes
/// - input `[batch, 3, 32, 32]`
/// - features `[16,32,32]`, `[16k,32,32]`, `[32k,16,16]`, `[64k,8,8]` (per sample)
/// - embedding `[batch, 64k]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct WideResNet<B: Backend> {
    /// Stem convolution (no BN or ReLU after it).
    pub conv1: Conv2d<B>,
    /// Group 1 (stride 1).
    pub block1: WrnGroup<B>,
    /// Group 2 (stride 2).
    pub block2: WrnGroup<B>,
    /// Group 3 (stride 2).
    pub block3: WrnGroup<B>,
    /// Final batch norm.
    pub bn1: BatchNorm<B>,
    /// Classifier.
    pub fc: Linear<B>,
}

impl<B: Backend> WideResNet<B> {
    /// The forward pass as the reference makes `call` (see [`Backbone::forward_call`]).
    fn run(&self, input: Tensor<B, 4>, call: ReferenceCall) -> ModelOutput<B> {
        // The final `bn1` is not among the reference's `get_feat_modules()`.
        let final_bn = |seen: Tensor<B, 4>| match call.feature_layers_only {
            true => self.bn1.forward_frozen(seen),
            false => self.bn1.forward(seen),
        };
        let stem = self.conv1.forward(input); // [batch, 16, 32, 32]
        let stage1 = self.block1.forward(stem.clone()); // [batch, 16k, 32, 32]
        let stage2 = self.block2.forward(stage1.clone()); // [batch, 32k, 16, 16]
        let stage3 = self.block3.forward(stage2.clone()); // [batch, 64k, 8, 8]
        let normalised = final_bn(stage3.clone());
        let again = |bn: &BatchNorm<B>, seen: Tensor<B, 4>| {
            if call.preact {
                bn.forward(seen)
            } else {
                bn.forward_without_update(seen)
            }
        };
        let embedding = global_avg_pool(relu(normalised.clone())); // [batch, 64k]
        let preact_features = vec![
            stem.clone(),
            // The same batch already went through these layers above: normalise it again,
            // counting it twice in their running statistics only as the reference's preact
            // forward does.
            again(&self.block2.layer[0].bn1, stage1.clone()),
            again(&self.block3.layer[0].bn1, stage2.clone()),
            if call.preact {
                final_bn(stage3.clone())
            } else {
                normalised
            },
        ];
        ModelOutput {
            logits: self.fc.forward(embedding.clone()),
            embedding,
            features: vec![stem, stage1, stage2, stage3],
            preact_features: Some(preact_features),
        }
    }
}

impl<B: Backend> Backbone<B> for WideResNet<B> {
    const FAMILY: &'static str = "WideResNet";

    /// Runs the network; see [`ModelOutput`].
    ///
    /// `features` are the raw residual sums; `preact_features` replaces stage 1 by the `bn1` of
    /// group 2's first block applied to it, stage 2 likewise with group 3, and stage 3 by the
    /// final `bn1`, as the reference does.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        self.run(input, ReferenceCall::default())
    }

    /// With `preact=True` the reference calls three batch norms again on tensors they already
    /// normalised, so in training mode their running statistics count the batch twice; its
    /// `get_feat_modules()` leaves the final `bn1` out.
    fn forward_call(&self, input: Tensor<B, 4>, call: ReferenceCall) -> ModelOutput<B> {
        self.run(input, call)
    }

    /// `wrn.py`'s keys match this module's paths but for `convShortcut`.
    const KEY_RULES: KeyRules = KeyRules::one(&[("convShortcut", "conv_shortcut")]);

    /// `F.avg_pool2d(out, 8)` after groups of strides 1/2/2: the last map must be 8×8.
    fn min_input_side(&self) -> usize {
        crate::backbone::min_side_for_window(2, 8)
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
    fn wrn_16_2_shapes() {
        let device = Default::default();
        let model = WideResNetConfig::new(16, 2, 100).init::<Flex>(&device);
        let output = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
        let dims: Vec<_> = output.features.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [1, 16, 32, 32],
                [1, 32, 32, 32],
                [1, 64, 16, 16],
                [1, 128, 8, 8]
            ]
        );
        assert_eq!(output.embedding.dims(), [1, 128]);
    }

    #[test]
    fn wrn_16_1_first_block_has_no_shortcut() {
        let device = Default::default();
        let model = WideResNetConfig::new(16, 1, 100).init::<Flex>(&device);
        assert!(model.block1.layer[0].conv_shortcut.is_none());
        assert!(model.block2.layer[0].conv_shortcut.is_some());
    }
}
