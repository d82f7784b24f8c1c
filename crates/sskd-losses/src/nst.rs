//! Neuron selectivity transfer (Huang & Wang, 2017), as `distiller_zoo/NST.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{clamped_norm, gram, match_spatial, stage_pairs, sum_layers};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// NST on the stage maps `feat[1:-1]`: each map is reshaped to `[B, C, HW]` and every channel's
/// spatial vector L2-normalised; with the polynomial kernel `k(a, b) = (a·b)²` between all channel
/// pairs, the per-layer term is `mean K_tt + mean K_ss − 2 · mean K_st`, summed over zipped
/// layers (larger maps pooled to the smaller size). CRD weight β = 50.
#[derive(Module, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nst;

/// Channel vectors normalised over space. `[b, c, h, w]` → `[b, c, h·w]`.
fn channel_vectors<B: Backend>(features: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, channels, height, width] = features.dims();
    let flat = features.reshape([batch, channels, height * width]);
    let norms = clamped_norm(flat.clone(), 2, 1e-12);
    flat / norms
}

/// `mean_{b,i,j} (a_i · a_j)²`: [`mean_polynomial_kernel`] of `a` with itself.
fn mean_squared_gram<B: Backend>(a: Tensor<B, 3>) -> Tensor<B, 1> {
    gram(a).powf_scalar(2.0).mean()
}

/// `mean_{b,i,j} (a_i · b_j)²`.
fn mean_polynomial_kernel<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 1> {
    a.matmul(b.swap_dims(1, 2)).powf_scalar(2.0).mean()
}

impl<B: Backend> FeatureTerm<B> for Nst {
    fn name(&self) -> &'static str {
        "nst"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        Ok(sum_layers(stage_pairs("nst", inputs)?.map(|(s, t)| {
            let (s, t) = match_spatial(s, t);
            let (s, t) = (channel_vectors(s), channel_vectors(t));
            mean_squared_gram(t.clone()).detach() + mean_squared_gram(s.clone())
                - mean_polynomial_kernel(s, t).mul_scalar(2.0)
        })))
    }
}
