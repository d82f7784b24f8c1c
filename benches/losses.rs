//! Criterion benchmarks of each loss's forward + backward on the CPU backend at the paper's
//! shapes (see `sskd_bench::loss_workloads`). Run with `cargo bench --bench losses`.

use burn::backend::{Autodiff, Flex};
use criterion::{criterion_group, criterion_main, Criterion};
use sskd_bench::loss_workloads::{workload_names, LossStep};

fn losses(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("loss_forward_backward");
    group.sample_size(10);
    for name in workload_names() {
        let step = LossStep::<Autodiff<Flex>>::new(&name, &device).expect("workload builds");
        group.bench_function(&name, |b| b.iter(|| step.step()));
    }
    group.finish();
}

criterion_group!(benches, losses);
criterion_main!(benches);
