//! Similarity-preserving KD (Tung & Mori, ICCV 2019), as `distiller_zoo/SP.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{div_scalar, flatten_rows, gram_rows, last_map, normalize_rows};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// SP on the last feature map `feat[-2]`: with `F` the flattened map `[B, C·H·W]` and
/// `G = normalize_rows(F Fᵀ)`, the term is `‖G_t − G_s‖²_F / B²`. CRD weight β = 3000.
#[derive(Module, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Similarity;

/// The row-normalised Gram matrix of a batch. `[b, …]` → `[b, b]`.
fn similarity_matrix<B: Backend>(features: Tensor<B, 4>) -> Tensor<B, 2> {
    let flat = flatten_rows(features);
    normalize_rows(gram_rows(flat), 1e-12)
}

impl<B: Backend> FeatureTerm<B> for Similarity {
    fn name(&self) -> &'static str {
        "sp"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = last_map("sp", &inputs.student, "student")?;
        let teacher = last_map("sp", &inputs.teacher, "teacher")?;
        let batch = student.dims()[0] as f64;
        let difference = similarity_matrix(teacher) - similarity_matrix(student);
        Ok(div_scalar(difference.powf_scalar(2.0).sum(), batch * batch))
    }
}
