//! The unit vectors between every pair of rows, `u[i, j] = (x_j − x_i) / max(‖x_j − x_i‖, eps)`,
//! and their gradient, on burn-flex's tensors in one pass each (anchor rows on all cores).
//!
//! RKD's angle term (`distiller_zoo/RKD.py`) builds them as `F.normalize(t.unsqueeze(0) −
//! t.unsqueeze(1), p=2, dim=2)`: `[b, b, d]` tensors made by a broadcast subtraction, a norm, a
//! clamp and a division, each a pass of its own — and on burn-flex 0.21 each pass, and each of
//! their gradients, runs on one thread (72 % of the RKD loss's CPU samples were that serial
//! chain, docs/losses.md). Here the forward pass writes `u` and the norms in one pass, and the
//! backward pass turns `ū` into `x̄` in two: the gradient of each difference, then per row `m`
//! `x̄_m = Σ_i d̄[i, m] − Σ_j d̄[m, j]` in a fixed order (the result does not depend on the
//! thread count). `f32` and `f64` only ([`supports`]).
//!
//! The arithmetic is PyTorch's: the difference, its norm `sqrt(Σ d²)` clamped at `eps`, then a
//! division; the gradient of a clamped norm is zero, so a zero difference (a row paired with
//! itself, or two equal rows) passes `ū / eps` on, as PyTorch's `F.normalize` does.

use burn_backend::{DType, Element};
use burn_flex::FlexTensor;

use crate::conv_geometry::ConvFloat;
use crate::flex_storage::{contiguous_as, tensor_from};
use crate::parallel_chunks::{for_each_chunk, vec_by_chunks, zeroed_vec, PARALLEL_ELEMENTS};

/// Whether the kernels of this module handle tensors of `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// `[rows, columns]` of a rank-2 tensor.
fn sizes(x: &FlexTensor) -> [usize; 2] {
    let dims = x.layout().shape().to_vec();
    assert_eq!(
        dims.len(),
        2,
        "unit differences: needs [rows, columns], got {dims:?}"
    );
    [dims[0], dims[1]]
}

/// `[rows, rows, columns]` of the units.
fn units_sizes(units: &FlexTensor) -> [usize; 3] {
    let dims = units.layout().shape().to_vec();
    assert!(
        dims.len() == 3 && dims[0] == dims[1],
        "unit differences: units must be [rows, rows, columns], got {dims:?}"
    );
    [dims[0], dims[1], dims[2]]
}

fn values<T: ConvFloat + Element>(tensor: &FlexTensor) -> FlexTensor {
    contiguous_as::<T>(tensor, "unit differences")
}

/// Whether a pass over `elements` outputs is worth rayon's threads.
fn in_parallel(elements: usize) -> bool {
    elements >= PARALLEL_ELEMENTS
}

/// The unit differences of `x`'s rows and the clamped norms they were divided by.
fn forward_typed<T: ConvFloat + Element>(x: &FlexTensor, eps: f64) -> [FlexTensor; 2] {
    let [rows, columns] = sizes(x);
    let x = values::<T>(x);
    let data = x.storage::<T>();
    let eps = T::from(eps).expect("eps fits the float type");
    let mut units = zeroed_vec::<T>(rows * rows * columns);
    let mut norms = zeroed_vec::<T>(rows * rows);
    let anchor_block = rows * columns;
    if anchor_block > 0 {
        let parallel = in_parallel(units.len());
        // Each anchor row `i` writes its block of units; its norms are kept beside them.
        let mut blocks: Vec<(&mut [T], &mut [T])> = units
            .chunks_mut(anchor_block)
            .zip(norms.chunks_mut(rows))
            .collect();
        for_each_chunk(&mut blocks, 1, parallel, |i, block| {
            let (units_i, norms_i) = &mut block[0];
            let anchor = &data[i * columns..][..columns];
            for (j, unit) in units_i.chunks_exact_mut(columns).enumerate() {
                let other = &data[j * columns..][..columns];
                let mut squares = T::zero();
                for ((u, &o), &a) in unit.iter_mut().zip(other).zip(anchor) {
                    *u = o - a;
                    squares = squares + *u * *u;
                }
                let norm = squares.sqrt().max(eps);
                unit.iter_mut().for_each(|u| *u = *u / norm);
                norms_i[j] = norm;
            }
        });
    }
    [
        tensor_from(units, vec![rows, rows, columns]),
        tensor_from(norms, vec![rows, rows]),
    ]
}

