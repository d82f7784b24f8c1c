//! Contrastive representation distillation (Tian et al., ICLR 2020), as `crd/` of the CRD
//! codebase: NCE against two momentum memory banks.

use burn::module::{Module, RunningState};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{
    backend::Backend, Distribution, ElementConversion, IndexingUpdateOp, Int, Tensor,
};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;

use crate::functional::{div_scalar, embedding_of};
use crate::{DistillInputs, FeatureTerm, LossError, MethodContext, Needs, TermConfig};

/// Configuration of [`Crd`] (the CRD paper's CIFAR-100 defaults); the widths of the two
/// embeddings and the number of training samples come from the run ([`MethodContext`]).
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct CrdConfig {
    /// Width of the contrastive embedding.
    #[config(default = 128)]
    pub feat_dim: usize,
    /// Negatives per anchor K.
    #[config(default = 16384)]
    pub nce_k: usize,
    /// Temperature T.
    #[config(default = 0.07)]
    pub nce_t: f64,
    /// Memory momentum m.
    #[config(default = 0.5)]
    pub nce_m: f64,
}

impl CrdConfig {
    /// Builds the embeddings from `student_dim` and `teacher_dim` wide embeddings and the
    /// memory banks of `n_data` rows (uniform in `±1/sqrt(feat_dim/3)`).
    pub fn init_sized<B: Backend>(
        &self,
        [student_dim, teacher_dim]: [usize; 2],
        n_data: usize,
        device: &B::Device,
    ) -> Crd<B> {
        let bound = 1.0 / (self.feat_dim as f64 / 3.0).sqrt();
        let memory = || {
            RunningState::new(Tensor::random(
                [n_data, self.feat_dim],
                Distribution::Uniform(-bound, bound),
                device,
            ))
        };
        Crd {
            embed_s: LinearConfig::new(student_dim, self.feat_dim).init(device),
            embed_t: LinearConfig::new(teacher_dim, self.feat_dim).init(device),
            memory_student: memory(),
            memory_teacher: memory(),
            normalizers: RunningState::new(Tensor::from_floats([-1.0, -1.0], device)),
            temperature: self.nce_t,
            momentum: self.nce_m,
        }
    }
}

impl TermConfig for CrdConfig {
    type Term<B: Backend> = Crd<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Crd<B>, LossError> {
        let widths = [context.student.embedding, context.teacher.embedding];
        Ok(self.init_sized(widths, context.n_data, device))
    }
}

/// CRD. With `v_s = ℓ2(W_s f_s)`, `v_t = ℓ2(W_t f_t)` (no eps), memories `M_s` (written with
/// student embeddings) and `M_t`, and contrast indices `idx` (column 0 the positive):
/// - scores `o_t[i,k] = exp(⟨M_s[idx_ik], v_t_i⟩/T)`, `o_s[i,k] = exp(⟨M_t[idx_ik], v_s_i⟩/T)`;
/// - on the first batch only, `Z = mean(o)·N` per side, kept constant afterwards; `o ← o / Z`;
/// - per side `−(1/B) Σ_i [log(o_i0 / (o_i0 + K/N + ε)) + Σ_{k≥1} log((K/N) / (o_ik + K/N + ε))]`,
///   ε = 1e-7, and the term is the sum of both sides;
/// - afterwards, without gradient, `M_s[y_i] ← ℓ2(m·M_s[y_i] + (1 − m)·v_s_i)` and likewise
///   `M_t` with `v_t` (`y` the sample indices; a batch never repeats one).
///
/// CRD weight β = 0.8.
#[derive(Module, Debug)]
pub struct Crd<B: Backend> {
    /// Student embedding (`embed_s.linear`).
    pub embed_s: Linear<B>,
    /// Teacher embedding (`embed_t.linear`), trained too.
    pub embed_t: Linear<B>,
    /// `M_s` (`memory_v1`). `[N, feat_dim]`.
    pub memory_student: RunningState<Tensor<B, 2>>,
    /// `M_t` (`memory_v2`). `[N, feat_dim]`.
    pub memory_teacher: RunningState<Tensor<B, 2>>,
    /// `[Z_s, Z_t]`, negative until the first batch sets them.
    pub normalizers: RunningState<Tensor<B, 1>>,
    /// T.
    pub temperature: f64,
    /// m.
    pub momentum: f64,
}

