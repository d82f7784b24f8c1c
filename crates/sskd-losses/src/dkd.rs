//! Decoupled knowledge distillation (Zhao et al., CVPR 2022), as mdistiller computes it.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, Tensor};

use crate::functional::{cross_entropy, div_scalar, kl_batchmean};
use crate::kd::{check_logit_pair, image_logits};
use crate::{DistillInputs, Distiller, LossError, LossTerm, LossTerms, Needs};

/// Configuration of [`Dkd`] (mdistiller's CIFAR-100 defaults).
#[derive(Config, Debug, PartialEq)]
pub struct DkdConfig {
    /// Temperature `T`.
    #[config(default = 4.0)]
    pub temperature: f64,
    /// Weight α of the target-class term.
    #[config(default = 1.0)]
    pub alpha: f64,
    /// Weight β of the non-target-class term.
    #[config(default = 8.0)]
    pub beta: f64,
    /// Weight of the cross-entropy term.
    #[config(default = 1.0)]
    pub ce_weight: f64,
    /// Epochs over which the DKD weights ramp up linearly.
    #[config(default = 20)]
    pub warmup_epochs: usize,
}

impl DkdConfig {
    /// Validates the configuration and builds the method.
    pub fn init(&self) -> Result<Dkd, LossError> {
        LossError::require_positive("dkd", "temperature", self.temperature)?;
        Ok(Dkd {
            config: self.clone(),
        })
    }
}

/// DKD. With `z/T` the scaled logits and `g` the label:
/// - `tckd = T² · (1/B) Σ_i KL([p_g, 1 − p_g]_t ‖ [p_g, 1 − p_g]_s)`, the binary target vs
///   non-target split of `softmax(z/T)`, computed in log space (`log(1 − p_g)` as a
///   log-sum-exp over the non-target classes);
/// - `nckd = T² · (1/B) Σ_i KL(softmax(z_t/T − 1000·1_g) ‖ softmax(z_s/T − 1000·1_g))`, the
///   distribution over the non-target classes;
/// - weights `α·w`, `β·w` with the warm-up factor `w = min((epoch + 1) / warmup, 1)` (`epoch`
///   0-based, mdistiller counts from 1).
#[derive(Module, Debug, Clone)]
pub struct Dkd {
    config: DkdConfig,
}

/// `log [p_g, 1 − p_g]` of `softmax(scaled)` for target mask `target_mask` (1 at `g`).
///
/// # Shapes
/// - `scaled`, `target_mask`: `[rows, classes]`; output `[rows, 2]`
fn binary_log_probs<B: Backend>(scaled: Tensor<B, 2>, target_mask: Tensor<B, 2>) -> Tensor<B, 2> {
    let log_probs = log_softmax(scaled.clone(), 1);
    let log_target = (log_probs * target_mask.clone()).sum_dim(1);
    let masked = scaled.clone() - target_mask.mul_scalar(1000.0);
    let log_other = log_sum_exp(masked) - log_sum_exp(scaled);
    Tensor::cat(vec![log_target, log_other], 1)
}

/// `log Σ_c exp(x_c)` per row. `[rows, classes]` → `[rows, 1]`.
fn log_sum_exp<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let max = logits.clone().max_dim(1);
    (logits - max.clone()).exp().sum_dim(1).log() + max
}

impl Dkd {
    /// The warm-up factor at 0-based `epoch`.
    pub fn warmup_factor(&self, epoch: usize) -> f64 {
        if self.config.warmup_epochs == 0 {
            return 1.0;
        }
        ((epoch + 1) as f64 / self.config.warmup_epochs as f64).min(1.0)
    }

    /// The unweighted `(tckd, nckd)` terms.
    pub fn terms<B: Backend>(
        &self,
        teacher_logits: Tensor<B, 2>,
        student_logits: Tensor<B, 2>,
        target_mask: Tensor<B, 2>,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let temperature = self.config.temperature;
        let [rows, _] = student_logits.dims();
        let teacher_scaled = div_scalar(teacher_logits, temperature);
        let student_scaled = div_scalar(student_logits, temperature);
        let teacher_binary = binary_log_probs(teacher_scaled.clone(), target_mask.clone());
        let student_binary = binary_log_probs(student_scaled.clone(), target_mask.clone());
        let tckd = div_scalar(
            (teacher_binary.clone().exp() * (teacher_binary - student_binary)).sum(),
            rows.max(1) as f64,
        );
        let suppress = target_mask.mul_scalar(1000.0);
        let nckd = kl_batchmean(
            teacher_scaled - suppress.clone(),
            student_scaled - suppress,
            1.0,
        );
        let scale = temperature.powi(2);
        (tckd.mul_scalar(scale), nckd.mul_scalar(scale))
    }
}

impl<B: Backend> Distiller<B> for Dkd {
    fn name(&self) -> &'static str {
        "dkd"
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let student = image_logits(&inputs.student.logits, inputs.layout);
        let teacher = image_logits(&inputs.teacher.logits, inputs.layout);
        let [rows, classes] = student.dims();
        check_logit_pair("dkd", &student, &teacher, &inputs.labels)?;
        let target_mask = inputs
            .labels
            .clone()
            .one_hot::<2>(classes)
            .float()
            .cast(student.dtype())
            .reshape([rows, classes]);
        let (tckd, nckd) = self.terms(teacher, student.clone(), target_mask);
        let warmup = self.warmup_factor(inputs.epoch);
        Ok(LossTerms {
            terms: vec![
                LossTerm {
                    name: "ce",
                    value: cross_entropy(student, inputs.labels.clone()),
                    weight: self.config.ce_weight,
                },
                LossTerm {
                    name: "tckd",
                    value: tckd,
                    weight: self.config.alpha * warmup,
                },
                LossTerm {
                    name: "nckd",
                    value: nckd,
                    weight: self.config.beta * warmup,
                },
            ],
            counts: Vec::new(),
        })
    }
}
