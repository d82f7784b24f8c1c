//! Fused batch normalisation for training on burn-flex's tensors (Burn 0.21 has no batch-norm
//! backend operation).
//!
//! Batch normalisation of `x` `[N, C, ...]` over every axis but the channel axis, as
//! `torch.nn.functional.batch_norm(training=True)` computes it: batch mean `μ_c`, biased batch
//! variance `σ²_c`, `y = (x − μ_c) / √(σ²_c + ε) · γ_c + β_c`. The forward pass reads `x`
//! twice for the statistics (mean, then the centred sum of squares: no cancellation) and
//! writes `y` once; the backward pass reads `x` and `dy` once for two sums per channel and
//! once more to write `dx`:
//!
//! `dβ_c = Σ dy`, `dγ_c = Σ dy · x̂`, `dx = γ_c / σ_c · (dy − dβ_c / M − x̂ · dγ_c / M)`
//!
//! with `x̂ = (x − μ_c) / σ_c` and `M = N · spatial`. Sums accumulate in `f64`. `f32` and `f64`
//! tensors only (the callers fall back to a composite of generic ops for other types).
//! Channel statistics run in parallel over channels, element-wise passes over rows.
//!
//! With [`Activation::Relu`] the ReLU that follows most batch norms is part of the same passes:
//! the forward pass writes `max(y, 0)`, and the backward pass masks `dy` where that output is
//! not positive (in `dy`'s own buffer when it is free) before the sums above — the values of
//! `relu(batch_norm(x))` and of its gradients, without the two extra passes (and the two
//! buffers) of a separate ReLU.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;

use crate::elementwise_kernels::{owned_contiguous, relu_backward, relu_of};
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{for_each_chunk, vec_by_chunks, MIN_SLICE, PARALLEL_ELEMENTS};
use crate::wide_vectors::with_avx512;

/// What follows the normalisation inside the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: the batch norm alone.
    Identity,
    /// A ReLU, `max(y, 0)` (NaN stays NaN), with its gradient.
    Relu,
}

impl Activation {
    fn apply<T: PartialOrd + bytemuck::Zeroable + Copy>(self, value: T) -> T {
        match self {
            Activation::Identity => value,
            Activation::Relu => relu_of(value),
        }
    }
}

/// A float type the kernels run in (`f32`, `f64`).
trait NormFloat:
    Element
    + bytemuck::Pod
    + PartialOrd
    + core::ops::Mul<Output = Self>
    + core::ops::Add<Output = Self>
    + Send
    + Sync
    + 'static
{
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
}
impl NormFloat for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}
impl NormFloat for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
    }
}

/// What the training forward pass returns.
#[derive(Clone, Debug)]
pub struct BatchNormForward {
    /// The normalised tensor, the input's shape.
    pub output: FlexTensor,
    /// Batch mean per channel, `[C]`.
    pub mean: FlexTensor,
    /// Biased batch variance per channel, `[C]`.
    pub variance: FlexTensor,
    /// `1 / √(variance + ε)` per channel, `[C]` (kept for the backward pass).
    pub inv_std: FlexTensor,
}

/// What the backward pass returns.
#[derive(Clone, Debug)]
pub struct BatchNormGrads {
    /// Gradient of the input, its shape.
    pub input: FlexTensor,
    /// Gradient of γ, `[C]`.
    pub gamma: FlexTensor,
    /// Gradient of β, `[C]`.
    pub beta: FlexTensor,
}

/// `(N, C, spatial)` of a tensor `[N, C, ...]`.
fn sizes(x: &FlexTensor) -> (usize, usize, usize) {
    let dims = x.layout().shape().to_vec();
    assert!(
        dims.len() >= 2,
        "batch_norm: needs [N, C, ...], got {dims:?}"
    );
    (dims[0], dims[1], dims[2..].iter().product())
}

/// Whether the fused kernels handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

fn values<T: NormFloat>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "batch_norm")
}

/// Per-channel values computed by `per_channel(c)` for `c in 0..channels`.
fn map_channels<R: Send>(
    channels: usize,
    parallel: bool,
    per_channel: impl Fn(usize) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        use rayon::prelude::*;
        return (0..channels).into_par_iter().map(per_channel).collect();
    }
    (0..channels).map(per_channel).collect()
}

