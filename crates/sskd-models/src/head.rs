//! The self-supervision head of SSKD (`proj_head` in `wrapper.py`) and a backbone carrying one.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{backend::Backend, Tensor};

use crate::elementwise::relu;
use crate::key_rules::{KeyRules, NOT_A_KEY};
use crate::{Model, ModelOutput};

/// Configuration of a [`SelfSupervisionHead`].
#[derive(Config, Debug)]
pub struct SelfSupervisionHeadConfig {
    /// Width `d` of the backbone's embedding.
    pub dim: usize,
    /// Output width: `d` for SSKD's contrastive head (the default), or the number of classes
    /// of a classification SS task (4 for rotation, 24 for 2×2 jigsaw).
    pub outputs: Option<usize>,
}

impl SelfSupervisionHeadConfig {
    /// Builds the head with PyTorch's default `Linear` initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SelfSupervisionHead<B> {
        SelfSupervisionHead {
            fc1: LinearConfig::new(self.dim, self.dim).init(device),
            fc2: LinearConfig::new(self.dim, self.outputs.unwrap_or(self.dim)).init(device),
        }
    }
}

/// The SS module: `Linear(d→d) → ReLU → Linear(d→d)`, no normalisation (or `→ classes` for a
/// classification SS task).
///
/// # Shapes
/// - input `[batch, d]`, output `[batch, d]` (or `[batch, classes]`)
#[derive(Module, Debug)]
pub struct SelfSupervisionHead<B: Backend> {
    /// First linear layer (`proj_head.0`).
    pub fc1: Linear<B>,
    /// Second linear layer (`proj_head.2`).
    pub fc2: Linear<B>,
}

impl<B: Backend> SelfSupervisionHead<B> {
    /// Applies the head.
    pub fn forward(&self, embedding: Tensor<B, 2>) -> Tensor<B, 2> {
        self.fc2.forward(relu(self.fc1.forward(embedding)))
    }

    /// How the PyTorch `proj_head` `Sequential` names the head's layers: `0.weight` is
    /// `fc1.weight`, `2.bias` `fc2.bias`.
    pub const KEY_RULES: KeyRules =
        KeyRules::one(&[("^0", "fc1"), ("^2", "fc2"), ("^{a}", NOT_A_KEY)]);

    /// Maps a key of the PyTorch `proj_head` `Sequential` onto this module.
    pub fn burn_path(torch_key: &str) -> Option<String> {
        Self::KEY_RULES.burn_path(torch_key)
    }

    /// The inverse of [`SelfSupervisionHead::burn_path`].
    pub fn torch_key(burn_path: &str) -> String {
        Self::KEY_RULES.torch_keys(burn_path).swap_remove(0)
    }
}

/// A backbone and its SS head, the `wrapper` of the SSKD code (state-dict prefixes `backbone.`
/// and `proj_head.`).
#[derive(Module, Debug)]
pub struct BackboneWithHead<B: Backend> {
    /// The classification backbone.
    pub backbone: Model<B>,
    /// The self-supervision head on the backbone's embedding.
    pub proj_head: SelfSupervisionHead<B>,
}

impl<B: Backend> BackboneWithHead<B> {
    /// Puts a freshly initialised head of width `backbone.embedding_dim()` on `backbone`.
    pub fn new(backbone: Model<B>, device: &B::Device) -> Self {
        let proj_head = SelfSupervisionHeadConfig::new(backbone.embedding_dim()).init(device);
        Self {
            backbone,
            proj_head,
        }
    }

    /// Runs backbone and head. With `backbone_grad = false` the embedding is detached before the
    /// head, so no gradient of the head's output reaches the backbone (stage 2 of SSKD).
    ///
    /// Returns the backbone output and the head output `[batch, d]`.
    pub fn forward(
        &self,
        input: Tensor<B, 4>,
        backbone_grad: bool,
    ) -> (ModelOutput<B>, Tensor<B, 2>) {
        let output = self.backbone.forward(input);
        let embedding = if backbone_grad {
            output.embedding.clone()
        } else {
            output.embedding.clone().detach()
        };
        let head_output = self.proj_head.forward(embedding);
        (output, head_output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn head_parameter_count_matches_spec() {
        let device = Default::default();
        for (dim, params) in [(64, 8_320), (128, 33_024), (1280, 3_279_360)] {
            let head = SelfSupervisionHeadConfig::new(dim).init::<Flex>(&device);
            assert_eq!(head.num_params(), params, "d = {dim}");
        }
    }

    #[test]
    fn sequential_keys_map() {
        assert_eq!(
            SelfSupervisionHead::<Flex>::burn_path("2.bias").as_deref(),
            Some("fc2.bias")
        );
        assert_eq!(SelfSupervisionHead::<Flex>::burn_path("1.weight"), None);
    }
}