/// `x̄` from the units, their norms and `ū`.
fn backward_typed<T: ConvFloat + Element>(
    units: &FlexTensor,
    norms: &FlexTensor,
    units_grad: &FlexTensor,
    eps: f64,
) -> FlexTensor {
    let [rows, _, columns] = units_sizes(units);
    let (units, norms, units_grad) = (
        values::<T>(units),
        values::<T>(norms),
        values::<T>(units_grad),
    );
    let (units, norms, units_grad) = (
        units.storage::<T>(),
        norms.storage::<T>(),
        units_grad.storage::<T>(),
    );
    assert_eq!(
        units_grad.len(),
        units.len(),
        "unit differences: gradient of another shape"
    );
    let eps = T::from(eps).expect("eps fits the float type");
    let parallel = in_parallel(units.len());
    // d̄[i, j] = (ū − u·⟨u, ū⟩) / n, or ū / eps where the norm was clamped.
    let difference_grads = vec_by_chunks(units.len(), columns, parallel, |pair, grad| {
        let unit = &units[pair * columns..][..columns];
        let unit_grad = &units_grad[pair * columns..][..columns];
        let norm = norms[pair];
        if norm > eps {
            let along: T = unit.iter().zip(unit_grad).map(|(&u, &g)| u * g).sum();
            for ((d, &u), &g) in grad.iter_mut().zip(unit).zip(unit_grad) {
                *d = (g - u * along) / norm;
            }
        } else {
            for (d, &g) in grad.iter_mut().zip(unit_grad) {
                *d = g / norm;
            }
        }
    });
    // x̄_m = Σ_i d̄[i, m] − Σ_j d̄[m, j]: `x_m` is the far end of the first, the anchor of the
    // second.
    let input_grad = vec_by_chunks(rows * columns, columns, parallel, |m, grad: &mut [T]| {
        for i in 0..rows {
            let far_end = &difference_grads[(i * rows + m) * columns..][..columns];
            grad.iter_mut().zip(far_end).for_each(|(g, &d)| *g = *g + d);
        }
        for j in 0..rows {
            let anchor = &difference_grads[(m * rows + j) * columns..][..columns];
            grad.iter_mut().zip(anchor).for_each(|(g, &d)| *g = *g - d);
        }
    });
    tensor_from(input_grad, vec![rows, columns])
}

/// The unit vectors between every pair of rows of `x [rows, columns]`: `units [rows, rows,
/// columns]` with `units[i, j] = (x_j − x_i) / max(‖x_j − x_i‖, eps)`, and `norms [rows,
/// rows]` the clamped norms (what [`unit_differences_backward`] needs).
///
/// # Panics
/// If `x` is not rank 2, or not `f32` or `f64` ([`supports`]).
pub fn unit_differences(x: &FlexTensor, eps: f64) -> [FlexTensor; 2] {
    per_float!("unit differences", x.dtype(), forward_typed(x, eps))
}

