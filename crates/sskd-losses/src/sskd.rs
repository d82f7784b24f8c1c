//! SSKD: knowledge distillation meets self-supervision (Xu, Liu, Li, Loy; ECCV 2020), as the
//! released code computes it (`student.py`, HEAD 661b972).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::functional::{
    cosine_similarity_matrix, cross_entropy, ensure_finite, ensure_labels, kl_batchmean,
    select_by_rank, split_rotations, take_rows, target_rank, to_host_ints,
};
use crate::{BatchLayout, DistillInputs, Distiller, LossError, LossTerm, LossTerms, Needs};

/// Configuration of [`Sskd`]: the released code's defaults.
///
/// The weights follow `student.py` (`--ce-weight 0.1 --kd-weight 0.9 --tf-weight 2.7
/// --ss-weight 10.0`). The ECCV supplementary prints λ3 = 3.0 on `L_ss` and λ4 = 5.0 on `L_T`
/// instead, and the arXiv version 2.7 / 10.0 with the roles swapped; the README numbers come from
/// the code, so the code's values are the default and [`SskdConfig::supplementary`] is one call
/// away.
#[derive(Config, Debug, PartialEq)]
pub struct SskdConfig {
    /// Weight of `L_ce` (λ1).
    #[config(default = 0.1)]
    pub ce_weight: f64,
    /// Weight of `L_kd` (λ2).
    #[config(default = 0.9)]
    pub kd_weight: f64,
    /// Weight of `L_T`, KD on the transformed rows.
    #[config(default = 2.7)]
    pub tf_weight: f64,
    /// Weight of `L_ss`, KD on the similarity matrix.
    #[config(default = 10.0)]
    pub ss_weight: f64,
    /// Temperature of `L_kd`.
    #[config(default = 4.0)]
    pub kd_temperature: f64,
    /// Temperature of `L_T`.
    #[config(default = 4.0)]
    pub tf_temperature: f64,
    /// Temperature of `L_ss`.
    #[config(default = 0.5)]
    pub ss_temperature: f64,
    /// Share of the teacher-wrong transformed rows kept for `L_T`.
    #[config(default = 1.0)]
    pub ratio_tf: f64,
    /// Share of the teacher-wrong similarity rows kept for `L_ss`.
    #[config(default = 0.75)]
    pub ratio_ss: f64,
    /// What the SS heads output: the contrastive embedding of the paper (default), or the
    /// logits of a classification SS task for the ablation of Table 2 (rotation, jigsaw,
    /// exemplar). Set `ss_temperature` for logits (e.g. 4.0); the paper gives no weights for
    /// the ablation.
    #[config(default = "SsKnowledge::Contrastive")]
    pub ss_knowledge: SsKnowledge,
}

/// The knowledge SSKD transfers through the self-supervision heads.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum SsKnowledge {
    /// The `[3B, B]` cosine-similarity matrix of the heads' embeddings, target `a div 3`.
    Contrastive,
    /// The heads' logits of a classification SS task, on all `4B` rows, target the row's SS
    /// label (`DistillInputs::ss_labels`, or the rotation index `row mod 4` when absent).
    Classification,
}

impl SskdConfig {
    /// The ECCV supplementary's weights: `L_ss` 3.0, `L_T` 5.0 (otherwise the defaults).
    pub fn supplementary() -> Self {
        Self::new().with_ss_weight(3.0).with_tf_weight(5.0)
    }

    /// Validates the configuration and builds the method.
    pub fn init(&self) -> Result<Sskd, LossError> {
        let positive = [
            ("kd_temperature", self.kd_temperature),
            ("tf_temperature", self.tf_temperature),
            ("ss_temperature", self.ss_temperature),
        ];
        for (field, value) in positive {
            LossError::require_positive("sskd", field, value)?;
        }
        for (field, value) in [("ratio_tf", self.ratio_tf), ("ratio_ss", self.ratio_ss)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(LossError::BadConfig {
                    method: "sskd",
                    field,
                    value,
                    reason: "must lie in [0, 1]",
                });
            }
        }
        Ok(Sskd {
            config: self.clone(),
        })
    }
}

