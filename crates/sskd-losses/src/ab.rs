//! Activation-boundary distillation (Heo et al., AAAI 2019), as `distiller_zoo/AB.py` with the
//! CRD codebase's `Connector`. Its term is the loss of a pre-training stage (30 epochs: the
//! connectors and the student's feature layers); the main stage then trains with CE (+ KD) only.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use sskd_models::layers::relu;

use crate::functional::sum_layers;
use crate::{
    ConvReg, DistillInputs, FeatureTerm, LossError, MethodContext, Needs, Pretraining, TermConfig,
};

/// AB on the pre-activation stage maps `preact feat[1:-1]`: each student map goes through its
/// connector (identity when channels and height match the teacher's, else `ConvReg` without
/// ReLU), then with margin `m = 1`
/// `l_i = Σ (s + m)²·[s > −m ∧ t ≤ 0] + (s − m)²·[s ≤ m ∧ t > 0]`,
/// weighted by `2^(i − L + 1)` (the last layer 1), divided by the batch and multiplied by
/// 3/1000; the term is the sum over layers.
#[derive(Module, Debug)]
pub struct ActivationBoundary<B: Backend> {
    /// One connector per layer pair (`None`: identity).
    pub connectors: Vec<Option<ConvReg<B>>>,
    /// The margin `m`.
    pub margin: f64,
    /// Epochs of the pre-training stage.
    pub init_epochs: usize,
}

/// Settings of [`ActivationBoundary`]: the margin and the pre-training epochs.
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct ActivationBoundaryConfig {
    /// The margin `m`.
    #[config(default = 1.0)]
    pub margin: f64,
    /// Epochs of the pre-training stage (RepDistiller's `--init_epochs`; 0 skips it).
    #[config(default = 30)]
    pub init_epochs: usize,
}

impl TermConfig for ActivationBoundaryConfig {
    type Term<B: Backend> = ActivationBoundary<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<ActivationBoundary<B>, LossError> {
        let (student, teacher) = (&context.student.maps, &context.teacher.maps);
        Ok(ActivationBoundary {
            margin: self.margin,
            init_epochs: self.init_epochs,
            ..ActivationBoundary::new(student, teacher, device)?
        })
    }
}

impl<B: Backend> ActivationBoundary<B> {
    /// Connectors for the zipped pairs of `feat[1:-1]` of networks with the given map shapes.
    pub fn new(
        student: &[[usize; 3]],
        teacher: &[[usize; 3]],
        device: &B::Device,
    ) -> Result<Self, LossError> {
        let connectors = student
            .iter()
            .skip(1)
            .zip(teacher.iter().skip(1))
            .map(|(s, t)| {
                if s[0] == t[0] && s[1] == t[1] {
                    Ok(None)
                } else {
                    ConvReg::new(*s, *t, false, device).map(Some)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            connectors,
            margin: 1.0,
            init_epochs: 30,
        })
    }

    /// `Σ [t ≤ 0]·[s > −m]·(s + m)² + [t > 0]·[s ≤ m]·(s − m)²`, written as
    /// `Σ a²` with `a = relu(s + m)` where the teacher is inactive and `relu(m − s)` where it is
    /// active: the same value and gradient (both vanish at the margins) in a third of the
    /// passes over the map.
    fn boundary_loss(&self, student: Tensor<B, 4>, teacher: Tensor<B, 4>) -> Tensor<B, 1> {
        let m = self.margin;
        let teacher_active = teacher.greater_elem(0.0);
        let push_down = relu(student.clone().add_scalar(m));
        let push_up = relu(student.neg().add_scalar(m));
        let hinge = push_down.mask_where(teacher_active, push_up);
        (hinge.clone() * hinge).sum()
    }
}

impl<B: Backend> FeatureTerm<B> for ActivationBoundary<B> {
    fn name(&self) -> &'static str {
        "ab"
    }

    fn needs(&self) -> Needs {
        Needs {
            preact_features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        // A family whose reference ignores `preact` (MobileNetV2) gives its plain maps.
        let maps = |outputs: &crate::NetworkOutputs<B>, which: &str| {
            let maps = outputs
                .preact_features
                .as_ref()
                .unwrap_or(&outputs.features);
            match maps.len() {
                2.. => Ok(maps[1..].to_vec()),
                _ => Err(LossError::BadInput {
                    method: "ab",
                    message: format!("needs the {which}'s feature maps"),
                }),
            }
        };
        let student = maps(&inputs.student, "student")?;
        let teacher = maps(&inputs.teacher, "teacher")?;
        let layers = self.connectors.len();
        let batch = student[0].dims()[0] as f64;
        let pairs = self.connectors.iter().zip(student.into_iter().zip(teacher));
        Ok(sum_layers(pairs.enumerate().map(
            |(index, (connector, (s, t)))| {
                let s = match connector {
                    Some(regressor) => regressor.forward(s),
                    None => s,
                };
                let weight = 2f64.powi(index as i32 - layers as i32 + 1);
                self.boundary_loss(s, t)
                    .mul_scalar(weight / batch * 3.0 / 1000.0)
            },
        )))
    }

    /// The connectors and the student's feature layers learn the teacher's boundaries.
    fn pretraining(&self) -> Option<Pretraining> {
        let needs = FeatureTerm::<B>::needs(self);
        Some(Pretraining::of_feature_layers(self.init_epochs, needs))
    }

    fn pretrain_term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        self.term(inputs)
    }
}