/// Elements per vector of partial sums (eight `f64`, one 512-bit register).
const LANES: usize = 8;

/// Vectors of partial sums per sum: the additions into one vector wait for each other (about
/// four cycles each), those into different vectors do not.
const ACCUMULATORS: usize = 4;

/// `K` partial sums of `term(a[i], b[i])` in `f64`: [`ACCUMULATORS`] vectors of [`LANES`] each,
/// and a scalar sum for the elements past the last whole vector of each row.
struct PartialSums<const K: usize> {
    vectors: [[[f64; LANES]; ACCUMULATORS]; K],
    tail: [f64; K],
}

// Index loops over constant bounds, unrolled whole: the partial sums stay in registers.
#[allow(clippy::needless_range_loop)]
impl<const K: usize> PartialSums<K> {
    #[inline(always)]
    fn new() -> Self {
        Self {
            vectors: [[[0.0; LANES]; ACCUMULATORS]; K],
            tail: [-0.0; K],
        }
    }

    /// Adds one row: runs of `ACCUMULATORS` vectors, one into each; the vectors left (fewer
    /// than `ACCUMULATORS`) into the first ones in order; the rest into the scalar sums.
    #[inline(always)]
    fn add_row<T: NormFloat>(
        &mut self,
        a: &[T],
        b: &[T],
        term: impl Fn(f64, f64) -> [f64; K] + Copy,
    ) {
        let run = LANES * ACCUMULATORS;
        let (runs, rest) = (a.len() / run * run, a.len() / LANES * LANES);
        let (a_runs, b_runs) = (a[..runs].chunks_exact(run), b[..runs].chunks_exact(run));
        for (a_run, b_run) in a_runs.zip(b_runs) {
            for accumulator in 0..ACCUMULATORS {
                let at = accumulator * LANES..(accumulator + 1) * LANES;
                self.add_vector(accumulator, &a_run[at.clone()], &b_run[at], term);
            }
        }
        let (a_left, b_left) = (
            a[runs..rest].chunks_exact(LANES),
            b[runs..rest].chunks_exact(LANES),
        );
        for (accumulator, (a8, b8)) in a_left.zip(b_left).enumerate() {
            self.add_vector(accumulator, a8, b8, term);
        }
        for (&x, &y) in a[rest..].iter().zip(&b[rest..]) {
            let terms = term(x.to_f64(), y.to_f64());
            for k in 0..K {
                self.tail[k] += terms[k];
            }
        }
    }

    #[inline(always)]
    fn add_vector<T: NormFloat>(
        &mut self,
        accumulator: usize,
        a8: &[T],
        b8: &[T],
        term: impl Fn(f64, f64) -> [f64; K],
    ) {
        for lane in 0..LANES {
            let terms = term(a8[lane].to_f64(), b8[lane].to_f64());
            for k in 0..K {
                self.vectors[k][accumulator][lane] += terms[k];
            }
        }
    }

    /// The `K` sums: the partial sums added in a fixed order, from −0 (`Iterator::sum`'s
    /// start; plain loops, which inline where iterator adaptors may not).
    #[inline(always)]
    fn totals(&self) -> [f64; K] {
        let mut totals = [-0.0; K];
        for k in 0..K {
            for vector in &self.vectors[k] {
                for &lane in vector {
                    totals[k] += lane;
                }
            }
            totals[k] += self.tail[k];
        }
        totals
    }
}

/// `Σ_n Σ_i term(a_row[i], b_row[i])` over the `batch` rows of channel `c` in `[N, C, len]`
/// data (`K` sums in one pass), compiled for AVX-512 where the CPU has it (the conversions to
/// `f64` and the sums eight at a time; the same bits: [`wide_vectors`](crate::wide_vectors)).
/// The order of the additions depends on the shape alone.
fn channel_sums<T: NormFloat, const K: usize>(
    (a, b): (&[T], &[T]),
    channels: usize,
    len: usize,
    c: usize,
    term: impl Fn(f64, f64) -> [f64; K] + Copy,
) -> [f64; K] {
    #[cfg(target_arch = "x86_64")]
    if crate::nt_product::available() {
        // SAFETY: the CPU has AVX-512F (checked on the line above).
        return unsafe { channel_sums_avx512((a, b), channels, len, c, term) };
    }
    channel_rows_sums((a, b), channels, len, c, term)
}

