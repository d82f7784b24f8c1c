//! Decoupled knowledge distillation (Zhao et al., CVPR 2022), as mdistiller computes it.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::functional::{cross_entropy, div_scalar, kl_of_log_probs};
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

/// One side's log-probabilities that DKD compares, from its scaled logits `z/T`.
struct SplitLogProbs<B: Backend> {
    /// `log [p_g, 1 − p_g]` of `softmax(z/T)`, `[rows, 2]`.
    binary: Tensor<B, 2>,
    /// `log softmax(z/T − 1000·1_g)`, the distribution over the non-target classes,
    /// `[rows, classes]`.
    non_target: Tensor<B, 2>,
}

impl<B: Backend> SplitLogProbs<B> {
    /// Both splits of `softmax(scaled)` for target mask `target_mask` (1 at `g`), sharing the
    /// two log-sum-exps: `log p_g = z_g − lse(z)`, `log(1 − p_g) = lse(z − 1000·1_g) −
    /// lse(z)` and `log softmax(z − 1000·1_g) = z − 1000·1_g − lse(z − 1000·1_g)`.
    ///
    /// # Shapes
    /// - `scaled`, `target_mask`: `[rows, classes]`
    fn new(scaled: Tensor<B, 2>, target_mask: Tensor<B, 2>) -> Self {
        let log_total = log_sum_exp(scaled.clone());
        let suppressed = scaled.clone() - target_mask.clone().mul_scalar(1000.0);
        let log_other = log_sum_exp(suppressed.clone());
        let log_target = (scaled * target_mask).sum_dim(1) - log_total.clone();
        Self {
            binary: Tensor::cat(vec![log_target, log_other.clone() - log_total], 1),
            non_target: suppressed - log_other,
        }
    }
}

/// `log Σ_c exp(x_c)` per row, the row's maximum taken out first (detached: it cancels from
/// the gradient). `[rows, classes]` → `[rows, 1]`.
fn log_sum_exp<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let max = logits.clone().detach().max_dim(1);
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
        let teacher =
            SplitLogProbs::new(div_scalar(teacher_logits, temperature), target_mask.clone());
        let student = SplitLogProbs::new(div_scalar(student_logits, temperature), target_mask);
        let tckd = kl_of_log_probs(teacher.binary, student.binary);
        let nckd = kl_of_log_probs(teacher.non_target, student.non_target);
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
