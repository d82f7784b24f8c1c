//! # sskd-bench
//!
//! The workloads the benchmarks time, kept out of the library: [`loss_workloads`] (forward and
//! backward of each loss at the paper's shapes, for `benches/losses.rs` and the `loss_bench`
//! example) and [`step_bench`] (training steps of each stage and pair, for the `gpu_bench`
//! example). Not published.
#![warn(missing_docs)]

pub mod loss_workloads;
pub mod step_bench;
