//! The sizes of one 2D convolution and the float types the convolution kernels run in, shared
//! by the im2col/GEMM kernels ([`conv2d_kernels`](crate::conv2d_kernels)), the depthwise and
//! the pointwise ones.

use burn_backend::ops::conv::calculate_conv_output_size;
use burn_backend::ops::ConvOptions;

/// A float type the kernels run in (`f32`, `f64`).
pub(crate) trait ConvFloat:
    num_traits::Float + bytemuck::Pod + Send + Sync + core::iter::Sum + 'static
{
}
impl ConvFloat for f32 {}
impl ConvFloat for f64 {}

fn is_f32<T: 'static>() -> bool {
    core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()
}

/// The weight of [`Conv2dGeometry::transposed`]: `w' [C, O, KH, KW]` with
/// `w'[c, o, kh, kw] = w[o, c, KH − 1 − kh, KW − 1 − kw]` (one group).
pub(crate) fn flipped_weight<T: ConvFloat>(geo: &Conv2dGeometry, weight: &[T]) -> Vec<T> {
    use rayon::prelude::*;
    let taps = geo.k_h * geo.k_w;
    let mut flipped = crate::parallel_chunks::zeroed_vec(weight.len());
    flipped
        .par_chunks_mut(geo.c_out * taps)
        .enumerate()
        .for_each(|(c, row)| {
            for (o, to) in row.chunks_exact_mut(taps).enumerate() {
                let from = &weight[(o * geo.c_in + c) * taps..][..taps];
                to.iter_mut()
                    .zip(from.iter().rev())
                    .for_each(|(t, &f)| *t = f);
            }
        });
    flipped
}

/// `values` as `f32`s when `T` is `f32`.
pub(crate) fn as_f32<T: ConvFloat>(values: &[T]) -> Option<&[f32]> {
    is_f32::<T>().then(|| bytemuck::cast_slice(values))
}

/// `values` as `f32`s when `T` is `f32`.
pub(crate) fn as_f32_mut<T: ConvFloat>(values: &mut [T]) -> Option<&mut [f32]> {
    is_f32::<T>().then(|| bytemuck::cast_slice_mut(values))
}

/// `values` as a `Vec<T>` when `T` is `f32`.
pub(crate) fn from_f32<T: ConvFloat>(values: Vec<f32>) -> Option<Vec<T>> {
    let values: Box<dyn core::any::Any> = Box::new(values);
    values.downcast::<Vec<T>>().ok().map(|values| *values)
}

/// Sizes of one 2D convolution: input `[batch, c_in, in_h, in_w]`, weight
/// `[c_out, c_in / groups, k_h, k_w]`, output `[batch, c_out, out_h, out_w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv2dGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub c_out: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub groups: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub out_h: usize,
    pub out_w: usize,
}

impl Conv2dGeometry {
    /// The geometry of `conv2d(x, weight, options)` from the input and weight shapes.
    ///
    /// # Panics
    /// If the shapes are not 4-dimensional or do not agree with `options.groups`.
    pub fn new(x_shape: &[usize], weight_shape: &[usize], options: &ConvOptions<2>) -> Self {
        assert!(
            x_shape.len() == 4 && weight_shape.len() == 4,
            "conv2d: input {x_shape:?} and weight {weight_shape:?} must be 4-dimensional"
        );
        let groups = options.groups;
        assert!(
            groups >= 1
                && x_shape[1] == weight_shape[1] * groups
                && weight_shape[0].is_multiple_of(groups),
            "conv2d: input channels {} and weight {weight_shape:?} disagree with {groups} groups",
            x_shape[1]
        );
        let [k_h, k_w] = [weight_shape[2], weight_shape[3]];
        let out = |axis: usize, k: usize, size: usize| {
            calculate_conv_output_size(
                k,
                options.stride[axis],
                options.padding[axis],
                options.dilation[axis],
                size,
            )
        };
        Self {
            batch: x_shape[0],
            c_in: x_shape[1],
            in_h: x_shape[2],
            in_w: x_shape[3],
            c_out: weight_shape[0],
            k_h,
            k_w,
            groups,
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
            out_h: out(0, k_h, x_shape[2]),
            out_w: out(1, k_w, x_shape[3]),
        }
    }