/// [`channel_rows_sums`] compiled for AVX-512F (a function of its own, not a closure: the
/// `#[inline(always)]` sums are then always inlined into it).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channel_sums_avx512<T: NormFloat, const K: usize>(
    rows: (&[T], &[T]),
    channels: usize,
    len: usize,
    c: usize,
    term: impl Fn(f64, f64) -> [f64; K] + Copy,
) -> [f64; K] {
    channel_rows_sums(rows, channels, len, c, term)
}

/// The sums of [`channel_sums`].
#[inline(always)]
fn channel_rows_sums<T: NormFloat, const K: usize>(
    (a, b): (&[T], &[T]),
    channels: usize,
    len: usize,
    c: usize,
    term: impl Fn(f64, f64) -> [f64; K] + Copy,
) -> [f64; K] {
    let batch = a.len() / (channels * len).max(1);
    let mut sums = PartialSums::new();
    for n in 0..batch {
        let rows = (n * channels + c) * len..(n * channels + c + 1) * len;
        sums.add_row(&a[rows.clone()], &b[rows], term);
    }
    sums.totals()
}

/// `write(row, out_row)` for each row (`len` elements) of `out`: rows in parallel when
/// `parallel`, in runs of at least [`MIN_SLICE`] elements, each run compiled for AVX-512 where
/// the CPU has it.
fn for_each_row<T: Send>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    write: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let rows_per_run = MIN_SLICE.div_ceil(len.max(1));
    for_each_chunk(out, rows_per_run * len, parallel, |run, rows| {
        write_run(run * rows_per_run, rows, len, &write)
    });
}

/// A vector of `total` elements written as [`for_each_row`] writes rows.
fn rows_by<T: NormFloat>(
    total: usize,
    len: usize,
    parallel: bool,
    write: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let rows_per_run = MIN_SLICE.div_ceil(len.max(1));
    vec_by_chunks(total, rows_per_run * len, parallel, |run, rows| {
        write_run(run * rows_per_run, rows, len, &write)
    })
}

/// `write(row, out_row)` for the rows of a run, `first_row` its first, compiled for AVX-512
/// where the CPU has it.
fn write_run<T>(first_row: usize, rows: &mut [T], len: usize, write: &impl Fn(usize, &mut [T])) {
    with_avx512(|| {
        for (i, out_row) in rows.chunks_mut(len).enumerate() {
            write(first_row + i, out_row);
        }
    })
}

fn forward_typed<T: NormFloat>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    activation: Activation,
) -> BatchNormForward {
    let (batch, channels, len) = sizes(x);
    let (x, gamma, beta) = (values::<T>(x), values::<T>(gamma), values::<T>(beta));
    let (data, gamma, beta) = (x.storage::<T>(), gamma.storage::<T>(), beta.storage::<T>());
    assert_eq!(
        gamma.len(),
        channels,
        "batch_norm: γ of {} for {channels} channels",
        gamma.len()
    );
    assert_eq!(
        beta.len(),
        channels,
        "batch_norm: β of {} for {channels} channels",
        beta.len()
    );
    let count = (batch * len).max(1) as f64;
    let parallel = data.len() >= PARALLEL_ELEMENTS;
    let stats = map_channels(channels, parallel, |c| {
        let [sum] = channel_sums((data, data), channels, len, c, |v, _| [v]);
        let mean = sum / count;
        let [squares] = channel_sums((data, data), channels, len, c, |v, _| {
            [(v - mean) * (v - mean)]
        });
        (mean, squares / count)
    });
    let inv_std: Vec<f64> = stats
        .iter()
        .map(|&(_, var)| 1.0 / (var + epsilon).sqrt())
        .collect();
    let scale: Vec<T> = (0..channels)
        .map(|c| T::from_f64(gamma[c].to_f64() * inv_std[c]))
        .collect();
    let mean_t: Vec<T> = stats.iter().map(|&(mean, _)| T::from_f64(mean)).collect();
    let output = rows_by(data.len(), len, parallel, |row, out: &mut [T]| {
        let c = row % channels;
        let (mean, scale, shift) = (mean_t[c].to_f64(), scale[c].to_f64(), beta[c].to_f64());
        for (o, &v) in out.iter_mut().zip(&data[row * len..(row + 1) * len]) {
            *o = activation.apply(T::from_f64((v.to_f64() - mean) * scale + shift));
        }
    });
    let shape = x.layout().shape().to_vec();
    BatchNormForward {
        output: tensor_from(output, shape),
        mean: tensor_from(mean_t, vec![channels]),
        variance: tensor_from(
            stats.iter().map(|&(_, var)| T::from_f64(var)).collect(),
            vec![channels],
        ),
        inv_std: tensor_from(
            inv_std.iter().map(|&s| T::from_f64(s)).collect(),
            vec![channels],
        ),
    }
}

