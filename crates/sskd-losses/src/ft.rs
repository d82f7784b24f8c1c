//! Factor transfer (Kim et al., NeurIPS 2018) as the CRD codebase implements it: a paraphraser
//! pre-trained on the teacher's last feature map, a translator trained with the student.

use burn::module::Module;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{backend::Backend, Tensor};
use sskd_models::layers::{leaky_relu, Conv2d, ConvBn};

use crate::functional::{attention_map, last_map, match_spatial, mse};
use crate::{DistillInputs, FeatureTerm, LossError, MethodContext, Needs, Pretraining, TermConfig};

const SLOPE: f64 = 0.1;

fn conv3x3<B: Backend>(channels_in: usize, channels_out: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
        .into()
}

fn conv_transpose3x3<B: Backend>(
    channels_in: usize,
    channels_out: usize,
    device: &B::Device,
) -> ConvTranspose2d<B> {
    ConvTranspose2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding([1, 1])
        .init(device)
}

/// The paraphraser of the teacher's `feat[-2]` (C channels, factor `k·C`, k = 0.5, no BN):
/// encoder `conv3×3(C→C) → conv3×3(C→kC) → conv3×3(kC→kC)`, decoder the mirror with transposed
/// convolutions; LeakyReLU(0.1) after each layer.
///
/// # Shapes
/// - input `[b, C, h, w]`; factor `[b, kC, h, w]`; reconstruction `[b, C, h, w]`
#[derive(Module, Debug)]
pub struct Paraphraser<B: Backend> {
    /// Encoder convolutions (`encoder.0`, `.3`, `.6`).
    pub encoder: Vec<Conv2d<B>>,
    /// Decoder transposed convolutions (`decoder.0`, `.3`, `.6`).
    pub decoder: Vec<ConvTranspose2d<B>>,
}

impl<B: Backend> Paraphraser<B> {
    /// A paraphraser for a teacher map with `channels` channels.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        let factor = channels / 2;
        Self {
            encoder: vec![
                conv3x3(channels, channels, device),
                conv3x3(channels, factor, device),
                conv3x3(factor, factor, device),
            ],
            decoder: vec![
                conv_transpose3x3(factor, factor, device),
                conv_transpose3x3(factor, channels, device),
                conv_transpose3x3(channels, channels, device),
            ],
        }
    }

    /// The factor of a teacher map.
    pub fn encode(&self, map: Tensor<B, 4>) -> Tensor<B, 4> {
        self.encoder
            .iter()
            .fold(map, |hidden, conv| leaky_relu(conv.forward(hidden), SLOPE))
    }

    /// The pre-training loss: `mean (decoder(encoder(f_t)) − f_t)²`.
    pub fn reconstruction_loss(&self, map: Tensor<B, 4>) -> Tensor<B, 1> {
        let factor = self.encode(map.clone());
        let reconstruction = self.decoder.iter().fold(factor, |hidden, conv| {
            leaky_relu(conv.forward(hidden), SLOPE)
        });
        mse(reconstruction, map)
    }
}

/// FT: the translator (`conv3×3 → BN → LeakyReLU` ×3, `C_s → C_s → kC_t → kC_t`) on the
/// student's `feat[-2]`, the frozen paraphraser's factor of the teacher's, and the term
/// `mean |n(f_s) − n(f_t)|` with `n(f) = normalize(mean_C(f²))` (pooled to a common size).
/// CRD weight β = 200.
#[derive(Module, Debug)]
pub struct FactorTransfer<B: Backend> {
    /// The student-side translator (`encoder.{0,3,6}` convs, `encoder.{1,4,7}` BN).
    pub translator: Vec<ConvBn<B>>,
    /// The pre-trained paraphraser (kept frozen: its factor is detached).
    pub paraphraser: Paraphraser<B>,
    /// Epochs of the paraphraser's pre-training stage.
    pub init_epochs: usize,
    /// Learning rate of the pre-training stage.
    pub init_lr: f64,
}

impl<B: Backend> FactorTransfer<B> {
    /// FT between last maps of `student_channels` and `teacher_channels`, with a fresh
    /// paraphraser (pre-train it with [`Paraphraser::reconstruction_loss`]).
    pub fn new(student_channels: usize, teacher_channels: usize, device: &B::Device) -> Self {
        let factor = teacher_channels / 2;
        let layer = |channels_in, channels_out| ConvBn {
            conv: conv3x3(channels_in, channels_out, device),
            bn: sskd_models::batch_norm::BatchNormConfig::new(channels_out).init(device),
        };
        Self {
            translator: vec![
                layer(student_channels, student_channels),
                layer(student_channels, factor),
                layer(factor, factor),
            ],
            paraphraser: Paraphraser::new(teacher_channels, device),
            init_epochs: 30,
            init_lr: 0.01,
        }
    }

    /// The translator's factor of a student map.
    pub fn translate(&self, map: Tensor<B, 4>) -> Tensor<B, 4> {
        self.translator.iter().fold(map, |hidden, layer| {
            leaky_relu(layer.forward(hidden), SLOPE)
        })
    }
}

/// Settings of [`FactorTransfer`]: the paraphraser's pre-training (the factor has half the
/// teacher's last-map channels).
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct FactorTransferConfig {
    /// Epochs of the paraphraser's pre-training (RepDistiller's `--init_epochs`; 0 skips it).
    #[config(default = 30)]
    pub init_epochs: usize,
    /// Its learning rate: RepDistiller's 0.01 for its CIFAR ResNet and WRN students (it uses
    /// the student's own rate for VGG, MobileNetV2 and ShuffleNet students: set it so).
    #[config(default = 0.01)]
    pub init_lr: f64,
}

impl TermConfig for FactorTransferConfig {
    type Term<B: Backend> = FactorTransfer<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<FactorTransfer<B>, LossError> {
        let channels = |maps: &[[usize; 3]]| maps.last().map_or(0, |m| m[0]);
        let (student, teacher) = (&context.student.maps, &context.teacher.maps);
        Ok(FactorTransfer {
            init_epochs: self.init_epochs,
            init_lr: self.init_lr,
            ..FactorTransfer::new(channels(student), channels(teacher), device)
        })
    }
}

impl<B: Backend> FeatureTerm<B> for FactorTransfer<B> {
    fn name(&self) -> &'static str {
        "ft"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let student = self.translate(last_map("ft", &inputs.student, "student")?);
        let teacher = self
            .paraphraser
            .encode(last_map("ft", &inputs.teacher, "teacher")?)
            .detach();
        let (student, teacher) = match_spatial(student, teacher);
        Ok((attention_map(student, 2.0) - attention_map(teacher, 2.0))
            .abs()
            .mean())
    }

    /// The paraphraser learns to reconstruct the teacher's last map; the student only runs.
    fn pretraining(&self) -> Option<Pretraining> {
        Some(Pretraining {
            epochs: self.init_epochs,
            needs: FeatureTerm::<B>::needs(self),
            trains_student: false,
            learning_rate: Some(self.init_lr),
        })
    }

    fn pretrain_term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let teacher = last_map("ft", &inputs.teacher, "teacher")?;
        Ok(self.paraphraser.reconstruction_loss(teacher))
    }
}
