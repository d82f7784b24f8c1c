//! Runs one model of the zoo on a batch and writes every output, so anyone can compare it with
//! PyTorch.
//!
//! ```text
//! cargo run --release --example forward -- --arch resnet8 --weights teacher.pth \
//!     --input x.safetensors --output out.safetensors [--num-classes 100] [--device cpu]
//! ```
//! The input file holds tensor `x` (`[N, 3, H, W]`, f32). The output file holds `logits`,
//! `embedding`, `feat.0` … `feat.K` and, where the architecture defines them, `preact.0` …
//! `preact.K`. `--weights` takes a PyTorch checkpoint (`.pth`/`.pt`: a bare state dict,
//! `{"model": …}`, `{"state_dict": …}`, with or without `module.` / `backbone.` prefixes), a
//! `.safetensors` state dict, or a Burn record (`.mpk`). The model runs in inference mode
//! (batch norm with running statistics).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use clap::Parser;
use sskd::cli::backend::{dispatch, main_device, BackendJob, DeviceChoice, Precision};
use sskd::models::atomic::write_atomically;
use sskd::models::{create_model, import::load_weights};

#[derive(Parser, Debug)]
#[command(about = "Run a zoo model on a batch and write its logits, embedding and feature maps")]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Architecture name (`resnet8`, `wrn_40_2`, `ShuffleV1`, …).
    #[arg(long)]
    arch: String,
    /// Weights: .pth/.pt (PyTorch), .safetensors, or .mpk (Burn record).
    #[arg(long)]
    weights: PathBuf,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 100)]
    num_classes: usize,
    /// Input safetensors file with tensor `x` of shape [N, 3, H, W] (f32).
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    output: PathBuf,
    /// cpu, cuda[:N] or wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

struct Forward(Args);

impl BackendJob for Forward {
    type Output = Result<()>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<()> {
        let device = main_device(devices);
        let args = self.0;
        let (shape, values) = read_input(&args.input)?;
        let model = create_model::<B>(&args.arch, args.num_classes, &device)?;
        let model = load_weights(model, &args.weights, &device)?;
        model
            .check_input([shape[2], shape[3]])
            .with_context(|| format!("{}: tensor `x`", args.input.display()))?;
        let input = Tensor::<B, 4>::from_data(TensorData::new(values, shape), &device);
        let output = model.forward(input);
        let mut named: Vec<(String, Vec<f32>, Vec<usize>)> = vec![
            tensor_entry("logits".into(), output.logits)?,
            tensor_entry("embedding".into(), output.embedding)?,
        ];
        for (k, feature) in output.features.into_iter().enumerate() {
            named.push(tensor_entry(format!("feat.{k}"), feature)?);
        }
        for (k, preact) in output.preact_features.into_iter().flatten().enumerate() {
            named.push(tensor_entry(format!("preact.{k}"), preact)?);
        }
        write_output(&args.output, &named)?;
        println!("wrote {} tensors to {}", named.len(), args.output.display());
        Ok(())
    }
}

fn read_input(path: &Path) -> Result<([usize; 4], Vec<f32>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read input {}", path.display()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let view = file.tensor("x").with_context(|| {
        format!(
            "{}: no tensor named `x` (found: {:?})",
            path.display(),
            file.names()
        )
    })?;
    if view.dtype() != safetensors::Dtype::F32 {
        bail!(
            "{}: tensor `x` has dtype {:?}, expected F32",
            path.display(),
            view.dtype()
        );
    }
    let shape: [usize; 4] = match view.shape() {
        &[n, 3, h, w] => [n, 3, h, w],
        other => bail!(
            "{}: tensor `x` has shape {other:?}, expected [N, 3, H, W]",
            path.display()
        ),
    };
    let values = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

fn tensor_entry<B: Backend, const D: usize>(
    name: String,
    tensor: Tensor<B, D>,
) -> Result<(String, Vec<f32>, Vec<usize>)> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading `{name}` back from the device: {e:?}"))?;
    Ok((name, values, shape))
}

fn write_output(path: &Path, named: &[(String, Vec<f32>, Vec<usize>)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = named
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let serialized = safetensors::serialize(views, None)?;
    write_atomically(path, &serialized)?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let device = args.device;
    dispatch(&device.into(), Precision::F32, Forward(args))?
}