fn backward_typed<T: NormFloat>(
    x: &FlexTensor,
    (mean, inv_std, gamma): (&FlexTensor, &FlexTensor, &FlexTensor),
    output_grad: FlexTensor,
    relu_output: Option<&FlexTensor>,
) -> BatchNormGrads {
    let (batch, channels, len) = sizes(x);
    assert_eq!(
        output_grad.dtype(),
        T::dtype(),
        "batch_norm: mixed float types"
    );
    // dy masked by the ReLU, as a buffer of our own: the input gradient is written over it.
    let mut input_grad = match relu_output {
        Some(output) => relu_backward(output, output_grad),
        None => output_grad,
    };
    let input_grad_buffer = owned_contiguous::<T>(&mut input_grad);
    let x = values::<T>(x);
    let (mean, inv_std, gamma) = (values::<T>(mean), values::<T>(inv_std), values::<T>(gamma));
    let data = x.storage::<T>();
    let (mean, inv_std, gamma) = (
        mean.storage::<T>(),
        inv_std.storage::<T>(),
        gamma.storage::<T>(),
    );
    assert_eq!(
        input_grad_buffer.len(),
        data.len(),
        "batch_norm: gradient of another shape"
    );
    let dy: &[T] = input_grad_buffer;
    let count = (batch * len).max(1) as f64;
    let parallel = data.len() >= PARALLEL_ELEMENTS;
    // Per channel: Σ dy and Σ dy · (x − μ).
    let sums = map_channels(channels, parallel, |c| {
        let mu = mean[c].to_f64();
        let [sum_dy, sum_dy_centered] =
            channel_sums((dy, data), channels, len, c, |g, v| [g, g * (v - mu)]);
        (sum_dy, sum_dy_centered)
    });
    // dx over dy, in place.
    for_each_row(input_grad_buffer, len, parallel, |row, out| {
        let c = row % channels;
        let (mu, s) = (mean[c].to_f64(), inv_std[c].to_f64());
        let (sum_dy, sum_dy_centered) = sums[c];
        let mean_dy = sum_dy / count;
        let projection = sum_dy_centered * s * s / count;
        let k = gamma[c].to_f64() * s;
        for (o, &v) in out.iter_mut().zip(&data[row * len..(row + 1) * len]) {
            *o = T::from_f64(k * (o.to_f64() - mean_dy - (v.to_f64() - mu) * projection));
        }
    });
    BatchNormGrads {
        input: input_grad,
        gamma: tensor_from(
            (0..channels)
                .map(|c| T::from_f64(sums[c].1 * inv_std[c].to_f64()))
                .collect(),
            vec![channels],
        ),
        beta: tensor_from(
            sums.iter()
                .map(|&(sum_dy, _)| T::from_f64(sum_dy))
                .collect(),
            vec![channels],
        ),
    }
}

