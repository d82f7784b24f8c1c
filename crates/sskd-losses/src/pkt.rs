//! Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as `distiller_zoo/PKT.py`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::functional::{clamped_norm, embedding_of, gram_rows};
use crate::{DistillInputs, FeatureTerm, LossError, Needs};

/// PKT on the embeddings `feat[-1]`: rows normalised as `x / (‖x‖ + 1e-7)`, cosine kernels
/// `K = X Xᵀ` mapped to `(K + 1) / 2` and row-normalised into `P_s`, `P_t`; the term is
/// `mean_{ij} P_t · log((P_t + ε) / (P_s + ε))`, ε = 1e-7. CRD weight β = 30000.
#[derive(Module, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pkt;

const EPS: f64 = 1e-7;

fn conditional_probabilities<B: Backend>(embedding: Tensor<B, 2>) -> Tensor<B, 2> {
    // ‖x‖ + ε; the norm is clamped at 1e-15 only so that a zero row gets a finite gradient.
    let norms = clamped_norm(embedding.clone(), 1, 1e-15).add_scalar(EPS);
    let unit = embedding / norms;
    let kernel = gram_rows(unit).add_scalar(1.0).div_scalar(2.0);
    kernel.clone() / kernel.sum_dim(1)
}

impl<B: Backend> FeatureTerm<B> for Pkt {
    fn name(&self) -> &'static str {
        "pkt"
    }

    fn needs(&self) -> Needs {
        Needs {
            embedding: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = conditional_probabilities(embedding_of("pkt", &inputs.student, "student")?);
        let teacher = conditional_probabilities(embedding_of("pkt", &inputs.teacher, "teacher")?);
        let ratio = (teacher.clone().add_scalar(EPS) / student.add_scalar(EPS)).log();
        Ok((teacher * ratio).mean())
    }
}
