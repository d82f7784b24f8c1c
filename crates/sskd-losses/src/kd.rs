//! Knowledge distillation (Hinton et al., 2015) as the CRD and SSKD codebases compute it, with
//! the optional logit standardisation of Sun et al. (CVPR 2024).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::functional::{
    cross_entropy, div_scalar, ensure_finite, ensure_labels, kl_batchmean, split_rotations,
};
use crate::{BatchLayout, DistillInputs, Distiller, LossError, LossTerm, LossTerms, Needs};

/// Configuration of [`Kd`].
#[derive(Config, Debug, PartialEq)]
pub struct KdConfig {
    /// Temperature `T`.
    #[config(default = 4.0)]
    pub temperature: f64,
    /// Weight of the cross-entropy term (γ; 0.1 in the CRD scripts).
    #[config(default = 0.1)]
    pub ce_weight: f64,
    /// Weight of the KD term (α; 0.9 in the CRD scripts).
    #[config(default = 0.9)]
    pub kd_weight: f64,
    /// Z-score both logit rows before the softmax (logit standardisation, CVPR 2024).
    #[config(default = false)]
    pub logit_standardization: bool,
}

impl KdConfig {
    /// Validates the configuration and builds the method.
    pub fn init(&self) -> Result<Kd, LossError> {
        LossError::require_positive("kd", "temperature", self.temperature)?;
        Ok(Kd {
            temperature: self.temperature,
            ce_weight: self.ce_weight,
            kd_weight: self.kd_weight,
            logit_standardization: self.logit_standardization,
        })
    }
}

/// KD: `ce = CE(s, y)` and
/// `kd = T² · (1/B) Σ_i KL(softmax(t_i/T) ‖ softmax(s_i/T))` (KL summed over classes, divided by
/// the batch), where with logit standardisation each logit row is first replaced by
/// `(z − mean(z)) / (std(z) + 1e-7)` (unbiased std, as the LS code's `torch.std`).
///
/// On a [`BatchLayout::Rotations4`] batch it uses the unrotated rows.
#[derive(Module, Debug, Clone)]
pub struct Kd {
    temperature: f64,
    ce_weight: f64,
    kd_weight: f64,
    logit_standardization: bool,
}

/// `(z − mean) / (std + 1e-7)` per row, std with Bessel's correction.
///
/// # Shapes
/// - input and output `[rows, classes]`
pub fn standardize_logits<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let [_, classes] = logits.dims();
    let centred = logits.clone() - logits.mean_dim(1);
    let squares = centred.clone().powf_scalar(2.0).sum_dim(1);
    let variance = div_scalar(squares, (classes.max(2) - 1) as f64);
    centred / variance.sqrt().add_scalar(1e-7)
}

impl Kd {
    /// The unweighted KD term `T² · KL_batchmean` of a pair of logit matrices.
    pub fn kd_term<B: Backend>(
        &self,
        teacher_logits: Tensor<B, 2>,
        student_logits: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
        let (teacher_logits, student_logits) = if self.logit_standardization {
            (
                standardize_logits(teacher_logits),
                standardize_logits(student_logits),
            )
        } else {
            (teacher_logits, student_logits)
        };
        kl_batchmean(teacher_logits, student_logits, self.temperature)
            .mul_scalar(self.temperature.powi(2))
    }
}

/// The logits of the unrotated rows of a batch.
pub(crate) fn image_logits<B: Backend>(logits: &Tensor<B, 2>, layout: BatchLayout) -> Tensor<B, 2> {
    match layout {
        BatchLayout::Plain => logits.clone(),
        BatchLayout::Rotations4 => split_rotations(logits.clone()).0,
    }
}

impl<B: Backend> Distiller<B> for Kd {
    fn name(&self) -> &'static str {
        if self.logit_standardization {
            "kd_ls"
        } else {
            "kd"
        }
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let student = image_logits(&inputs.student.logits, inputs.layout);
        let teacher = image_logits(&inputs.teacher.logits, inputs.layout);
        check_logit_pair("kd", &student, &teacher, &inputs.labels)?;
        Ok(LossTerms {
            terms: vec![
                LossTerm {
                    name: "ce",
                    value: cross_entropy(student.clone(), inputs.labels.clone()),
                    weight: self.ce_weight,
                },
                LossTerm {
                    name: "kd",
                    value: self.kd_term(teacher, student),
                    weight: self.kd_weight,
                },
            ],
            counts: Vec::new(),
        })
    }
}

/// Checks that student and teacher logits are finite, agree in shape and match the labels, and
/// that every label is a class of the logits.
pub(crate) fn check_logit_pair<B: Backend>(
    method: &'static str,
    student: &Tensor<B, 2>,
    teacher: &Tensor<B, 2>,
    labels: &Tensor<B, 1, Int>,
) -> Result<(), LossError> {
    let count = labels.dims()[0];
    if student.dims() != teacher.dims() || student.dims()[0] != count {
        return Err(LossError::BadInput {
            method,
            message: format!(
                "student logits {:?}, teacher logits {:?} and {count} labels do not agree",
                student.dims(),
                teacher.dims()
            ),
        });
    }
    ensure_finite(method, "student logits", student)?;
    ensure_finite(method, "teacher logits", teacher)?;
    ensure_labels(method, labels, student.dims()[1])
}
