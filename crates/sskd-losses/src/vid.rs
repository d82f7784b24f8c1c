//! Variational information distillation (Ahn et al., CVPR 2019), as `distiller_zoo/VID.py`.

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::Conv2dConfig;
use burn::tensor::activation::softplus;
use burn::tensor::{backend::Backend, Tensor};
use sskd_models::layers::{relu, Conv2d};

use crate::functional::{match_spatial, stage_pairs, sum_layers};
use crate::{DistillInputs, FeatureTerm, LossError, MethodContext, Needs, TermConfig};

/// One VID layer pair: the regressor `conv1×1(C_s→C_t) → ReLU → conv1×1 → ReLU → conv1×1` (no
/// biases) gives the mean μ, and a per-channel variance `σ² = softplus(θ) + 1e-5` with θ
/// initialised so that σ² = 5.
#[derive(Module, Debug)]
pub struct VidLayer<B: Backend> {
    /// First 1×1 convolution (`regressor.0`).
    pub conv1: Conv2d<B>,
    /// Second (`regressor.2`).
    pub conv2: Conv2d<B>,
    /// Third (`regressor.4`).
    pub conv3: Conv2d<B>,
    /// θ (`log_scale`). `[c_t]`.
    pub log_scale: Param<Tensor<B, 1>>,
}

const VARIANCE_EPS: f64 = 1e-5;

impl<B: Backend> VidLayer<B> {
    fn new(student_channels: usize, teacher_channels: usize, device: &B::Device) -> Self {
        let conv = |channels_in| {
            Conv2dConfig::new([channels_in, teacher_channels], [1, 1])
                .with_bias(false)
                .init(device)
                .into()
        };
        let initial = ((5.0f64 - VARIANCE_EPS).exp() - 1.0).ln();
        Self {
            conv1: conv(student_channels),
            conv2: conv(teacher_channels),
            conv3: conv(teacher_channels),
            log_scale: Initializer::Constant { value: initial }.init([teacher_channels], device),
        }
    }

    /// `mean(0.5 · ((μ − f_t)² / σ² + log σ²))` after pooling the larger map to the smaller,
    /// summed per channel first: `0.5 · (Σ_c S_c / σ²_c / (b·c·h·w) + mean_c log σ²_c)` with
    /// `S_c` the channel's sum of squared errors — the same value without dividing every
    /// element by a `[1, c, 1, 1]` variance, a broadcast over the middle axes that burn-flex
    /// 0.21 walks element by element.
    fn loss(&self, student: Tensor<B, 4>, teacher: Tensor<B, 4>) -> Tensor<B, 1> {
        let (student, teacher) = match_spatial(student, teacher);
        let mean = self
            .conv3
            .forward(relu(self.conv2.forward(relu(self.conv1.forward(student)))));
        let [batch, channels, height, width] = mean.dims();
        let error = mean - teacher;
        // Batch first, then positions: each sum's gradient is a broadcast burn-flex vectorises.
        let channel_sums = (error.clone() * error)
            .reshape([batch, channels * height * width])
            .sum_dim(0)
            .reshape([channels, height * width])
            .sum_dim(1)
            .reshape([channels]);
        let variance = softplus(self.log_scale.val(), 1.0).add_scalar(VARIANCE_EPS);
        let elements = (batch * channels * height * width) as f64;
        (channel_sums / variance.clone())
            .sum()
            .div_scalar(elements)
            .mul_scalar(0.5)
            + variance.log().mean().mul_scalar(0.5)
    }
}

/// VID on the stage maps `feat[1:-1]`, one [`VidLayer`] per zipped pair, summed. CRD weight β = 1.
#[derive(Module, Debug)]
pub struct Vid<B: Backend> {
    /// The layer pairs.
    pub layers: Vec<VidLayer<B>>,
}

impl<B: Backend> Vid<B> {
    /// One layer per zipped pair of `feat[1:-1]` of networks with the given map shapes.
    pub fn new(student: &[[usize; 3]], teacher: &[[usize; 3]], device: &B::Device) -> Self {
        let layers = student
            .iter()
            .skip(1)
            .zip(teacher.iter().skip(1))
            .map(|(s, t)| VidLayer::new(s[0], t[0], device))
            .collect();
        Self { layers }
    }
}

/// Settings of [`Vid`]: none (one layer per zipped pair of stage maps).
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct VidConfig {}

impl TermConfig for VidConfig {
    type Term<B: Backend> = Vid<B>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Vid<B>, LossError> {
        Ok(Vid::new(
            &context.student.maps,
            &context.teacher.maps,
            device,
        ))
    }
}

impl<B: Backend> FeatureTerm<B> for Vid<B> {
    fn name(&self) -> &'static str {
        "vid"
    }

    fn needs(&self) -> Needs {
        Needs {
            features: true,
            ..Needs::default()
        }
    }

    fn term(&self, inputs: &DistillInputs<B>) -> Result<Tensor<B, 1>, LossError> {
        let pairs = self.layers.iter().zip(stage_pairs("vid", inputs)?);
        Ok(sum_layers(pairs.map(|(layer, (s, t))| layer.loss(s, t))))
    }
}
