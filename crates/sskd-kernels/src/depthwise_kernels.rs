//! Depthwise convolutions (one input channel per group, any channel multiplier, stride and
//! dilation), the 3×3 layers of MobileNetV2 and ShuffleNetV1/V2: forward pass, input gradient
//! and weight gradient as whole-plane vector loops.
//!
//! Each input plane is zero-padded to `HP × WP` (`HP = H + 2·pad_h`, `WP = W + 2·pad_w`) and
//! split into `s_h · s_w` *phases* by the stride (phase `(a, b)` holds the padded pixels
//! `(s_h·i + a, s_w·j + b)`), each `HQ × WQ` (`HQ = ⌈HP / s_h⌉`, `WQ = ⌈WP / s_w⌉`; at stride 1
//! the padded plane itself). Output-shaped planes are held in *wide rows*, `WQ` apart instead
//! of `OW`. Then output pixel `(oh, ow)` reads, at kernel tap `(kh, kw)`, phase
//! `(kh·d_h mod s_h, kw·d_w mod s_w)` at `(oh + ⌊kh·d_h / s_h⌋, ow + ⌊kw·d_w / s_w⌋)`: one
//! constant offset per tap for every pixel, so the convolution is `K²` long multiply-adds
//! over whole planes (`out[f] += w[t] · xp[f + offset(t)]`) with no per-row range checks. The
//! `WQ − OW` spare columns past each output row compute values that are never read (forward)
//! or hold zeros (gradients); the loops run over `(OH − 1) · WQ + OW` elements (the last row
//! without its spare columns, which keeps the last tap inside its phase).
//!
//! Results depend only on the shapes, never on the thread count: planes are independent, and
//! each filter's weight gradient sums the batch in order.

use crate::conv_geometry::{Conv2dGeometry, ConvFloat};
use crate::parallel_chunks::vec_by_chunks_with;

/// Whether these kernels compute `geo`: any depthwise convolution with an output.
pub(crate) fn applies(geo: &Conv2dGeometry) -> bool {
    geo.is_depthwise() && geo.out_plane() > 0
}

/// Sizes of the phase and wide-row layouts of one plane.
struct Wide {
    /// Phase width `WQ`: the row stride of every phase and wide plane.
    row: usize,
    /// Elements of one phase, `HQ · WQ`.
    phase_len: usize,
    /// Elements of all phases of the padded input plane.
    padded_len: usize,
    /// Elements the tap loops run over: `(OH − 1) · WQ + OW`.
    span: usize,
    /// Offset of each tap `(kh, kw)` (row-major) in the phases.
    tap_offsets: Vec<usize>,
}

impl Wide {
    fn new(geo: &Conv2dGeometry) -> Self {
        let [s_h, s_w] = geo.stride;
        let [d_h, d_w] = geo.dilation;
        let row = (geo.in_w + 2 * geo.padding[1]).div_ceil(s_w);
        let phase_len = (geo.in_h + 2 * geo.padding[0]).div_ceil(s_h) * row;
        let tap_offsets = (0..geo.k_h)
            .flat_map(|kh| (0..geo.k_w).map(move |kw| (kh * d_h, kw * d_w)))
            .map(|(y, x)| ((y % s_h) * s_w + x % s_w) * phase_len + (y / s_h) * row + x / s_w)
            .collect();
        Self {
            row,
            phase_len,
            padded_len: s_h * s_w * phase_len,
            span: (geo.out_h - 1) * row + geo.out_w,
            tap_offsets,
        }
    }

    /// Where padded pixel `(y, x)` sits in the phases.
    #[inline]
    fn phase_index(&self, geo: &Conv2dGeometry, y: usize, x: usize) -> usize {
        let [s_h, s_w] = geo.stride;
        ((y % s_h) * s_w + x % s_w) * self.phase_len + (y / s_h) * self.row + x / s_w
    }

