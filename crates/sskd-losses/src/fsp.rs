//! Flow of solution procedure (Yim et al., CVPR 2017), as `distiller_zoo/FSP.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{div_scalar, match_spatial, mse, sum_layers};
use crate::{DistillInputs, FeatureTerm, LossError, Needs, Pretraining};

/// FSP on all feature maps `feat[:-1]`: for consecutive maps (bottom, top) of one network,
/// pooled to a common size, `G = (1/HW) · top · bottomᵀ` (`[B, C_top, C_bottom]`); the term is
/// `Σ_pairs mean (G_s − G_t)²`. Student and teacher must have the same channel counts at every
/// stage (the CRD code raises otherwise). It is the loss of a pre-training stage of the
/// student's feature layers (`init_epochs`, 30); the main stage then trains with CE (+ KD) only.
#[derive(Module, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fsp {
    /// Epochs of the pre-training stage (RepDistiller's `--init_epochs`; 0 skips it).
    #[serde(default = "thirty")]
    pub init_epochs: usize,
}

fn thirty() -> usize {
    30
}

impl Default for Fsp {
    /// RepDistiller's 30 pre-training epochs.
    fn default() -> Self {
        Self {
            init_epochs: thirty(),
        }
    }
}

/// The FSP matrices of consecutive maps. Each `[b, c_top, c_bottom]`.
fn fsp_matrices<B: Backend>(maps: &[Tensor<B, 4>]) -> Vec<Tensor<B, 3>> {
    maps.windows(2)
        .map(|pair| {
            let (bottom, top) = match_spatial(pair[0].clone(), pair[1].clone());
            let [batch, bottom_channels, height, width] = bottom.dims();
            let top_channels = top.dims()[1];
            let bottom = bottom.reshape([batch, bottom_channels, height * width]);
            let top = top.reshape([batch, top_channels, height * width]);
            div_scalar(top.matmul(bottom.swap_dims(1, 2)), (height * width) as f64)
        })
        .collect()
}

impl<B: Backend> FeatureTerm<B> for Fsp {
    fn name(&self) -> &'static str {
        "fsp"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = &inputs.student.features;
        let teacher = &inputs.teacher.features;
        let channels = |maps: &[Tensor<B, 4>]| maps.iter().map(|m| m.dims()[1]).collect::<Vec<_>>();
        if student.len() < 2 || channels(student) != channels(teacher) {
            return Err(LossError::BadInput {
                method: "fsp",
                message: format!(
                    "needs equal channel counts at every stage: student {:?}, teacher {:?}",
                    channels(student),
                    channels(teacher)
                ),
            });
        }
        let pairs = fsp_matrices(student).into_iter().zip(fsp_matrices(teacher));
        Ok(sum_layers(pairs.map(|(s, t)| mse(s, t))))
    }

    /// The student's feature layers learn the teacher's FSP matrices.
    fn pretraining(&self) -> Option<Pretraining> {
        let needs = FeatureTerm::<B>::needs(self);
        Some(Pretraining::of_feature_layers(self.init_epochs, needs))
    }

    fn pretrain_term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        self.term(inputs)
    }
}