/// The gradient of [`unit_differences`] with respect to `x [rows, columns]`, from its outputs
/// and the gradient of the units `[rows, rows, columns]`.
///
/// # Panics
/// As [`unit_differences`], or if the shapes do not match.
pub fn unit_differences_backward(
    units: &FlexTensor,
    norms: &FlexTensor,
    units_grad: &FlexTensor,
    eps: f64,
) -> FlexTensor {
    per_float!(
        "unit differences",
        units.dtype(),
        backward_typed(units, norms, units_grad, eps)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    use crate::test_values::spread as values;

    /// A gradient of the units, zero where a row is paired with itself, as in RKD (those angles
    /// are 0 on both sides): its `ū / eps` would enter `x̄` twice with opposite signs and leave
    /// only the rounding of two terms of ~1e12.
    fn units_grad_of([rows, columns]: [usize; 2], seed: usize) -> Vec<f64> {
        let mut grad = values(rows * rows * columns, seed);
        for i in 0..rows {
            grad[(i * rows + i) * columns..][..columns].fill(0.0);
        }
        grad
    }

    /// The differences `x_j − x_i` and their clamped norms, by definition.
    fn naive_differences(x: &[f64], [rows, columns]: [usize; 2]) -> (Vec<f64>, Vec<f64>) {
        let mut differences = vec![0.0; rows * rows * columns];
        let mut norms = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..rows {
                let d = &mut differences[(i * rows + j) * columns..][..columns];
                for (k, d) in d.iter_mut().enumerate() {
                    *d = x[j * columns + k] - x[i * columns + k];
                }
                norms[i * rows + j] = d.iter().map(|v| v * v).sum::<f64>().sqrt().max(EPS);
            }
        }
        (differences, norms)
    }

    fn naive_units(x: &[f64], shape: [usize; 2]) -> Vec<f64> {
        let (differences, norms) = naive_differences(x, shape);
        let columns = shape[1];
        let pairs = differences.chunks(columns).zip(norms);
        pairs
            .flat_map(|(d, n)| d.iter().map(move |v| v / n))
            .collect()
    }

    /// `x̄` of `Σ ū·u`, pair by pair in plain loops: `d̄ = ū / n − d·⟨d, ū⟩ / n³` (the second
    /// term only where the norm is not clamped), added to `x_j` and taken from `x_i`.
    fn naive_grad(x: &[f64], units_grad: &[f64], shape: [usize; 2]) -> Vec<f64> {
        let [rows, columns] = shape;
        let (differences, norms) = naive_differences(x, shape);
        let mut grad = vec![0.0; rows * columns];
        for i in 0..rows {
            for j in 0..rows {
                let pair = i * rows + j;
                let d = &differences[pair * columns..][..columns];
                let g = &units_grad[pair * columns..][..columns];
                let n = norms[pair];
                let along: f64 = d.iter().zip(g).map(|(a, b)| a * b).sum();
                for k in 0..columns {
                    let clamped = n <= EPS;
                    let radial = if clamped {
                        0.0
                    } else {
                        d[k] * along / n.powi(3)
                    };
                    let value = g[k] / n - radial;
                    grad[j * columns + k] += value;
                    grad[i * columns + k] -= value;
                }
            }
        }
        grad
    }

    fn assert_close(ours: &[f64], expected: &[f64], tolerance: f64, what: &str) {
        assert_eq!(ours.len(), expected.len(), "{what}");
        for (index, (a, b)) in ours.iter().zip(expected).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * (1.0 + b.abs()),
                "{what}[{index}]: {a} vs {b}"
            );
        }
    }

    /// The kernels' units and `x̄` for `x` and `ū`.
    fn ours(x: &[f64], units_grad: &[f64], shape: [usize; 2]) -> (Vec<f64>, Vec<f64>) {
        let [rows, columns] = shape;
        let [units, norms] = unit_differences(&tensor_from(x.to_vec(), shape.to_vec()), EPS);
        let units_grad = tensor_from(units_grad.to_vec(), vec![rows, rows, columns]);
        let grad = unit_differences_backward(&units, &norms, &units_grad, EPS);
        (
            units.storage::<f64>().to_vec(),
            grad.storage::<f64>().to_vec(),
        )
    }

    #[test]
    fn the_naive_gradient_is_the_derivative() {
        // Central differences of Σ ū·u where it is smooth (no two rows equal).
        let shape = [4, 3];
        let x = values(12, 1);
        let units_grad = units_grad_of(shape, 2);
        let loss = |x: &[f64]| -> f64 {
            let units = naive_units(x, shape);
            units.iter().zip(&units_grad).map(|(u, g)| u * g).sum()
        };
        let analytic = naive_grad(&x, &units_grad, shape);
        let step = 1e-6;
        for (index, &expected) in analytic.iter().enumerate() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[index] += step;
            down[index] -= step;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * step);
            assert!(
                (numeric - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
                "x̄[{index}]: {numeric} vs {expected}"
            );
        }
    }

    #[test]
    fn small_inputs_with_equal_rows_match_the_definitions() {
        let shape = [5, 3];
        let mut x = values(15, 3);
        // Rows 1 and 3 equal: their differences are zero both ways and pass ū / eps on.
        let row_one = x[3..6].to_vec();
        x[9..12].copy_from_slice(&row_one);
        let units_grad = units_grad_of([5, 3], 4);
        let (units, grad) = ours(&x, &units_grad, shape);
        assert_close(&units, &naive_units(&x, shape), 1e-15, "units");
        assert_close(&grad, &naive_grad(&x, &units_grad, shape), 1e-14, "x̄");
        assert!(grad.iter().any(|v| v.abs() > 1e6), "the ū / eps terms");
    }

    #[test]
    fn large_inputs_take_the_threads_and_match_the_definitions() {
        let shape = [40, 24];
        let x = values(40 * 24, 5);
        let units_grad = units_grad_of(shape, 6);
        assert!(in_parallel(units_grad.len()));
        let (units, grad) = ours(&x, &units_grad, shape);
        assert_close(&units, &naive_units(&x, shape), 1e-15, "units");
        assert_close(&grad, &naive_grad(&x, &units_grad, shape), 1e-12, "x̄");
    }
}