const EPS: f64 = 1e-7;

/// `x / ‖x‖` per row, without eps (as the CRD `Normalize` layer).
fn unit_rows<B: Backend>(rows: Tensor<B, 2>) -> Tensor<B, 2> {
    rows.clone() / rows.powf_scalar(2.0).sum_dim(1).sqrt()
}

/// NCE loss of scores `[b, K + 1]` (column 0 positive) with noise probability `K/N`.
fn nce_loss<B: Backend>(scores: Tensor<B, 2>, n_data: usize) -> Tensor<B, 1> {
    let [batch, columns] = scores.dims();
    let noise = (columns - 1) as f64 / n_data as f64;
    let positive = scores.clone().slice([0..batch, 0..1]);
    let negative = scores.slice([0..batch, 1..columns]);
    let log_positive = (positive.clone() / positive.add_scalar(noise + EPS))
        .log()
        .sum();
    let log_negative = negative
        .add_scalar(noise + EPS)
        .recip()
        .mul_scalar(noise)
        .log()
        .sum();
    div_scalar(log_positive + log_negative, batch as f64).neg()
}

impl<B: Backend> Crd<B> {
    /// `exp(⟨memory[idx], anchor⟩ / T)`. `[b, K + 1]`.
    fn scores(
        &self,
        memory: &Tensor<B, 2>,
        anchor: Tensor<B, 2>,
        contrast: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        let [batch, columns] = contrast.dims();
        let dim = anchor.dims()[1];
        let rows = memory
            .clone()
            .select(0, contrast.reshape([batch * columns]))
            .reshape([batch, columns, dim]);
        let similarities = rows
            .matmul(anchor.reshape([batch, dim, 1]))
            .reshape([batch, columns]);
        div_scalar(similarities, self.temperature).exp()
    }

    /// `ℓ2(m·M[y] + (1 − m)·v)` written into rows `y` of `memory`.
    fn updated_memory(
        &self,
        memory: Tensor<B, 2>,
        embedding: Tensor<B, 2>,
        indices: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let old_rows = memory.clone().select(0, indices.clone());
        let new_rows = unit_rows(
            old_rows.clone().mul_scalar(self.momentum) + embedding.mul_scalar(1.0 - self.momentum),
        );
        memory.select_assign(0, indices, new_rows - old_rows, IndexingUpdateOp::Add)
    }
}

impl<B: Backend> FeatureTerm<B> for Crd<B> {
    fn name(&self) -> &'static str {
        "crd"
    }

    fn needs(&self) -> Needs {
        Needs {
            embedding: true,
            sample_indices: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let (Some(indices), Some(contrast)) = (&inputs.sample_indices, &inputs.contrast_indices)
        else {
            return Err(LossError::BadInput {
                method: "crd",
                message: "needs sample indices and contrast indices".into(),
            });
        };
        let student = unit_rows(self.embed_s.forward(embedding_of(
            "crd",
            &inputs.student,
            "student",
        )?));
        let teacher = unit_rows(self.embed_t.forward(embedding_of(
            "crd",
            &inputs.teacher,
            "teacher",
        )?));
        let memory_student = self.memory_student.value_sync();
        let memory_teacher = self.memory_teacher.value_sync();
        let n_data = memory_student.dims()[0];
        let student_scores = self.scores(&memory_teacher, student.clone(), contrast.clone());
        let teacher_scores = self.scores(&memory_student, teacher.clone(), contrast.clone());
        let mut normalizers = self.normalizers.value_sync();
        if normalizers
            .clone()
            .narrow(0, 0, 1)
            .into_scalar()
            .elem::<f64>()
            < 0.0
        {
            let first = Tensor::cat(
                vec![student_scores.clone().mean(), teacher_scores.clone().mean()],
                0,
            );
            normalizers = first.mul_scalar(n_data as f64).detach();
            self.normalizers.update(normalizers.clone());
        }
        let student_scores = student_scores / normalizers.clone().narrow(0, 0, 1).reshape([1, 1]);
        let teacher_scores = teacher_scores / normalizers.narrow(0, 1, 1).reshape([1, 1]);
        let loss = nce_loss(student_scores, n_data) + nce_loss(teacher_scores, n_data);
        self.memory_student.update(self.updated_memory(
            memory_student,
            student.detach(),
            indices.clone(),
        ));
        self.memory_teacher.update(self.updated_memory(
            memory_teacher,
            teacher.detach(),
            indices.clone(),
        ));
        Ok(loss)
    }
}

