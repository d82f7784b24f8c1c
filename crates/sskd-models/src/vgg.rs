//! VGG with batch norm, the "FC layers removed" CIFAR variant of `models/vgg.py`
//! (vgg8, vgg11, vgg13, vgg16, vgg19).

use burn::config::Config;
use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use crate::backbone::Backbone;
use crate::key_rules::{KeyRules, NOT_A_KEY};
use crate::layers::{
    batch_norm, classifier, global_avg_pool, max_pool2d, relu, ConvBn, ConvInit, LinearInit,
    SquareConvConfig,
};
use crate::ModelOutput;

/// Configuration of a [`Vgg`]: the output channels of every convolution, block by block.
#[derive(Config, Debug)]
pub struct VggConfig {
    /// Five blocks, each a list of convolution widths.
    pub blocks: Vec<Vec<usize>>,
    /// Number of classes.
    pub num_classes: usize,
}

impl VggConfig {
    /// The reference configuration of `vgg{depth}` (8, 11, 13, 16 or 19), or `None`.
    pub fn from_depth(depth: usize, num_classes: usize) -> Option<Self> {
        let blocks: Vec<Vec<usize>> = match depth {
            8 => vec![vec![64], vec![128], vec![256], vec![512], vec![512]],
            11 => vec![
                vec![64],
                vec![128],
                vec![256; 2],
                vec![512; 2],
                vec![512; 2],
            ],
            13 => vec![
                vec![64; 2],
                vec![128; 2],
                vec![256; 2],
                vec![512; 2],
                vec![512; 2],
            ],
            16 => vec![
                vec![64; 2],
                vec![128; 2],
                vec![256; 3],
                vec![512; 3],
                vec![512; 3],
            ],
            19 => vec![
                vec![64; 2],
                vec![128; 2],
                vec![256; 4],
                vec![512; 4],
                vec![512; 4],
            ],
            _ => return None,
        };
        Some(Self::new(blocks, num_classes))
    }

    /// Length of the pooled embedding (the last block's width).
    pub fn embedding_dim(&self) -> usize {
        self.blocks
            .last()
            .and_then(|b| b.last())
            .copied()
            .unwrap_or(3)
    }

    /// Builds the network with the reference initialisation: convs `N(0, sqrt(2/(9·out)))`
    /// with zero bias, BN γ = 1 β = 0, classifier `N(0, 0.01)` with zero bias.
    ///
    /// # Panics
    /// If there are not exactly five non-empty blocks.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vgg<B> {
        assert!(
            self.blocks.len() == 5 && self.blocks.iter().all(|b| !b.is_empty()),
            "VGG needs five non-empty blocks"
        );
        let mut channels_in = 3;
        let blocks: Vec<Vec<ConvBn<B>>> = self
            .blocks
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&width| {
                        let conv =
                            SquareConvConfig::new([channels_in, width], 3, ConvInit::FanOutNormal)
                                .with_bias(true)
                                .init(device);
                        channels_in = width;
                        ConvBn {
                            conv,
                            bn: batch_norm(width, device),
                        }
                    })
                    .collect()
            })
            .collect();
        let [block0, block1, block2, block3, block4]: [Vec<ConvBn<B>>; 5] =
            blocks.try_into().expect("five blocks");
        Vgg {
            block0,
            block1,
            block2,
            block3,
            block4,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            classifier: classifier(channels_in, self.num_classes, LinearInit::Normal001, device),
        }
    }
}

/// VGG-BN for CIFAR: five blocks of `conv3×3(bias) → BN → ReLU`, 2×2 max-pools after blocks 0,
/// 1 and 2 (and after block 3 only for 64×64 inputs), global average pool, `Linear`.
///
/// Each block's last ReLU is applied outside the block, so its pre-ReLU output is the
/// `preact` feature.
///
/// # Shapes
/// - input `[batch, 3, 32, 32]` (or 64×64)
/// - features `[64,32,32]`, `[128,16,16]`, `[256,8,8]`, `[512,4,4]`, `[512,4,4]` at 32×32
/// - embedding `[batch, 512]`, logits `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct Vgg<B: Backend> {
    /// Block 0.
    pub block0: Vec<ConvBn<B>>,
    /// Block 1.
    pub block1: Vec<ConvBn<B>>,
    /// Block 2.
    pub block2: Vec<ConvBn<B>>,
    /// Block 3.
    pub block3: Vec<ConvBn<B>>,
    /// Block 4.
    pub block4: Vec<ConvBn<B>>,
    /// The 2×2/2 max-pool between blocks.
    pub pool: MaxPool2d,
    /// Classifier.
    pub classifier: Linear<B>,
}