/// The SSKD student loss on a [`BatchLayout::Rotations4`] batch of `4B` rows.
///
/// With `nor` the `B` unrotated rows, `aug` the `3B` rotated ones (row `a` from image `a div
/// 3`), `KL_bm` the batch-mean KL(teacher ‖ student) of `functional::kl_batchmean`:
/// - `ce = CE(s_nor, y)`;
/// - `kd = τ_kd² · KL_bm(t_nor/τ_kd, s_nor/τ_kd)`;
/// - `tf = τ_T² · KL_bm(t_aug[I_T]/τ_T, s_aug[I_T]/τ_T)`, labels `y_aug[a] = y[a div 3]`;
/// - `ss = τ_ss² · KL_bm(S_t[I_ss]/τ_ss, S_s[I_ss]/τ_ss)` with `S[a, j] = cos(head_aug_a,
///   head_nor_j)` (`[3B, B]`, norms clamped at 1e-8, nothing masked);
/// - `I_T`, `I_ss`: error-level ranking ([`select_by_rank`](crate::functional::select_by_rank))
///   of the teacher's rows against `y_aug` and `a div 3`, keeping `ratio_tf` / `ratio_ss` of the
///   wrong rows.
///
/// Terms are reported unweighted (each already × τ²) with their weights; counts `kept_tf` and
/// `kept_ss` say how many rows each selection kept. A selection that keeps no row gives a zero
/// term (PyTorch would give NaN).
#[derive(Module, Debug, Clone)]
pub struct Sskd {
    config: SskdConfig,
}

/// `[0, 1, 2, 3, 0, 1, …]`: the rotation index of each row of a four-rotation batch.
fn rotation_labels<B: Backend>(images: usize, device: &B::Device) -> Tensor<B, 1, Int> {
    let labels: Vec<i64> = (0..4 * images as i64).map(|row| row % 4).collect();
    Tensor::from_data(TensorData::new(labels, [4 * images]), device)
}

/// `[0, 0, 0, 1, 1, 1, …]`: the source image of each transformed row.
fn source_images<B: Backend>(images: usize, device: &B::Device) -> Tensor<B, 1, Int> {
    let sources: Vec<i64> = (0..3 * images as i64).map(|row| row / 3).collect();
    Tensor::from_data(TensorData::new(sources, [3 * images]), device)
}

impl Sskd {
    /// The configuration.
    pub fn config(&self) -> &SskdConfig {
        &self.config
    }

    fn check_inputs<B: Backend>(
        &self,
        inputs: &DistillInputs<B>,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 2>), LossError> {
        let bad = |message: String| LossError::BadInput {
            method: "sskd",
            message,
        };
        if inputs.layout != BatchLayout::Rotations4 {
            return Err(bad(
                "needs the four-rotation batch layout (row 4i + k = image i rotated k·90°)".into(),
            ));
        }
        let (student_head, teacher_head) = match (&inputs.student.head, &inputs.teacher.head) {
            (Some(student), Some(teacher)) => (student.clone(), teacher.clone()),
            _ => {
                return Err(bad(
                    "needs the SS-head outputs of student and teacher".into()
                ))
            }
        };
        let rows = inputs.student.logits.dims()[0];
        let images = inputs.labels.dims()[0];
        let shapes_agree = rows == 4 * images
            && inputs.teacher.logits.dims() == inputs.student.logits.dims()
            && student_head.dims()[0] == rows
            && teacher_head.dims()[0] == rows;
        if !shapes_agree || images == 0 {
            return Err(bad(format!(
                "expected 4B rows for B = {images} labels: student logits {:?}, teacher logits {:?}, student head {:?}, teacher head {:?}",
                inputs.student.logits.dims(),
                inputs.teacher.logits.dims(),
                student_head.dims(),
                teacher_head.dims()
            )));
        }
        ensure_finite("sskd", "student logits", &inputs.student.logits)?;
        ensure_finite("sskd", "teacher logits", &inputs.teacher.logits)?;
        ensure_finite("sskd", "student head", &student_head)?;
        ensure_finite("sskd", "teacher head", &teacher_head)?;
        ensure_labels("sskd", &inputs.labels, inputs.student.logits.dims()[1])?;
        Ok((student_head, teacher_head))
    }

    /// `τ² · KL_bm` over the rows a ranking keeps; returns the term and the kept count.
    fn selected_kl<B: Backend>(
        teacher: Tensor<B, 2>,
        student: Tensor<B, 2>,
        targets: Tensor<B, 1, Int>,
        ratio: f64,
        temperature: f64,
    ) -> (Tensor<B, 1>, usize) {
        let ranks = to_host_ints(target_rank(teacher.clone(), targets));
        let kept = select_by_rank(&ranks, ratio);
        let term = kl_batchmean(
            take_rows(teacher, &kept),
            take_rows(student, &kept),
            temperature,
        )
        .mul_scalar(temperature.powi(2));
        (term, kept.len())
    }
}