/// Draws CRD's contrast indices: per sample, its own index then `k` indices of samples of other
/// classes, without replacement, from a seeded generator (the same seed gives the same draws).
#[derive(Debug)]
pub struct CrdSampler {
    labels: Vec<usize>,
    by_class: Vec<Vec<usize>>,
    k: usize,
    rng: StdRng,
}

impl CrdSampler {
    /// A sampler over a dataset with these labels.
    pub fn new(labels: Vec<usize>, k: usize, seed: u64) -> Result<Self, LossError> {
        let classes = labels.iter().max().map_or(0, |&c| c + 1);
        let mut by_class = vec![Vec::new(); classes];
        for (index, &label) in labels.iter().enumerate() {
            by_class[label].push(index);
        }
        let smallest_pool = by_class
            .iter()
            .map(|members| labels.len() - members.len())
            .min()
            .unwrap_or(0);
        if k > smallest_pool {
            return Err(LossError::BadInput {
                method: "crd",
                message: format!("K = {k} negatives, but some class has only {smallest_pool} samples of other classes"),
            });
        }
        Ok(Self {
            labels,
            by_class,
            k,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// `[own index, k negatives]` for each sample index.
    pub fn sample(&mut self, indices: &[usize]) -> Vec<Vec<usize>> {
        indices
            .iter()
            .map(|&index| {
                let own_class = &self.by_class[self.labels[index]];
                let others = self.labels.len() - own_class.len();
                let mut row = Vec::with_capacity(self.k + 1);
                row.push(index);
                // Position p among the other-class samples: skip the own class's sorted members.
                for position in sample(&mut self.rng, others, self.k) {
                    let mut candidate = position;
                    for &member in own_class {
                        if member <= candidate {
                            candidate += 1;
                        } else {
                            break;
                        }
                    }
                    row.push(candidate);
                }
                row
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negatives_come_from_other_classes_without_repeats() {
        let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let mut sampler = CrdSampler::new(labels.clone(), 40, 7).unwrap();
        for row in sampler.sample(&[0, 5, 59]) {
            assert_eq!(row.len(), 41);
            let anchor_class = labels[row[0]];
            let mut negatives = row[1..].to_vec();
            assert!(negatives.iter().all(|&n| labels[n] != anchor_class));
            negatives.sort_unstable();
            negatives.dedup();
            assert_eq!(negatives.len(), 40);
        }
        let again = CrdSampler::new(labels.clone(), 40, 7)
            .unwrap()
            .sample(&[0, 5, 59]);
        assert_eq!(
            again,
            CrdSampler::new(labels, 40, 7).unwrap().sample(&[0, 5, 59])
        );
    }

    #[test]
    fn too_many_negatives_is_an_error() {
        assert!(CrdSampler::new(vec![0, 0, 1], 2, 0).is_err());
    }
}
