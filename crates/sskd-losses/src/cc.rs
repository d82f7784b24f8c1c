//! Correlation congruence (Peng et al., ICCV 2019), as `distiller_zoo/CC.py` with the CRD
//! codebase's embeddings.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{backend::Backend, Tensor};

use crate::functional::embedding_of;
use crate::{DistillInputs, FeatureTerm, LossError, MethodContext, Needs, TermConfig};

/// CC on the embeddings `feat[-1]`: `e_s = W_s f_s`, `e_t = W_t f_t` (two trainable linear maps
/// to `feat_dim` = 128, no normalisation), `δ = |e_s − e_t|`, and the term is
/// `mean_i Σ_d δ_{i,d} · δ_{i+1,d}` over consecutive samples. CRD weight β = 0.02.
#[derive(Module, Debug)]
pub struct Correlation<B: Backend> {
    /// Student embedding (`embed_s.linear`).
    pub embed_s: Linear<B>,
    /// Teacher embedding (`embed_t.linear`).
    pub embed_t: Linear<B>,
}

impl<B: Backend> Correlation<B> {
    /// Embeddings from `d_student` and `d_teacher` to `feat_dim`.
    pub fn new(d_student: usize, d_teacher: usize, feat_dim: usize, device: &B::Device) -> Self {
        Self {
            embed_s: LinearConfig::new(d_student, feat_dim).init(device),
            embed_t: LinearConfig::new(d_teacher, feat_dim).init(device),
        }
    }
}

/// Settings of [`Correlation`]: the width its embeddings map to.
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct CorrelationConfig {
    /// Width of the two embeddings.
    #[config(default = 128)]
    pub feat_dim: usize,
}

impl TermConfig for CorrelationConfig {
    type Term<B: Backend> = Correlation<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Correlation<B>, LossError> {
        let (student, teacher) = (context.student.embedding, context.teacher.embedding);
        Ok(Correlation::new(student, teacher, self.feat_dim, device))
    }
}

impl<B: Backend> FeatureTerm<B> for Correlation<B> {
    fn name(&self) -> &'static str {
        "cc"
    }

    fn needs(&self) -> Needs {
        Needs {
            embedding: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = self
            .embed_s
            .forward(embedding_of("cc", &inputs.student, "student")?);
        let teacher = self
            .embed_t
            .forward(embedding_of("cc", &inputs.teacher, "teacher")?);
        let [batch, dim] = student.dims();
        if batch < 2 {
            return Err(LossError::BadInput {
                method: "cc",
                message: "needs a batch of at least two".into(),
            });
        }
        let delta = (student - teacher).abs();
        let earlier = delta.clone().slice([0..batch - 1, 0..dim]);
        let later = delta.slice([1..batch, 0..dim]);
        Ok((earlier * later).sum_dim(1).mean())
    }
}
