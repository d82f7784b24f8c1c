//! Contrastive representation distillation (Tian et al., ICLR 2020), as `crd/` of the CRD
//! codebase: NCE against two momentum memory banks.

use burn::module::{Module, RunningState};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{
    backend::Backend, Distribution, ElementConversion, IndexingUpdateOp, Int, Tensor,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sskd_augment::rng::sample_rng;

use crate::functional::{div_scalar, embedding_of, to_host_ints};
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
    /// How the positive is drawn (`exact`: the anchor itself; `relax`: a sample of its class).
    #[config(default = "CrdMode::Exact")]
    pub mode: CrdMode,
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
            sampler: None,
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
        let mut crd = self.init_sized(widths, context.n_data, device);
        if let Some(labels) = &context.labels {
            if labels.len() != context.n_data {
                return Err(LossError::BadInput {
                    method: "crd",
                    message: format!(
                        "{} training labels for a memory bank of {} samples",
                        labels.len(),
                        context.n_data
                    ),
                });
            }
            let sampler = CrdSampler::new(labels.clone(), self.nce_k, self.mode, context.seed)?;
            crd.sampler = Some(sampler);
        }
        Ok(crd)
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
    /// Draws the contrast indices of a batch from its sample indices, when the method was built
    /// with the training labels ([`MethodContext::labels`]); without it the step must pass
    /// [`DistillInputs::contrast_indices`].
    #[module(skip)]
    pub sampler: Option<CrdSampler>,
    /// T.
    pub temperature: f64,
    /// m.
    pub momentum: f64,
}

const EPS: f64 = 1e-7;

/// An error when an index of `indices` (`what`: sample or contrast) lies outside the memory
/// bank's `n_data` rows (a gather there would panic in the backend).
fn check_within<B: Backend>(
    what: &str,
    indices: &Tensor<B, 1, Int>,
    n_data: usize,
) -> Result<(), LossError> {
    let (low, high) = (indices.clone().min(), indices.clone().max());
    let (low, high): (i64, i64) = (low.into_scalar().elem(), high.into_scalar().elem());
    if low < 0 || high >= n_data as i64 {
        return Err(LossError::BadInput {
            method: "crd",
            message: format!(
                "{what} indices span {low}..={high}, outside the memory bank's {n_data} rows"
            ),
        });
    }
    Ok(())
}

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

/// A batch's sample indices `[b]` and contrast indices `[b, K + 1]`.
type BatchContrast<B> = (Tensor<B, 1, Int>, Tensor<B, 2, Int>);

impl<B: Backend> Crd<B> {
    /// The batch's sample indices `[b]` and contrast indices `[b, K + 1]`: those the step
    /// passes, else drawn by the sampler for the batch's sample indices and epoch.
    fn contrast_of(&self, inputs: &DistillInputs<B>) -> Result<BatchContrast<B>, LossError> {
        let missing = |what: &str| LossError::BadInput {
            method: "crd",
            message: format!("needs {what}"),
        };
        let indices = inputs
            .sample_indices
            .clone()
            .ok_or_else(|| missing("the batch's sample indices"))?;
        if let Some(contrast) = &inputs.contrast_indices {
            return Ok((indices, contrast.clone()));
        }
        let sampler = self.sampler.as_ref().ok_or_else(|| {
            missing(
                "contrast indices: build it with the training labels (MethodContext::labels) \
                 to draw them, or pass DistillInputs::contrast_indices",
            )
        })?;
        let host: Vec<usize> = to_host_ints(indices.clone())
            .into_iter()
            .map(|index| usize::try_from(index).unwrap_or(usize::MAX))
            .collect();
        let rows = sampler.sample(inputs.epoch, &host)?;
        let columns = rows.first().map_or(0, Vec::len);
        let flat: Vec<i64> = rows.into_iter().flatten().map(|i| i as i64).collect();
        let device = indices.device();
        let contrast = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(flat, [host.len() * columns]),
            &device,
        )
        .reshape([host.len(), columns]);
        Ok((indices, contrast))
    }

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
        let (indices, contrast) = self.contrast_of(inputs)?;
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
        // Constants: a record loaded into a running state on an autodiff backend comes back
        // tracking gradients, and the optimiser would then train the memory.
        let memory_student = self.memory_student.value_sync().detach();
        let memory_teacher = self.memory_teacher.value_sync().detach();
        let n_data = memory_student.dims()[0];
        check_within("sample", &indices.clone().reshape([-1]), n_data)?;
        check_within("contrast", &contrast.clone().reshape([-1]), n_data)?;
        let student_scores = self.scores(&memory_teacher, student.clone(), contrast.clone());
        let teacher_scores = self.scores(&memory_student, teacher.clone(), contrast.clone());
        let mut normalizers = self.normalizers.value_sync().detach();
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
        self.memory_teacher
            .update(self.updated_memory(memory_teacher, teacher.detach(), indices));
        Ok(loss)
    }
}

