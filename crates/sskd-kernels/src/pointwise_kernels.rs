//! 1×1 convolutions at stride 1 without padding (any group count): the pointwise layers of
//! MobileNetV2, ShuffleNetV1/V2, the projection shortcuts at stride 1 and the regressors of
//! feature distillation. In NCHW one image's group `g` is already the GEMM operand
//! `x_g [C/g, H·W]`, and its output rows `[O/g, H·W]` sit together in the output image, so
//! every product runs straight on the tensors, with no im2col copy, no gather and no scatter:
//!
//! - forward: `out_g = W_g [O/g, C/g] · x_g`, per image;
//! - input gradient: `dx_g = W_gᵀ · dy_g`, per image;
//! - weight gradient: `dW_g = Σ_images dy_g · x_gᵀ`, each thread summing one fixed slice of
//!   the batch and the partial sums added in a fixed order, as in
//!   [`conv2d_kernels`](crate::conv2d_kernels).
//!
//! Maps smaller than [`MIN_PLANE`] pixels (a deep layer's 4×4) make per-image products too thin
//! for the GEMM micro-kernels; those keep the chunked im2col path.

use crate::conv_geometry::{thread_count, Conv2dGeometry, ConvFloat};
use crate::gemm_product::{gemm, sum_partials, MatRef};
use crate::parallel_chunks::vec_by_chunks;

/// The smallest `H·W` for which per-image products beat gathering several images into one.
const MIN_PLANE: usize = 64;

/// Whether these kernels compute `geo`.
pub(crate) fn applies(geo: &Conv2dGeometry) -> bool {
    geo.k_h == 1
        && geo.k_w == 1
        && geo.stride == [1, 1]
        && geo.padding == [0, 0]
        && geo.out_plane() >= MIN_PLANE
}

/// A batch of `[C, H, W]` images as these kernels read them: image `b` is
/// `data[b · stride ..][..len]`, so a channel slice of a contiguous tensor (ShuffleNetV2's
/// branch) is read where it lies, without a contiguous copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Images<'a, T> {
    data: &'a [T],
    stride: usize,
    len: usize,
}

impl<'a, T> Images<'a, T> {
    /// The images of a contiguous `[B, C, H, W]` tensor, `len = C·H·W` elements each.
    pub(crate) fn contiguous(data: &'a [T], len: usize) -> Self {
        Self {
            data,
            stride: len,
            len,
        }
    }

    /// `batch` images of `len` elements, `stride` apart from the start of `data`.
    ///
    /// # Panics
    /// If `stride < len` or `data` does not hold them.
    pub(crate) fn strided(data: &'a [T], batch: usize, stride: usize, len: usize) -> Self {
        assert!(
            stride >= len && (batch == 0 || (batch - 1) * stride + len <= data.len()),
            "pointwise conv2d: {batch} images of {len} elements, {stride} apart, in {}",
            data.len()
        );
        Self { data, stride, len }
    }

    /// Image `b`.
    fn image(&self, b: usize) -> &'a [T] {
        &self.data[b * self.stride..][..self.len]
    }
}

/// Whether images run on separate threads, each product serial (at least as many images as
/// threads), and the parallelism of each product.
fn image_parallelism(batch: usize) -> (bool, gemm::Parallelism) {
    match batch >= thread_count() {
        true => (true, gemm::Parallelism::None),
        false => (false, gemm::Parallelism::Rayon(0)),
    }
}

/// The forward pass: `out [B, O, H, W]` from `x [B, C, H, W]`, `weight [O, C/g, 1, 1]` and an
/// optional bias `[O]`.
pub(crate) fn forward<T: ConvFloat>(
    geo: &Conv2dGeometry,
    x: Images<'_, T>,
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (m, k, plane) = (geo.out_per_group(), geo.in_per_group(), geo.out_plane());
    let (parallel, parallelism) = image_parallelism(geo.batch);
    let out_len = geo.batch * geo.out_image();
    vec_by_chunks(out_len, geo.out_image(), parallel, |b, out_image| {
        let x_image = x.image(b);
        for g in 0..geo.groups {
            gemm(
                &mut out_image[g * m * plane..],
                (m, plane, k),
                MatRef::row_major(&weight[g * m * k..], m, k),
                MatRef::row_major(&x_image[g * k * plane..], k, plane),
                false,
                parallelism,
            );
        }
        if let Some(bias) = bias {
            for (channel, &b) in out_image.chunks_exact_mut(plane).zip(bias) {
                channel.iter_mut().for_each(|v| *v = *v + b);
            }
        }
    })
}

/// The input gradient: `dx [B, C, H, W]` from `weight [O, C/g, 1, 1]` and `dy [B, O, H, W]`.
pub(crate) fn input_grad<T: ConvFloat>(geo: &Conv2dGeometry, weight: &[T], dy: &[T]) -> Vec<T> {
    let (m, k, plane) = (geo.in_per_group(), geo.out_per_group(), geo.out_plane());
    let (parallel, parallelism) = image_parallelism(geo.batch);
    let dx_len = geo.batch * geo.in_image();
    vec_by_chunks(dx_len, geo.in_image(), parallel, |b, dx_image| {
        let dy_image = &dy[b * geo.out_image()..][..geo.out_image()];
        for g in 0..geo.groups {
            gemm(
                &mut dx_image[g * m * plane..],
                (m, plane, k),
                MatRef::row_major(&weight[g * k * m..], k, m).t(),
                MatRef::row_major(&dy_image[g * k * plane..], k, plane),
                false,
                parallelism,
            );
        }
    })
}

/// The weight gradient: `dw [O, C/g, 1, 1]` from `x [B, C, H, W]` and `dy [B, O, H, W]`.
pub(crate) fn weight_grad<T: ConvFloat>(
    geo: &Conv2dGeometry,
    x: Images<'_, T>,
    dy: &[T],
) -> Vec<T> {
    let (m, n, plane) = (geo.out_per_group(), geo.in_per_group(), geo.out_plane());
    let weight_len = geo.c_out * n;
    let slices = thread_count().min(geo.batch).max(1);
    let parallelism = match slices {
        1 => gemm::Parallelism::Rayon(0),
        _ => gemm::Parallelism::None,
    };
    // Slice `s` sums images `s·B/S .. (s+1)·B/S` into partial sum `s`.
    let partials = vec_by_chunks(slices * weight_len, weight_len, slices > 1, |slice, dw| {
        let images = slice * geo.batch / slices..(slice + 1) * geo.batch / slices;
        for (step, b) in images.enumerate() {
            let x_image = x.image(b);
            let dy_image = &dy[b * geo.out_image()..][..geo.out_image()];
            for g in 0..geo.groups {
                gemm(
                    &mut dw[g * m * n..],
                    (m, n, plane),
                    MatRef::row_major(&dy_image[g * m * plane..], m, plane),
                    MatRef::row_major(&x_image[g * n * plane..], n, plane).t(),
                    step > 0,
                    parallelism,
                );
            }
        }
    });
    sum_partials(partials, weight_len)
}
