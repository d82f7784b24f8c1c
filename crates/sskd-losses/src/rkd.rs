//! Relational knowledge distillation (Park et al., CVPR 2019), as `distiller_zoo/RKD.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{div_scalar, embedding_of, gram, gram_rows, smooth_l1, unit_differences};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// RKD on the embeddings `feat[-1]`: `w_d · L_d + w_a · L_a` with
/// - `L_d` = smooth-L1 between the pairwise distance matrices, each divided by the mean of its
///   off-diagonal entries (squared distances clamped at 1e-12, diagonal 0);
/// - `L_a` = smooth-L1 between the `[B, B, B]` angle tensors
///   `cos∠(e_j − e_i, e_k − e_i)` (difference vectors L2-normalised, eps 1e-12).
///
/// Defaults `w_d = 25`, `w_a = 50`; CRD weight β = 1.
#[derive(Module, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rkd {
    /// Weight of the distance term.
    pub distance_weight: f64,
    /// Weight of the angle term.
    pub angle_weight: f64,
}

impl Default for Rkd {
    fn default() -> Self {
        Self {
            distance_weight: 25.0,
            angle_weight: 50.0,
        }
    }
}

/// Pairwise Euclidean distances divided by their off-diagonal mean. `[b, d]` → `[b, b]`.
fn normalised_distances<B: Backend>(embedding: Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, _] = embedding.dims();
    let squares = embedding.clone().powf_scalar(2.0).sum_dim(1); // [b, 1]
    let products = gram_rows(embedding.clone());
    let squared =
        (squares.clone() + squares.transpose() - products.mul_scalar(2.0)).clamp_min(1e-12);
    let off_diagonal = Tensor::<B, 2>::eye(batch, &squared.device())
        .cast(squared.dtype())
        .neg()
        .add_scalar(1.0);
    let distances = squared.sqrt() * off_diagonal;
    let pairs = (batch * batch.saturating_sub(1)).max(1) as f64;
    distances.clone() / div_scalar(distances.sum(), pairs).reshape([1, 1])
}

/// `cos∠(e_j − e_i, e_k − e_i)` for all `(i, j, k)`, flattened. `[b, d]` → `[b³]`.
fn angles<B: Backend>(embedding: Tensor<B, 2>) -> Tensor<B, 1> {
    let [batch, _] = embedding.dims();
    gram(unit_differences(embedding, 1e-12)).reshape([batch * batch * batch])
}

impl<B: Backend> FeatureTerm<B> for Rkd {
    fn name(&self) -> &'static str {
        "rkd"
    }

    fn needs(&self) -> Needs {
        Needs {
            embedding: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = embedding_of("rkd", &inputs.student, "student")?;
        let teacher = embedding_of("rkd", &inputs.teacher, "teacher")?.detach();
        let distance = smooth_l1(
            normalised_distances(student.clone()),
            normalised_distances(teacher.clone()),
        );
        let angle = smooth_l1(angles(student), angles(teacher));
        Ok(distance.mul_scalar(self.distance_weight) + angle.mul_scalar(self.angle_weight))
    }
}