/// Runs a block and returns its pre-ReLU output (ReLU between its layers, none after the last).
fn run_block<B: Backend>(block: &[ConvBn<B>], input: Tensor<B, 4>) -> Tensor<B, 4> {
    let (last, body) = block.split_last().expect("blocks are never empty");
    let hidden = body
        .iter()
        .fold(input, |hidden, layer| layer.forward_relu(hidden));
    last.forward(hidden)
}

impl<B: Backend> Backbone<B> for Vgg<B> {
    const FAMILY: &'static str = "VGG";

    /// Runs the network; see [`ModelOutput`]. `preact_features` holds the pre-ReLU outputs of
    /// blocks 1–4 (block 0 stays activated, as in the reference).
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B> {
        let input_height = input.dims()[2];
        let stage0 = relu(run_block(&self.block0, input)); // [batch, 64, 32, 32]
        let mut features = vec![stage0.clone()];
        let mut preact_features = vec![stage0.clone()];
        let mut hidden = stage0;
        let later_blocks = [&self.block1, &self.block2, &self.block3, &self.block4];
        for (index, block) in later_blocks.into_iter().enumerate() {
            // Pools before blocks 1, 2, 3 always; before block 4 only at 64×64 input.
            if index < 3 || input_height == 64 {
                hidden = max_pool2d(&self.pool, hidden);
            }
            let preact = run_block(block, hidden);
            hidden = relu(preact.clone());
            features.push(hidden.clone());
            preact_features.push(preact);
        }
        let embedding = global_avg_pool(hidden); // [batch, 512]
        ModelOutput {
            logits: self.classifier.forward(embedding.clone()),
            embedding,
            features,
            preact_features: Some(preact_features),
        }
    }

    /// `vgg.py`'s `blockB` is a `Sequential` of BN and ReLU triples: its position `3J` is
    /// `blockB.J.conv` here, `3J + 1` `blockB.J.bn`.
    const KEY_RULES: KeyRules = KeyRules::one(&[
        ("block{a}.{3b}", "block{a}.{b}.conv"),
        ("block{a}.{3b+1}", "block{a}.{b}.bn"),
        ("block{a}.{b}", NOT_A_KEY),
    ]);

    /// Three 2×2/2 max-pools (rounding down) must leave at least one pixel.
    fn min_input_side(&self) -> usize {
        8
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
    fn vgg8_pools_before_block4_only_at_64() {
        let device = Default::default();
        let model = VggConfig::from_depth(8, 10).unwrap().init::<Flex>(&device);
        let at32 = model.forward(Tensor::zeros([1, 3, 32, 32], &device));
        assert_eq!(at32.features[4].dims(), [1, 512, 4, 4]);
        let at64 = model.forward(Tensor::zeros([1, 3, 64, 64], &device));
        assert_eq!(at64.features[3].dims(), [1, 512, 8, 8]);
        assert_eq!(at64.features[4].dims(), [1, 512, 4, 4]);
    }

    #[test]
    fn sequential_indices_map_to_conv_and_bn() {
        assert_eq!(
            Vgg::<Flex>::burn_path("block2.4.running_mean").as_deref(),
            Some("block2.1.bn.running_mean")
        );
        assert_eq!(
            Vgg::<Flex>::burn_path("block0.3.bias").as_deref(),
            Some("block0.1.conv.bias")
        );
        assert_eq!(Vgg::<Flex>::burn_path("block0.2.weight"), None);
        assert_eq!(
            Vgg::<Flex>::burn_path("classifier.weight").as_deref(),
            Some("classifier.weight")
        );
    }
}