impl<B: Backend> Distiller<B> for Sskd {
    fn name(&self) -> &'static str {
        "sskd"
    }

    fn needs(&self) -> Needs {
        Needs {
            head: true,
            rotations: true,
            ..Needs::default()
        }
    }

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let (student_head, teacher_head) = self.check_inputs(inputs)?;
        let config = &self.config;
        let images = inputs.labels.dims()[0];
        let device = inputs.student.logits.device();
        let (student_normal, student_rotated) = split_rotations(inputs.student.logits.clone());
        let (teacher_normal, teacher_rotated) = split_rotations(inputs.teacher.logits.clone());

        let ce = cross_entropy(student_normal.clone(), inputs.labels.clone());
        let kd = kl_batchmean(teacher_normal, student_normal, config.kd_temperature)
            .mul_scalar(config.kd_temperature.powi(2));

        let rotated_labels = inputs
            .labels
            .clone()
            .reshape([images, 1])
            .repeat_dim(1, 3)
            .reshape([3 * images]);
        let (tf, kept_tf) = Self::selected_kl(
            teacher_rotated,
            student_rotated,
            rotated_labels,
            config.ratio_tf,
            config.tf_temperature,
        );

        let (ss, kept_ss) = match config.ss_knowledge {
            SsKnowledge::Contrastive => {
                let (student_head_normal, student_head_rotated) = split_rotations(student_head);
                let (teacher_head_normal, teacher_head_rotated) = split_rotations(teacher_head);
                let student_similarity =
                    cosine_similarity_matrix(student_head_rotated, student_head_normal); // [3B, B]
                let teacher_similarity =
                    cosine_similarity_matrix(teacher_head_rotated, teacher_head_normal); // [3B, B]
                Self::selected_kl(
                    teacher_similarity,
                    student_similarity,
                    source_images::<B>(images, &device),
                    config.ratio_ss,
                    config.ss_temperature,
                )
            }
            SsKnowledge::Classification => {
                let ss_labels = match &inputs.ss_labels {
                    Some(labels) => labels.clone(),
                    None => rotation_labels::<B>(images, &device),
                };
                Self::selected_kl(
                    teacher_head,
                    student_head,
                    ss_labels,
                    config.ratio_ss,
                    config.ss_temperature,
                )
            }
        };

        Ok(LossTerms {
            terms: vec![
                LossTerm {
                    name: "ce",
                    value: ce,
                    weight: config.ce_weight,
                },
                LossTerm {
                    name: "kd",
                    value: kd,
                    weight: config.kd_weight,
                },
                LossTerm {
                    name: "tf",
                    value: tf,
                    weight: config.tf_weight,
                },
                LossTerm {
                    name: "ss",
                    value: ss,
                    weight: config.ss_weight,
                },
            ],
            counts: vec![("kept_tf", kept_tf), ("kept_ss", kept_ss)],
        })
    }
}

/// The stage-2 loss that trains the teacher's SS head: cross-entropy over the rows of the
/// similarity matrix `S[a, j] = cos(head_aug_a, head_nor_j)` at temperature 1, target `a div 3`,
/// averaged over the `3B` rows. Returns the loss and how many rows' arg-max is their source
/// image (the head accuracy the SSKD script logs).
///
/// # Shapes
/// - `head_outputs`: `[4B, d]` in the four-rotation layout; loss `[1]`
pub fn ss_head_loss<B: Backend>(
    head_outputs: Tensor<B, 2>,
) -> Result<(Tensor<B, 1>, usize), LossError> {
    let [rows, _] = head_outputs.dims();
    if rows == 0 || rows % 4 != 0 {
        return Err(LossError::BadInput {
            method: "ss_head",
            message: format!("expected 4B rows in the four-rotation layout, got {rows}"),
        });
    }
    ensure_finite("ss_head", "head outputs", &head_outputs)?;
    let images = rows / 4;
    let (normal, rotated) = split_rotations(head_outputs);
    let similarity = cosine_similarity_matrix(rotated, normal); // [3B, B]
    let sources = source_images::<B>(images, &similarity.device());
    let correct = to_host_ints(target_rank(similarity.clone(), sources.clone()))
        .iter()
        .filter(|&&r| r == 0)
        .count();
    Ok((cross_entropy(similarity, sources), correct))
}
