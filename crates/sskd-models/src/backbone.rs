//! [`Backbone`]: what every network family of the zoo offers to the rest of the library.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use crate::key_rules::KeyRules;
use crate::ModelOutput;

/// How RepDistiller calls a network in a training step, beyond `model(x, is_feat=True)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReferenceCall {
    /// `preact=True`: the pre-activation features (what AB distils), computed as the
    /// reference computes them.
    pub preact: bool,
    /// The pre-training stage of `helper/pretrain.py` (AB, FSP): the student in `eval()` mode
    /// but for its `get_feat_modules()`, which are in training mode and the only layers its
    /// optimiser holds.
    pub feature_layers_only: bool,
}

/// A family of networks of the zoo (ResNet, WideResNet, VGG, MobileNetV2, ShuffleNetV1/V2).
/// [`Model`](crate::Model) holds any of them and forwards to this trait; a new family implements
/// it and takes one row of the family table in `model.rs`.
///
/// # Shapes
/// - input `[batch, 3, h, w]`
/// - output: see [`ModelOutput`]
pub trait Backbone<B: Backend>: Module<B> {
    /// The family's name, for messages.
    const FAMILY: &'static str;

    /// Runs the network. Batch norm uses batch statistics on an autodiff backend and running
    /// statistics otherwise.
    fn forward(&self, input: Tensor<B, 4>) -> ModelOutput<B>;

    /// [`Backbone::forward`] as RepDistiller calls the network in a training step (`call`):
    /// the same outputs and the same side effects. The families that differ from the plain
    /// forward override it: a WideResNet computes its pre-activation features with extra
    /// batch-norm calls (with `preact`, in training mode, those layers' running statistics
    /// count the batch twice), and a WideResNet's final `bn1` and the last 1×1 convolution of
    /// MobileNetV2 and ShuffleNetV2 are not among `get_feat_modules()` (with `feature_layers_only`
    /// they run frozen in inference mode).
    fn forward_call(&self, input: Tensor<B, 4>, _call: ReferenceCall) -> ModelOutput<B> {
        self.forward(input)
    }

    /// The classifier on the pooled embedding (weight `[d, classes]`).
    fn classifier(&self) -> &Linear<B>;

    /// Length `d` of the pooled embedding (the input width of the classifier).
    fn embedding_dim(&self) -> usize {
        self.classifier().weight.dims()[0]
    }

    /// Number of classes of the classifier.
    fn num_classes(&self) -> usize {
        self.classifier().weight.dims()[1]
    }

    /// How the family's reference PyTorch state dicts name its parameters (see
    /// [`KeyRules`]).
    const KEY_RULES: KeyRules;

    /// Maps a key of the family's reference PyTorch state dict (after any `module.` /
    /// `backbone.` prefix is removed) onto the network's parameter path, with PyTorch's leaf
    /// names (`weight`, `bias`, `running_mean`, `running_var`), by [`Backbone::KEY_RULES`];
    /// `None` if the key cannot belong to the family.
    fn burn_path(torch_key: &str) -> Option<String> {
        Self::KEY_RULES.burn_path(torch_key)
    }

    /// The inverse of [`Backbone::burn_path`]: every key of the family's reference state dicts
    /// that names the parameter at `burn_path` (a module path with PyTorch leaf names), the
    /// most common spelling first. Used to name a missing parameter as the user's file would.
    fn torch_keys(burn_path: &str) -> Vec<String> {
        Self::KEY_RULES.torch_keys(burn_path)
    }

    /// The smallest side of a square input the family's reference PyTorch model accepts: below
    /// it a fixed pooling window is larger than the last feature map, or a max-pool leaves
    /// nothing. This crate pools globally, which equals the reference's pool at its design
    /// size, so smaller inputs would run here where PyTorch refuses them; they are refused.
    fn min_input_side(&self) -> usize;
}

/// The smallest input side for which `stride2_ceil` stride-2 reductions that round up (3×3
/// convolutions or pools with padding 1) leave a last feature map of at least `window`.
pub fn min_side_for_window(stride2_ceil: u32, window: usize) -> usize {
    let reduction = 1usize << stride2_ceil;
    (window - 1) * reduction + 1
}