    /// Copies an input plane (`[H, W]`) into the phases of its padded plane (`padded`). Only
    /// the input's pixels are written: the padding's places keep what they hold, zeros in a
    /// scratch plane that was zero-filled when made and that only this function writes (every
    /// call of one convolution writes the same places).
    fn pad_input<T: ConvFloat>(&self, geo: &Conv2dGeometry, plane: &[T], padded: &mut [T]) {
        let stride = geo.stride[1];
        for (h, src) in plane.chunks_exact(geo.in_w).enumerate() {
            self.for_each_column_phase(geo, h, |start, first_w| {
                if stride == 1 {
                    padded[start..][..geo.in_w].copy_from_slice(src);
                    return;
                }
                let to = padded[start..].iter_mut();
                let from = src[first_w..].iter().step_by(stride);
                to.zip(from).for_each(|(to, &value)| *to = value);
            });
        }
    }

    /// Copies the interior of a padded plane held in phases (`padded`) into an input-shaped
    /// plane (`[H, W]`): the adjoint of [`Wide::pad_input`].
    fn crop_input<T: ConvFloat>(&self, geo: &Conv2dGeometry, padded: &[T], plane: &mut [T]) {
        for (h, dst) in plane.chunks_exact_mut(geo.in_w).enumerate() {
            self.for_each_column_phase(geo, h, |start, first_w| {
                let to = dst[first_w..].iter_mut().step_by(geo.stride[1]);
                to.zip(&padded[start..])
                    .for_each(|(to, &value)| *to = value);
            });
        }
    }

    /// For input row `h`, each column phase's run: `visit(start, first_w)` with the index in the
    /// phases of the first input column `first_w` (`w = first_w + s_w·j` sits at `start + j`,
    /// for the columns `w < W`).
    fn for_each_column_phase(
        &self,
        geo: &Conv2dGeometry,
        h: usize,
        mut visit: impl FnMut(usize, usize),
    ) {
        let [pad_h, pad_w] = geo.padding;
        for first_w in 0..geo.stride[1].min(geo.in_w) {
            visit(self.phase_index(geo, h + pad_h, first_w + pad_w), first_w);
        }
    }

    /// Copies an output-shaped plane (`[OH, OW]`) into wide rows (`wide`, spare columns left
    /// as they are).
    fn widen_output<T: ConvFloat>(&self, geo: &Conv2dGeometry, plane: &[T], wide: &mut [T]) {
        for (oh, src) in plane.chunks_exact(geo.out_w).enumerate() {
            wide[oh * self.row..][..geo.out_w].copy_from_slice(src);
        }
    }
}

/// `dst[i] += scale · src[i]`.
#[inline]
fn axpy<T: ConvFloat>(dst: &mut [T], scale: T, src: &[T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = *d + scale * s;
    }
}

