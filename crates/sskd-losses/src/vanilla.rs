//! Plain training, the table's row for "no distillation" (mdistiller's `"NONE": Vanilla`):
//! cross-entropy on the student's logits, no teacher.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::functional::{cross_entropy, ensure_finite, ensure_labels};
use crate::kd::image_logits;
use crate::{DistillInputs, Distiller, LossError, LossTerm, LossTerms, Needs};

/// Configuration of [`Vanilla`]: nothing to set.
#[derive(Config, Debug, PartialEq)]
pub struct VanillaConfig {}

impl VanillaConfig {
    /// The method.
    pub fn init(&self) -> Result<Vanilla, LossError> {
        Ok(Vanilla)
    }
}

/// Plain training: `ce = CE(s, y)` on the student's logits (the unrotated rows of a
/// [`BatchLayout::Rotations4`](crate::BatchLayout::Rotations4) batch); the teacher plays no
/// part, and a stage of this method trains the student as stage 1 trains a teacher.
#[derive(Module, Debug, Clone, Default)]
pub struct Vanilla;

impl<B: Backend> Distiller<B> for Vanilla {
    fn name(&self) -> &'static str {
        "vanilla"
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
        let student = image_logits(&inputs.student.logits, inputs.layout);
        ensure_finite("vanilla", "student logits", &student)?;
        ensure_labels("vanilla", &inputs.labels, student.dims()[1])?;
        Ok(LossTerms {
            terms: vec![LossTerm {
                name: "ce",
                value: cross_entropy(student, inputs.labels.clone()),
                weight: 1.0,
            }],
            counts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchLayout, NetworkOutputs};
    use burn::backend::Flex;
    use burn::tensor::{Int, Tensor};

    #[test]
    fn the_loss_is_the_student_s_cross_entropy_alone() {
        let device = Default::default();
        let student = Tensor::<Flex, 2>::from_floats([[2.0, 0.0], [0.0, 1.0]], &device);
        let labels = Tensor::<Flex, 1, Int>::from_ints([0, 0], &device);
        let inputs = DistillInputs {
            student: NetworkOutputs::from_logits(student.clone()),
            teacher: NetworkOutputs::from_logits(Tensor::zeros([2, 2], &device)),
            labels: labels.clone(),
            sample_indices: None,
            contrast_indices: None,
            ss_labels: None,
            layout: BatchLayout::Plain,
            epoch: 0,
        };
        let terms = VanillaConfig::new().init().unwrap().loss(&inputs).unwrap();
        assert_eq!(terms.terms.len(), 1);
        // CE of rows (2, 0) and (0, 1), both of class 0: (ln(1 + e⁻²) + ln(1 + e)) / 2.
        let expected = ((1.0 + (-2.0f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln()) / 2.0;
        let total: f32 = terms.total().into_scalar();
        assert!(
            (f64::from(total) - expected).abs() < 1e-6,
            "{total} vs {expected}"
        );
    }
}
