//! FitNets hints (Romero et al., ICLR 2015) as the CRD codebase trains them (one stage, the
//! regressor learned with the student), and the `ConvReg` regressor it shares with AB.

use burn::module::Module;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{backend::Backend, Tensor};
use sskd_models::batch_norm::{BatchNorm, BatchNormConfig};
use sskd_models::layers::Conv2d;

use crate::functional::mse;
use crate::{DistillInputs, FeatureTerm, LossError, MethodContext, Needs, TermConfig};

/// The convolution of a [`ConvReg`].
#[derive(Module, Debug)]
pub enum RegressorConv<B: Backend> {
    /// A strided or valid convolution.
    Conv(Conv2d<B>),
    /// A 4×4 stride-2 transposed convolution (student map half the teacher's size).
    Transposed(ConvTranspose2d<B>),
}

/// `ConvReg` of `models/util.py`: maps a student feature map onto a teacher's shape with
/// - `conv3×3, stride 2, pad 1` when `h_s = 2·h_t`,
/// - `convT4×4, stride 2, pad 1` when `2·h_s = h_t`,
/// - a valid `(1 + h_s − h_t) × (1 + w_s − w_t)` convolution otherwise (1×1 for equal sizes),
///
/// then batch norm and, if `relu`, ReLU. Convolutions have biases; PyTorch's default init.
///
/// # Shapes
/// - input `[b, c_s, h_s, w_s]`, output `[b, c_t, h_t, w_t]`
#[derive(Module, Debug)]
pub struct ConvReg<B: Backend> {
    /// The convolution.
    pub conv: RegressorConv<B>,
    /// Batch norm over the teacher's channels.
    pub bn: BatchNorm<B>,
    /// Whether a ReLU follows.
    pub relu: bool,
}

impl<B: Backend> ConvReg<B> {
    /// A regressor from `student` to `teacher` shapes (`[c, h, w]`).
    pub fn new(
        student: [usize; 3],
        teacher: [usize; 3],
        relu: bool,
        device: &B::Device,
    ) -> Result<Self, LossError> {
        let [s_c, s_h, s_w] = student;
        let [t_c, t_h, t_w] = teacher;
        let conv = if s_h == 2 * t_h {
            RegressorConv::Conv(
                Conv2dConfig::new([s_c, t_c], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device)
                    .into(),
            )
        } else if 2 * s_h == t_h {
            RegressorConv::Transposed(
                ConvTranspose2dConfig::new([s_c, t_c], [4, 4])
                    .with_stride([2, 2])
                    .with_padding([1, 1])
                    .init(device),
            )
        } else if s_h >= t_h && s_w >= t_w {
            RegressorConv::Conv(
                Conv2dConfig::new([s_c, t_c], [1 + s_h - t_h, 1 + s_w - t_w])
                    .init(device)
                    .into(),
            )
        } else {
            return Err(LossError::BadInput {
                method: "conv_reg",
                message: format!("cannot regress a student map {student:?} onto a larger teacher map {teacher:?}"),
            });
        };
        Ok(Self {
            conv,
            bn: BatchNormConfig::new(t_c).init(device),
            relu,
        })
    }

    /// Applies the regressor.
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let output = match &self.conv {
            RegressorConv::Conv(conv) => conv.forward(input),
            RegressorConv::Transposed(conv) => conv.forward(input),
        };
        match self.relu {
            true => self.bn.forward_relu(output),
            false => self.bn.forward(output),
        }
    }
}

/// FitNet: `mean (ConvReg(f_s) − f_t)²` on the feature maps `feat[hint_layer]` (default 2).
/// CRD weight β = 100.
#[derive(Module, Debug)]
pub struct FitNet<B: Backend> {
    /// The regressor (with ReLU).
    pub regressor: ConvReg<B>,
    /// Index of the hinted feature map.
    pub hint_layer: usize,
}

impl<B: Backend> FitNet<B> {
    /// FitNet on `feat[hint_layer]` of networks with the given map shapes.
    pub fn new(
        student: &[[usize; 3]],
        teacher: &[[usize; 3]],
        hint_layer: usize,
        device: &B::Device,
    ) -> Result<Self, LossError> {
        let (Some(&s), Some(&t)) = (student.get(hint_layer), teacher.get(hint_layer)) else {
            return Err(LossError::BadInput {
                method: "fitnet",
                message: format!(
                    "hint layer {hint_layer} is out of range ({} / {} feature maps)",
                    student.len(),
                    teacher.len()
                ),
            });
        };
        Ok(Self {
            regressor: ConvReg::new(s, t, true, device)?,
            hint_layer,
        })
    }
}

fn hinted_map<B: Backend>(
    maps: &[Tensor<B, 4>],
    layer: usize,
    which: &str,
) -> Result<Tensor<B, 4>, LossError> {
    maps.get(layer).cloned().ok_or_else(|| LossError::BadInput {
        method: "fitnet",
        message: format!(
            "the {which} has {} feature maps, the hint layer is {layer}",
            maps.len()
        ),
    })
}

/// Settings of [`FitNet`]: which feature map is hinted.
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct FitNetConfig {
    /// Index of the hinted feature map `feat[hint_layer]`.
    #[config(default = 2)]
    pub hint_layer: usize,
}

impl TermConfig for FitNetConfig {
    type Term<B: Backend> = FitNet<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<FitNet<B>, LossError> {
        let (student, teacher) = (&context.student.maps, &context.teacher.maps);
        FitNet::new(student, teacher, self.hint_layer, device)
    }
}

impl<B: Backend> FeatureTerm<B> for FitNet<B> {
    fn name(&self) -> &'static str {
        "hint"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = hinted_map(&inputs.student.features, self.hint_layer, "student")?;
        let teacher = hinted_map(&inputs.teacher.features, self.hint_layer, "teacher")?;
        Ok(mse(self.regressor.forward(student), teacher))
    }
}