/// `Σ a[i] · b[i]` in eight interleaved partial sums (so the loop vectorises), added in a fixed
/// order.
#[inline]
fn dot<T: ConvFloat>(a: &[T], b: &[T]) -> T {
    const LANES: usize = 8;
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut lanes = [T::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: T = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] = lanes[lane] + x[lane] * y[lane];
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

/// A vector of `len` elements written by `work(index, chunk, first, second)` over its
/// `chunk_len`-sized chunks (each zero-filled first) in parallel, each worker with two scratch
/// planes of `scratch_len` elements, zero-filled when made, that it keeps across its chunks
/// ([`Wide::pad_input`] leaves the padding of the first as it finds it).
fn planes_by<T: ConvFloat>(
    len: usize,
    chunk_len: usize,
    scratch_len: usize,
    work: impl Fn(usize, &mut [T], &mut [T], &mut [T]) + Sync + Send,
) -> Vec<T> {
    vec_by_chunks_with(
        len,
        chunk_len,
        true,
        || (vec![T::zero(); scratch_len], vec![T::zero(); scratch_len]),
        |(first, second), index, chunk| work(index, chunk, first, second),
    )
}

/// The forward pass: `out [B, O, OH, OW]` from `x [B, C, H, W]`, `weight [O, 1, KH, KW]` and
/// an optional bias `[O]`.
pub(crate) fn forward<T: ConvFloat>(
    geo: &Conv2dGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let wide = Wide::new(geo);
    let (taps, multiplier) = (geo.k_h * geo.k_w, geo.out_per_group());
    planes_by(
        geo.batch * geo.out_image(),
        geo.out_plane(),
        wide.padded_len,
        |index, out_plane, padded, acc| {
            let (b, o) = (index / geo.c_out, index % geo.c_out);
            let c = o / multiplier;
            let x_plane = &x[(b * geo.c_in + c) * geo.in_plane()..][..geo.in_plane()];
            wide.pad_input(geo, x_plane, padded);
            let acc = &mut acc[..wide.span];
            acc.fill(bias.map_or(T::zero(), |bias| bias[o]));
            for (&w, &offset) in weight[o * taps..][..taps].iter().zip(&wide.tap_offsets) {
                axpy(acc, w, &padded[offset..offset + wide.span]);
            }
            for (oh, dst) in out_plane.chunks_exact_mut(geo.out_w).enumerate() {
                dst.copy_from_slice(&acc[oh * wide.row..][..geo.out_w]);
            }
        },
    )
}

/// The input gradient: `dx [B, C, H, W]` from `weight [O, 1, KH, KW]` and `dy [B, O, OH, OW]`.
pub(crate) fn input_grad<T: ConvFloat>(geo: &Conv2dGeometry, weight: &[T], dy: &[T]) -> Vec<T> {
    let wide = Wide::new(geo);
    let (taps, multiplier) = (geo.k_h * geo.k_w, geo.out_per_group());
    planes_by(
        geo.batch * geo.in_image(),
        geo.in_plane(),
        wide.padded_len,
        |index, dx_plane, dx_padded, dy_wide| {
            let (b, c) = (index / geo.c_in, index % geo.c_in);
            dx_padded.fill(T::zero());
            // Spare columns of the wide output plane stay zero: only the OW first of each row
            // are ever written.
            dy_wide.fill(T::zero());
            for o in c * multiplier..(c + 1) * multiplier {
                let dy_plane = &dy[(b * geo.c_out + o) * geo.out_plane()..][..geo.out_plane()];
                wide.widen_output(geo, dy_plane, dy_wide);
                let source = &dy_wide[..wide.span];
                for (&w, &offset) in weight[o * taps..][..taps].iter().zip(&wide.tap_offsets) {
                    axpy(&mut dx_padded[offset..offset + wide.span], w, source);
                }
            }
            wide.crop_input(geo, dx_padded, dx_plane);
        },
    )
}

/// The weight gradient: `dw [O, 1, KH, KW]` from `x [B, C, H, W]` and `dy [B, O, OH, OW]`, the
/// batch summed in order.
pub(crate) fn weight_grad<T: ConvFloat>(geo: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let wide = Wide::new(geo);
    let (taps, multiplier) = (geo.k_h * geo.k_w, geo.out_per_group());
    planes_by(
        geo.c_out * taps,
        taps,
        wide.padded_len,
        |o, dw_taps, padded, dy_wide| {
            let c = o / multiplier;
            dy_wide.fill(T::zero());
            for b in 0..geo.batch {
                let x_plane = &x[(b * geo.c_in + c) * geo.in_plane()..][..geo.in_plane()];
                let dy_plane = &dy[(b * geo.c_out + o) * geo.out_plane()..][..geo.out_plane()];
                wide.pad_input(geo, x_plane, padded);
                wide.widen_output(geo, dy_plane, dy_wide);
                let grad = &dy_wide[..wide.span];
                for (d, &offset) in dw_taps.iter_mut().zip(&wide.tap_offsets) {
                    *d = *d + dot(grad, &padded[offset..offset + wide.span]);
                }
            }
        },
    )
}
