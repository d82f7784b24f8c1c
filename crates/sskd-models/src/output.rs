//! The output every backbone of the zoo returns.

use burn::tensor::{backend::Backend, Tensor};

/// What a backbone computes for a batch: logits, pooled embedding and intermediate features.
///
/// This is the `(feat, logits)` pair of the reference `forward(x, is_feat=True, preact)` in one
/// value: `features` are `feat[0..K]`, `embedding` is `feat[-1]`.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    /// Class scores before softmax. `[batch, num_classes]`.
    pub logits: Tensor<B, 2>,
    /// The pooled, flattened embedding that feeds the classifier (`feat[-1]`). `[batch, d]`.
    pub embedding: Tensor<B, 2>,
    /// The per-stage feature maps `feat[0..K]` in the reference order (stem first, the last
    /// convolutional map last). Each `[batch, channels, height, width]`.
    pub features: Vec<Tensor<B, 4>>,
    /// The same list with the reference's `preact=True` replacements (pre-ReLU stage outputs),
    /// for the architectures that define them; `None` where the reference ignores `preact`
    /// (MobileNetV2).
    pub preact_features: Option<Vec<Tensor<B, 4>>>,
}