/// The training forward pass of batch normalisation over `x` `[N, C, ...]` with γ and β `[C]`,
/// followed by `activation`.
///
/// # Panics
/// If the tensors are not `f32` or `f64` ([`supports`]), differ in type, or γ/β are not `[C]`.
pub fn batch_norm_train_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    activation: Activation,
) -> BatchNormForward {
    match x.dtype() {
        DType::F32 => forward_typed::<f32>(x, gamma, beta, epsilon, activation),
        DType::F64 => forward_typed::<f64>(x, gamma, beta, epsilon, activation),
        dtype => panic!("batch_norm: unsupported dtype {dtype:?}"),
    }
}

fn inference_typed<T: NormFloat>(
    x: &FlexTensor,
    scale: &FlexTensor,
    shift: &FlexTensor,
    activation: Activation,
) -> FlexTensor {
    let (_, channels, len) = sizes(x);
    let (x, scale, shift) = (values::<T>(x), values::<T>(scale), values::<T>(shift));
    let (data, scale, shift) = (x.storage::<T>(), scale.storage::<T>(), shift.storage::<T>());
    assert!(
        scale.len() == channels && shift.len() == channels,
        "batch_norm: scale of {} and shift of {} for {channels} channels",
        scale.len(),
        shift.len()
    );
    let parallel = data.len() >= PARALLEL_ELEMENTS;
    let output = rows_by(data.len(), len, parallel, |row, out: &mut [T]| {
        let (s, t) = (scale[row % channels], shift[row % channels]);
        for (o, &v) in out.iter_mut().zip(&data[row * len..(row + 1) * len]) {
            *o = activation.apply(v * s + t);
        }
    });
    tensor_from(output, x.layout().shape().to_vec())
}

/// Inference-mode batch norm with the running statistics, γ and β folded into one scale and
/// shift per channel: `y [N, C, ...] = x · scale[c] + shift[c]` in the tensors' type (the
/// product rounded, then the sum, as two tensor operations would), then `activation`, rows of
/// `x` in parallel.
///
/// # Panics
/// If the tensors are not `f32` or `f64` ([`supports`]), differ in type, or `scale` / `shift`
/// are not `[C]`.
pub fn batch_norm_inference(
    x: &FlexTensor,
    scale: &FlexTensor,
    shift: &FlexTensor,
    activation: Activation,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => inference_typed::<f32>(x, scale, shift, activation),
        DType::F64 => inference_typed::<f64>(x, scale, shift, activation),
        dtype => panic!("batch_norm: unsupported dtype {dtype:?}"),
    }
}