/// How CRD picks the positive of an anchor (RepDistiller's `--mode`, `CIFAR100InstanceSample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrdMode {
    /// The anchor's own sample.
    #[default]
    Exact,
    /// A sample of the anchor's class drawn at random (possibly the anchor itself).
    Relax,
}

/// Draws CRD's contrast indices as RepDistiller's `CIFAR100InstanceSample` does: per sample, its
/// positive ([`CrdMode`]) then `k` samples of other classes, without replacement unless `k`
/// exceeds the other classes' samples (`np.random.choice(cls_negative[y], k, replace=k > len)`).
/// Each sample's draws come from its own generator, seeded by (seed, epoch, dataset index), so a
/// resumed run draws what the uninterrupted one drew, whatever the batch order or thread count.
///
/// [`CrdSampler::given`] replays the draws of another run instead (a reference step's
/// `contrast_idx`).
#[derive(Debug, Clone)]
pub struct CrdSampler {
    draws: Draws,
}

#[derive(Debug, Clone)]
enum Draws {
    Random(RandomDraws),
    /// The row of each dataset index.
    Given(Arc<BTreeMap<usize, Vec<usize>>>),
}

#[derive(Debug, Clone)]
struct RandomDraws {
    labels: Arc<[usize]>,
    by_class: Arc<[Vec<usize>]>,
    k: usize,
    mode: CrdMode,
    seed: u64,
}

/// Generators of the sampler are seeded apart from the loader's augmentation generators.
const SAMPLER_STREAM: u64 = 0x6372_645f_7361_6d70;

impl CrdSampler {
    /// A sampler over a dataset whose sample `i` has class `labels[i]`; an error when some
    /// class has no sample of another class to draw.
    pub fn new(
        labels: impl Into<Arc<[usize]>>,
        k: usize,
        mode: CrdMode,
        seed: u64,
    ) -> Result<Self, LossError> {
        let labels: Arc<[usize]> = labels.into();
        let classes = labels.iter().max().map_or(0, |&c| c + 1);
        let mut by_class = vec![Vec::new(); classes];
        for (index, &label) in labels.iter().enumerate() {
            by_class[label].push(index);
        }
        if let Some(class) = by_class
            .iter()
            .position(|members| !members.is_empty() && members.len() == labels.len())
        {
            return Err(LossError::BadInput {
                method: "crd",
                message: format!(
                    "every training sample has class {class}: CRD draws its negatives from other classes"
                ),
            });
        }
        let draws = RandomDraws {
            labels,
            by_class: by_class.into(),
            k,
            mode,
            seed,
        };
        Ok(Self {
            draws: Draws::Random(draws),
        })
    }

    /// A sampler that gives each dataset index the row `rows` holds for it, whatever the epoch.
    pub fn given(rows: BTreeMap<usize, Vec<usize>>) -> Self {
        Self {
            draws: Draws::Given(Arc::new(rows)),
        }
    }

    /// `[positive, k negatives]` for each dataset index of a batch of `epoch`; an error names
    /// an index outside the dataset (or without a given row).
    pub fn sample(&self, epoch: usize, indices: &[usize]) -> Result<Vec<Vec<usize>>, LossError> {
        let outside = |index: usize, what: String| LossError::BadInput {
            method: "crd",
            message: format!("sample index {index} {what}"),
        };
        indices
            .iter()
            .map(|&index| match &self.draws {
                Draws::Random(draws) if index < draws.labels.len() => {
                    let seed = draws.seed ^ SAMPLER_STREAM;
                    let mut rng = sample_rng(seed, epoch as u64, index as u64);
                    Ok(draws.row(&mut rng, index))
                }
                Draws::Random(draws) => Err(outside(
                    index,
                    format!(
                        "outside the {} training samples the memory bank holds",
                        draws.labels.len()
                    ),
                )),
                Draws::Given(rows) => rows
                    .get(&index)
                    .cloned()
                    .ok_or_else(|| outside(index, "has no given contrast row".to_string())),
            })
            .collect()
    }
}

