//! Computes a distillation loss from tensors in a file, so anyone can check it against PyTorch.
//!
//! ```text
//! cargo run --release --example losses -- --input in.safetensors [--method sskd|kd|kd_ls|dkd] \
//!     [--config sskd.json] --output out.json
//! ```
//! `--method sskd` (default) reads `s_logits` `[4B, C]`, `t_logits` `[4B, C]`, `s_head` `[4B, d]`,
//! `t_head` `[4B, d]` and `labels` `[B]` (rows laid out as the SSKD batch: row `4i + k` is image
//! `i` rotated `k·90°`). `kd`, `kd_ls` and `dkd` read `s_logits`, `t_logits` `[B, C]` and
//! `labels`. Floats may be F32 or F64, labels I64 or I32. The output is one JSON object with every
//! unweighted term (each already × τ²), the weighted `total` and the counts (`kept_tf`,
//! `kept_ss` for SSKD). `--config` is a JSON file of the method's config fields (see
//! `SskdConfig`, `KdConfig`, `DkdConfig`); missing fields keep their defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use sskd::config::{read_json, ConfigError};
use sskd::losses::{
    method_names, BatchLayout, DistillInputs, Distiller, FeatureShapes, MethodConfig,
    MethodContext, NetworkOutputs,
};

type B = Flex;

#[derive(Parser, Debug)]
#[command(
    about = "Compute a distillation loss from a safetensors file and write its terms as JSON"
)]
struct Args {
    #[command(flatten)]
    verbosity: sskd::cli::logging::Verbosity,
    /// Input safetensors file.
    #[arg(long)]
    input: PathBuf,
    /// A logit method of the table: sskd, kd, kd_ls, dkd or vanilla.
    #[arg(long, default_value = "sskd")]
    method: String,
    /// JSON settings of the method over its published ones (fields of SskdConfig / KdConfig /
    /// DkdConfig).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output JSON file.
    #[arg(long)]
    output: PathBuf,
    /// 0-based epoch (DKD's warm-up).
    #[arg(long, default_value_t = 0)]
    epoch: usize,
}

struct Inputs {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Inputs {
    fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn view(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes).expect("validated in read")
    }

    fn has(&self, name: &str) -> bool {
        self.view().tensor(name).is_ok()
    }

    fn floats(&self, name: &str) -> Result<Tensor<B, 2>> {
        let file = self.view();
        let view = file
            .tensor(name)
            .with_context(|| format!("{}: no tensor named `{name}`", self.path.display()))?;
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => bail!(
                "{}: tensor `{name}` has dtype {other:?}, expected F32 or F64",
                self.path.display()
            ),
        };
        let &[rows, columns] = view.shape() else {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected two dimensions",
                self.path.display(),
                view.shape()
            );
        };
        Ok(Tensor::from_data(
            TensorData::new(values, [rows, columns]),
            &Default::default(),
        ))
    }

    fn labels(&self) -> Result<Tensor<B, 1, Int>> {
        let file = self.view();
        let view = file
            .tensor("labels")
            .with_context(|| format!("{}: no tensor named `labels`", self.path.display()))?;
        let values: Vec<i64> = match view.dtype() {
            safetensors::Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            safetensors::Dtype::I32 => view
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            other => bail!(
                "{}: `labels` has dtype {other:?}, expected I64 or I32",
                self.path.display()
            ),
        };
        let count = values.len();
        if view.shape() != [count] {
            bail!(
                "{}: `labels` has shape {:?}, expected [B]",
                self.path.display(),
                view.shape()
            );
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [count]),
            &Default::default(),
        ))
    }
}

/// The method `--method` of the table, its published settings with those of `--config` over
/// them; a method that reads feature maps is refused, naming the logit methods.
fn method(args: &Args) -> Result<Box<dyn Distiller<B>>> {
    let published = MethodConfig::published(&args.method)?;
    if !published.logits_only() {
        let logit_methods: Vec<&str> = method_names()
            .iter()
            .copied()
            .filter(|name| MethodConfig::published(name).is_ok_and(|m| m.logits_only()))
            .collect();
        bail!(
            "method `{}` reads feature maps; this tool computes the logit methods: {}",
            args.method,
            logit_methods.join(", ")
        );
    }
    let config = match &args.config {
        None => published,
        Some(path) => published
            .with_fields(&read_json(path)?)
            .map_err(|e| ConfigError::from(e).in_file(path))?,
    };
    config.validate()?;
    let context = MethodContext {
        student: FeatureShapes {
            maps: Vec::new(),
            embedding: 0,
        },
        teacher: FeatureShapes {
            maps: Vec::new(),
            embedding: 0,
        },
        n_data: 0,
        labels: None,
        seed: 0,
    };
    Ok(Box::new(config.init::<B>(&context, &Default::default())?))
}

fn network(inputs: &Inputs, logits: &str, head: &str) -> Result<NetworkOutputs<B>> {
    let mut outputs = NetworkOutputs::from_logits(inputs.floats(logits)?);
    if inputs.has(head) {
        outputs.head = Some(inputs.floats(head)?);
    }
    Ok(outputs)
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.verbosity.init();
    let distiller = method(&args)?;
    let inputs = Inputs::read(&args.input)?;
    let batch = DistillInputs {
        student: network(&inputs, "s_logits", "s_head")?,
        teacher: network(&inputs, "t_logits", "t_head")?,
        labels: inputs.labels()?,
        sample_indices: None,
        contrast_indices: None,
        ss_labels: None,
        layout: if distiller.needs().rotations {
            BatchLayout::Rotations4
        } else {
            BatchLayout::Plain
        },
        epoch: args.epoch,
    };
    let terms = distiller
        .loss(&batch)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    let mut report = BTreeMap::new();
    for term in &terms.terms {
        report.insert(
            term.name.to_string(),
            serde_json::json!(term.value.clone().into_scalar()),
        );
    }
    report.insert(
        sskd::losses::TOTAL.to_string(),
        serde_json::json!(terms.total().into_scalar()),
    );
    for (name, count) in &terms.counts {
        report.insert(name.to_string(), serde_json::json!(count));
    }
    let text = serde_json::to_string_pretty(&report)?;
    sskd::models::atomic::write_atomically(&args.output, text.as_bytes())?;
    println!("{text}");
    Ok(())
}