/// The backward pass of [`batch_norm_train_forward`]: the gradients of `x`, γ and β from the
/// output's gradient (whose buffer becomes the input gradient's when nothing else holds it),
/// `x`, the forward pass's `mean` and `inv_std`, and γ. `relu_output` is the forward pass's
/// output when it ran with [`Activation::Relu`] (the gradient's mask), else `None`.
///
/// # Panics
/// As [`batch_norm_train_forward`], or if `output_grad` does not have `x`'s size.
pub fn batch_norm_train_backward(
    x: &FlexTensor,
    (mean, inv_std, gamma): (&FlexTensor, &FlexTensor, &FlexTensor),
    output_grad: FlexTensor,
    relu_output: Option<&FlexTensor>,
) -> BatchNormGrads {
    let saved = (mean, inv_std, gamma);
    match x.dtype() {
        DType::F32 => backward_typed::<f32>(x, saved, output_grad, relu_output),
        DType::F64 => backward_typed::<f64>(x, saved, output_grad, relu_output),
        dtype => panic!("batch_norm: unsupported dtype {dtype:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(data: Vec<f64>, shape: Vec<usize>) -> FlexTensor {
        tensor_from(data, shape)
    }

    fn pseudo_random(count: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 1.5
            })
            .collect()
    }

    /// Forward and backward by the textbook formulas, in `f64`, over `[N, C, L]`.
    #[allow(clippy::type_complexity)]
    fn naive(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        dy: &[f64],
        (n, c, l): (usize, usize, usize),
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let m = (n * l) as f64;
        let idx = |b: usize, ch: usize, i: usize| (b * c + ch) * l + i;
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let all = |f: &dyn Fn(usize) -> f64| {
                (0..n)
                    .flat_map(|b| (0..l).map(move |i| (b, i)))
                    .map(|(b, i)| f(idx(b, ch, i)))
                    .sum::<f64>()
            };
            let mean = all(&|j| x[j]) / m;
            let var = all(&|j| (x[j] - mean).powi(2)) / m;
            let s = 1.0 / (var + eps).sqrt();
            dbeta[ch] = all(&|j| dy[j]);
            dgamma[ch] = all(&|j| dy[j] * (x[j] - mean) * s);
            for b in 0..n {
                for i in 0..l {
                    let j = idx(b, ch, i);
                    let xhat = (x[j] - mean) * s;
                    y[j] = xhat * gamma[ch] + beta[ch];
                    dx[j] = gamma[ch] * s * (dy[j] - dbeta[ch] / m - xhat * dgamma[ch] / m);
                }
            }
        }
        (y, dx, dgamma, dbeta)
    }

    fn check(shape: (usize, usize, usize), activation: Activation) {
        let (n, c, l) = shape;
        let x = pseudo_random(n * c * l, 1);
        let mut dy = pseudo_random(n * c * l, 2);
        let gamma = pseudo_random(c, 3);
        let beta = pseudo_random(c, 4);
        let (mut y, ..) = naive(&x, &gamma, &beta, &dy, shape, 1e-5);
        if activation == Activation::Relu {
            // relu(batch_norm(x)): the output clipped, the gradient masked where it is zero.
            for (y, dy) in y.iter_mut().zip(&mut dy) {
                *dy = if *y > 0.0 { *dy } else { 0.0 };
                *y = y.max(0.0);
            }
        }
        let (_, dx, dgamma, dbeta) = naive(&x, &gamma, &beta, &dy, shape, 1e-5);
        let xt = tensor(x, vec![n, c, l]);
        let (gt, bt) = (tensor(gamma, vec![c]), tensor(beta, vec![c]));
        let forward = batch_norm_train_forward(&xt, &gt, &bt, 1e-5, activation);
        let relu_output = (activation == Activation::Relu).then_some(&forward.output);
        let grads = batch_norm_train_backward(
            &xt,
            (&forward.mean, &forward.inv_std, &gt),
            tensor(pseudo_random(n * c * l, 2), vec![n, c, l]),
            relu_output,
        );
        let close = |ours: &FlexTensor, reference: &[f64], what: &str| {
            assert_eq!(ours.storage::<f64>().len(), reference.len());
            for (a, b) in ours.storage::<f64>().iter().zip(reference) {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{what} {shape:?} {activation:?}: {a} vs {b}"
                );
            }
        };
        close(&forward.output, &y, "output");
        close(&grads.input, &dx, "input grad");
        close(&grads.gamma, &dgamma, "gamma grad");
        close(&grads.beta, &dbeta, "beta grad");
    }

    #[test]
    fn matches_naive_sums() {
        for activation in [Activation::Identity, Activation::Relu] {
            check((1, 3, 5), activation);
            check((4, 3, 7), activation);
            check((2, 5, 1), activation);
            // Rows of whole runs of vectors, of a run and one vector, of a run, three vectors
            // and a tail.
            check((3, 2, 64), activation);
            check((3, 2, 40), activation);
            check((3, 2, 59), activation);
            // Large enough for the parallel passes.
            check((16, 8, 17 * 17), activation);
        }
    }

    #[test]
    fn a_shared_output_gradient_is_left_as_it_was() {
        let (x, g) = (
            tensor(pseudo_random(60, 5), vec![4, 3, 5]),
            tensor(vec![1.0; 3], vec![3]),
        );
        let forward = batch_norm_train_forward(&x, &g, &g, 1e-5, Activation::Relu);
        let dy = tensor(pseudo_random(60, 6), vec![4, 3, 5]);
        let saved = (&forward.mean, &forward.inv_std, &g);
        let grads = batch_norm_train_backward(&x, saved, dy.clone(), Some(&forward.output));
        assert_eq!(dy.storage::<f64>(), pseudo_random(60, 6).as_slice());
        let owned = batch_norm_train_backward(&x, saved, dy, Some(&forward.output));
        assert_eq!(grads.input.storage::<f64>(), owned.input.storage::<f64>());
    }
}
