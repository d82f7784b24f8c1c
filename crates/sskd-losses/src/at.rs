//! Attention transfer (Zagoruyko & Komodakis, ICLR 2017), as `distiller_zoo/AT.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{attention_map, match_spatial, stage_pairs, sum_layers};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// AT with `p = 2` on the stage maps `feat[1:-1]`:
/// `Σ_layers mean_{b,hw} (a(f_s) − a(f_t))²`, `a(f) = normalize(mean_C(f²))` flattened;
/// the larger map is first average-pooled to the smaller size; layer pairs are zipped (the
/// shorter list wins). CRD weight β = 1000.
#[derive(Module, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// The exponent `p`.
    pub p: f64,
}

impl Default for Attention {
    fn default() -> Self {
        Self { p: 2.0 }
    }
}

impl<B: Backend> FeatureTerm<B> for Attention {
    fn name(&self) -> &'static str {
        "at"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        Ok(sum_layers(stage_pairs("at", inputs)?.map(|(s, t)| {
            let (s, t) = match_spatial(s, t);
            (attention_map(s, self.p) - attention_map(t, self.p))
                .powf_scalar(2.0)
                .mean()
        })))
    }
}
