//! Criterion benchmarks of the CPU 2D convolution kernels at the model zoo's shapes: forward,
//! input gradient and weight gradient, sskd's kernels (`sskd_kernels::conv2d_kernels`)
//! against burn-flex 0.21.0's own path (`Flex`'s `ModuleOps`), in the
//! same run. The batch is 64 rows, the SSKD student step at batch 16 (4 rotations each).
//!
//! ```text
//! cargo bench --bench conv_kernels [-- FILTER]
//! ```
//! Benchmark ids are `conv2d/{forward,input_grad,weight_grad}/{sskd,burn_flex}/SHAPE`, and
//! `gemm/peak/1024`: a square product on all cores through burn-flex's matmul (gemm's
//! micro-kernels, as the convolutions use them), the machine's reachable GEMM rate that
//! `tools/conv_bench_table.py` divides each kernel's GFLOP/s by.

use burn::backend::Flex;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{Distribution, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sskd::kernels::conv2d_kernels;

/// One convolution of the zoo: `[batch, c_in, size, size]` by `[c_out, c_in / groups, k, k]`.
struct Shape {
    name: &'static str,
    batch: usize,
    c_in: usize,
    c_out: usize,
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
}

const fn conv(
    name: &'static str,
    (c_in, c_out, size): (usize, usize, usize),
    (kernel, stride, padding, groups): (usize, usize, usize, usize),
) -> Shape {
    Shape {
        name,
        batch: 64,
        c_in,
        c_out,
        size,
        kernel,
        stride,
        padding,
        groups,
    }
}

const SHAPES: &[Shape] = &[
    conv("wrn_stem_3x3_3to32_32px", (3, 32, 32), (3, 1, 1, 1)),
    conv("wrn_3x3_32to32_32px", (32, 32, 32), (3, 1, 1, 1)),
    conv("wrn_3x3_s2_32to64_32px", (32, 64, 32), (3, 2, 1, 1)),
    conv("wrn_1x1_s2_32to64_32px", (32, 64, 32), (1, 2, 0, 1)),
    conv("wrn_3x3_64to64_16px", (64, 64, 16), (3, 1, 1, 1)),
    conv("wrn_3x3_128to128_8px", (128, 128, 8), (3, 1, 1, 1)),
    conv("ft_3x3_128to64_8px", (128, 64, 8), (3, 1, 1, 1)),
    conv("ft_3x3_64to64_8px", (64, 64, 8), (3, 1, 1, 1)),
    conv("resnet8x4_3x3_64to64_32px", (64, 64, 32), (3, 1, 1, 1)),
    conv("resnet8x4_3x3_256to256_8px", (256, 256, 8), (3, 1, 1, 1)),
    conv("vgg13_3x3_128to128_16px", (128, 128, 16), (3, 1, 1, 1)),
    conv("vgg13_3x3_512to512_4px", (512, 512, 4), (3, 1, 1, 1)),
    conv("vgg13_3x3_512to512_2px", (512, 512, 2), (3, 1, 1, 1)),
    conv("mobilenetv2_1x1_16to96_16px", (16, 96, 16), (1, 1, 0, 1)),
    conv("mobilenetv2_dw3x3_96_16px", (96, 96, 16), (3, 1, 1, 96)),
    conv("mobilenetv2_dw3x3_s2_96_16px", (96, 96, 16), (3, 2, 1, 96)),
    conv("shufflev1_1x1_g3_240to60_16px", (240, 60, 16), (1, 1, 0, 3)),
];

struct Operands {
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
    options: ConvOptions<2>,
}

impl Operands {
    fn new(shape: &Shape) -> Self {
        let device = Default::default();
        let random = |dims: [usize; 4]| {
            Tensor::<Flex, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
                .into_primitive()
                .tensor()
        };
        let options = ConvOptions::new([shape.stride; 2], [shape.padding; 2], [1, 1], shape.groups);
        let x = random([shape.batch, shape.c_in, shape.size, shape.size]);
        let weight = random([
            shape.c_out,
            shape.c_in / shape.groups,
            shape.kernel,
            shape.kernel,
        ]);
        let out = (shape.size + 2 * shape.padding - shape.kernel) / shape.stride + 1;
        let output_grad = random([shape.batch, shape.c_out, out, out]);
        Self {
            x,
            weight,
            output_grad,
            options,
        }
    }

    fn forward(&self, sskd: bool) -> FloatTensor<Flex> {
        let (x, weight, options) = (self.x.clone(), self.weight.clone(), &self.options);
        match sskd {
            true => conv2d_kernels::conv2d(x, weight, None, options),
            false => Flex::conv2d(x, weight, None, options.clone()),
        }
    }

    fn input_grad(&self, sskd: bool) -> FloatTensor<Flex> {
        let (x, weight, dy) = (
            self.x.clone(),
            self.weight.clone(),
            self.output_grad.clone(),
        );
        match sskd {
            true => conv2d_kernels::conv2d_x_backward(x, weight, dy, &self.options),
            false => Flex::conv2d_x_backward(x, weight, dy, self.options.clone()),
        }
    }

    fn weight_grad(&self, sskd: bool) -> FloatTensor<Flex> {
        let (x, weight, dy) = (
            self.x.clone(),
            self.weight.clone(),
            self.output_grad.clone(),
        );
        match sskd {
            true => conv2d_kernels::conv2d_weight_backward(x, weight, dy, &self.options),
            false => Flex::conv2d_weight_backward(x, weight, dy, self.options.clone()),
        }
    }
}

/// One operation, on sskd's kernels (`true`) or burn-flex's own path (`false`).
type Op = fn(&Operands, bool) -> FloatTensor<Flex>;

fn conv_kernels(c: &mut Criterion) {
    let ops: [(&str, Op); 3] = [
        ("forward", Operands::forward),
        ("input_grad", Operands::input_grad),
        ("weight_grad", Operands::weight_grad),
    ];
    for (op_name, op) in ops {
        let mut group = c.benchmark_group(format!("conv2d/{op_name}"));
        group.sample_size(10);
        for shape in SHAPES {
            let operands = Operands::new(shape);
            for (kernels, sskd) in [("sskd", true), ("burn_flex", false)] {
                group.bench_function(BenchmarkId::new(kernels, shape.name), |b| {
                    b.iter(|| op(&operands, sskd))
                });
            }
        }
        group.finish();
    }
}

/// The side of the square product that measures the machine's GEMM peak (as `PEAK_SIZE` in
/// `tools/bench_conv_torch.py`).
const GEMM_PEAK_SIZE: usize = 1024;

fn gemm_peak(c: &mut Criterion) {
    let device = Default::default();
    let square =
        || Tensor::<Flex, 2>::random([GEMM_PEAK_SIZE; 2], Distribution::Normal(0.0, 1.0), &device);
    let (a, b) = (square(), square());
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("peak", GEMM_PEAK_SIZE), |bench| {
        bench.iter(|| a.clone().matmul(b.clone()).into_primitive())
    });
    group.finish();
}

criterion_group!(benches, conv_kernels, gemm_peak);
criterion_main!(benches);