impl RandomDraws {
    /// The draws of the sample at `index`.
    fn row(&self, rng: &mut StdRng, index: usize) -> Vec<usize> {
        let own_class = &self.by_class[self.labels[index]];
        let others = self.labels.len() - own_class.len();
        let mut row = Vec::with_capacity(self.k + 1);
        row.push(match self.mode {
            CrdMode::Exact => index,
            CrdMode::Relax => own_class[rng.random_range(0..own_class.len())],
        });
        let positions: Vec<usize> = if self.k > others {
            (0..self.k).map(|_| rng.random_range(0..others)).collect()
        } else {
            sample(rng, others, self.k).into_vec()
        };
        row.extend(
            positions
                .into_iter()
                .map(|position| other_class_sample(own_class, position)),
        );
        row
    }
}

/// The dataset index of the `position`-th sample (0-based, in dataset order) that is not in
/// `own_class` (sorted): `position` plus the members of `own_class` before it.
fn other_class_sample(own_class: &[usize], position: usize) -> usize {
    // `own_class[j] - j` counts the other-class samples before member j; it never decreases.
    let (mut low, mut high) = (0, own_class.len());
    while low < high {
        let middle = (low + high) / 2;
        if own_class[middle] - middle <= position {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    position + low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        (0..60).map(|i| i % 3).collect()
    }

    #[test]
    fn negatives_come_from_other_classes_without_repeats() {
        let labels = labels();
        let sampler = CrdSampler::new(labels.clone(), 40, CrdMode::Exact, 7).unwrap();
        let rows = sampler.sample(3, &[0, 5, 59]).unwrap();
        for (row, anchor) in rows.iter().zip([0, 5, 59]) {
            assert_eq!((row.len(), row[0]), (41, anchor));
            let mut negatives = row[1..].to_vec();
            assert!(negatives.iter().all(|&n| labels[n] != labels[anchor]));
            negatives.sort_unstable();
            negatives.dedup();
            assert_eq!(negatives.len(), 40);
        }
        // Every other-class sample is reachable: K = all of them draws each once.
        let all = CrdSampler::new(labels.clone(), 40, CrdMode::Exact, 1).unwrap();
        let mut negatives = all.sample(0, &[4]).unwrap().remove(0).split_off(1);
        negatives.sort_unstable();
        let others: Vec<usize> = (0..60).filter(|&i| labels[i] != labels[4]).collect();
        assert_eq!(negatives, others);
    }

    #[test]
    fn draws_depend_on_seed_epoch_and_index_only() {
        let sampler = CrdSampler::new(labels(), 10, CrdMode::Exact, 7).unwrap();
        let batch = sampler.sample(2, &[0, 5, 59]).unwrap();
        let alone = sampler.sample(2, &[59]).unwrap();
        assert_eq!(batch[2], alone[0]);
        assert_eq!(batch, sampler.clone().sample(2, &[0, 5, 59]).unwrap());
        assert_ne!(batch, sampler.sample(3, &[0, 5, 59]).unwrap());
    }

    #[test]
    fn more_negatives_than_other_samples_draws_with_replacement() {
        let labels = vec![0, 0, 1, 2];
        let sampler = CrdSampler::new(labels.clone(), 8, CrdMode::Exact, 0).unwrap();
        let row = sampler.sample(0, &[1]).unwrap().remove(0);
        assert_eq!(row.len(), 9);
        assert!(row[1..].iter().all(|&n| labels[n] != 0));
    }

    #[test]
    fn relax_draws_the_positive_from_the_anchor_class() {
        let labels = labels();
        let sampler = CrdSampler::new(labels.clone(), 5, CrdMode::Relax, 0).unwrap();
        let rows = sampler.sample(0, &(0..60).collect::<Vec<_>>()).unwrap();
        assert!(rows
            .iter()
            .enumerate()
            .all(|(i, row)| labels[row[0]] == labels[i]));
        assert!(rows.iter().enumerate().any(|(i, row)| row[0] != i));
    }

    #[test]
    fn indices_outside_the_memory_bank_are_errors() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let ok = Tensor::<B, 1, Int>::from_ints([0, 3], &device);
        assert!(check_within("sample", &ok, 4).is_ok());
        let error = check_within("contrast", &ok, 3).unwrap_err().to_string();
        assert!(
            error.contains("contrast indices span 0..=3") && error.contains("3 rows"),
            "{error}"
        );
        let negative = Tensor::<B, 1, Int>::from_ints([-1, 2], &device);
        assert!(check_within("sample", &negative, 4).is_err());
    }

    #[test]
    fn one_class_or_an_index_outside_the_data_is_an_error() {
        assert!(CrdSampler::new(vec![0, 0, 0], 2, CrdMode::Exact, 0).is_err());
        let sampler = CrdSampler::new(vec![0, 1], 1, CrdMode::Exact, 0).unwrap();
        let error = sampler.sample(0, &[2]).unwrap_err().to_string();
        assert!(error.contains("sample index 2"), "{error}");
    }
}