    /// Input channels per group.
    pub fn in_per_group(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels per group.
    pub fn out_per_group(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of one group's im2col matrix (the GEMM's inner dimension): `C/g · KH · KW`.
    pub fn col_rows(&self) -> usize {
        self.in_per_group() * self.k_h * self.k_w
    }
    /// `in_h · in_w`.
    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }
    /// `out_h · out_w`, the columns of the im2col matrix.
    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
    /// Elements of one image of the input.
    pub fn in_image(&self) -> usize {
        self.c_in * self.in_plane()
    }
    /// Elements of one image of the output.
    pub fn out_image(&self) -> usize {
        self.c_out * self.out_plane()
    }
    /// One input channel per group (depthwise, with any channel multiplier).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.in_per_group() == 1
    }
    /// Valid output rows `[start, end)` for kernel row `kh`.
    pub(crate) fn rows_for_tap(&self, kh: usize) -> (usize, usize) {
        valid_out_range(
            kh,
            self.dilation[0],
            self.padding[0],
            self.stride[0],
            self.in_h,
            self.out_h,
        )
    }
    /// Valid output columns `[start, end)` for kernel column `kw`.
    pub(crate) fn cols_for_tap(&self, kw: usize) -> (usize, usize) {
        valid_out_range(
            kw,
            self.dilation[1],
            self.padding[1],
            self.stride[1],
            self.in_w,
            self.out_w,
        )
    }
    /// Input row read by output row `oh` at kernel row `kh` (must be in the valid range).
    pub(crate) fn in_row(&self, oh: usize, kh: usize) -> usize {
        oh * self.stride[0] + kh * self.dilation[0] - self.padding[0]
    }
    /// Input column read by output column `ow` at kernel column `kw` (in the valid range).
    pub(crate) fn in_col(&self, ow: usize, kw: usize) -> usize {
        ow * self.stride[1] + kw * self.dilation[1] - self.padding[1]
    }
    /// Images whose im2col matrices sit side by side in one GEMM: enough for
    /// [`MIN_GEMM_COLUMNS`] columns, but no more than an equal share of the batch per thread.
    pub fn images_per_chunk(&self) -> usize {
        let wanted = MIN_GEMM_COLUMNS.div_ceil(self.out_plane().max(1));
        let share = self.batch.div_ceil(thread_count());
        wanted.min(share).max(1)
    }
    /// Whether chunks of images run on separate threads (each with a serial GEMM) rather than
    /// one after the other with a parallel GEMM.
    pub(crate) fn chunks_in_parallel(&self) -> bool {
        self.batch.div_ceil(self.images_per_chunk()) >= thread_count()
    }
    /// GEMM parallelism for a product of `m × k` by `k × n`.
    pub(crate) fn gemm_parallelism(&self, m: usize, n: usize, k: usize) -> gemm::Parallelism {
        if !self.chunks_in_parallel() && m * n * k >= 64 * 64 * 64 {
            return gemm::Parallelism::Rayon(0);
        }
        gemm::Parallelism::None
    }
    /// Whether the input gradient is a plain convolution of `dy` ([`Self::transposed`] with
    /// [`flipped_weight`]): stride 1, one group, and a padding within the kernel's reach.
    pub(crate) fn input_grad_is_a_convolution(&self) -> bool {
        self.stride == [1, 1]
            && self.groups == 1
            && self.padding[0] <= self.dilation[0] * (self.k_h - 1)
            && self.padding[1] <= self.dilation[1] * (self.k_w - 1)
    }
    /// The convolution whose forward pass is this one's input gradient, where
    /// [`Self::input_grad_is_a_convolution`]: `dy` as its input, the input channels as its
    /// output channels, padded by `dilation · (K − 1) − pad`.
    pub(crate) fn transposed(&self) -> Conv2dGeometry {
        Conv2dGeometry {
            c_in: self.c_out,
            in_h: self.out_h,
            in_w: self.out_w,
            c_out: self.c_in,
            padding: [
                self.dilation[0] * (self.k_h - 1) - self.padding[0],
                self.dilation[1] * (self.k_w - 1) - self.padding[1],
            ],
            out_h: self.in_h,
            out_w: self.in_w,
            ..*self
        }
    }
}

/// The output positions `[start, end)` along one axis whose input position
/// `o · stride + tap · dilation − pad` lies inside `[0, in_size)`, for kernel tap `tap`.
fn valid_out_range(
    tap: usize,
    dilation: usize,
    pad: usize,
    stride: usize,
    in_size: usize,
    out_size: usize,
) -> (usize, usize) {
    let offset = tap * dilation;
    // The first o with o·stride + offset ≥ pad; the first with o·stride + offset ≥ in_size + pad.
    let first_at_least = |bound: usize| match bound.checked_sub(offset) {
        Some(gap) => gap.div_ceil(stride),
        None => 0,
    };
    let end = first_at_least(in_size + pad).min(out_size);
    (first_at_least(pad).min(end), end)
}

/// The GEMM column count (images × OH·OW) a chunk of images aims for: per-image products of
/// the deep layers (8×8 maps: 64 columns) are too thin for the GEMM micro-kernels.
const MIN_GEMM_COLUMNS: usize = 512;

/// Threads the kernels may use.
pub(crate) fn thread_count() -> usize {
    rayon::current_num_threads()
}
