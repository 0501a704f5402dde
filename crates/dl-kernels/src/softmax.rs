//! Softmax along the last axis with a one-pass backward, as a Burn backend extension.
//!
//! Burn's autodiff has no rule of its own for `softmax`: it records the backend-generic
//! decomposition (`max_dim`, `sub`, `exp`, `sum_dim`, `div`) and differentiates each of those,
//! about a dozen tensor operations and buffers per call. The Transformer's attention calls it
//! on `[B, heads, L, S]` scores in every block, so in a training step those small operations
//! cost more than the arithmetic.
//!
//! [`SoftmaxOps::softmax_last`] runs its own forward on Flex (max-shifted, as PyTorch's, with
//! the exponentials in SIMD registers where Flex calls the scalar `expf` per value) and, under
//! autodiff, keeps its output `y` for one backward pass over the rows:
//!
//! `dx = y ⊙ (dy − Σ_j dy_j · y_j)`
//!
//! which is PyTorch's `_softmax_backward_data`. Numerics: the forward is PyTorch's definition,
//! `exp` within 2 ulp (see `simd_math.rs`), the sum in f32 in index order; the backward sums each row in f32 in index order, as PyTorch's CPU kernel
//! does for rows this short; tests compare both with Burn's generic path and with finite
//! differences.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Tensor};

use crate::host::HostTensors;

/// Softmax along the last axis, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxOps: Backend {
    /// `softmax(x, x.rank() − 1)`.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether [`softmax_last`] has a native kernel for `dtype` tensors on `device` (Flex `f32`,
/// with or without autodiff).
pub fn has_softmax(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// `softmax(x, D − 1)` through [`SoftmaxOps::softmax_last`], or `None` when the device has no
/// native kernel (see [`has_softmax`]); the caller then uses Burn's `softmax`.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<2>::from_floats([[0.0, 0.0], [0.0, 2.0_f32.ln()]], &device);
/// let y = dl_kernels::softmax_last(&x).expect("flex has the kernel");
/// let y = y.into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(y[0], 0.5);
/// assert!((y[3] - 2.0 / 3.0).abs() < 1e-6);
/// ```
pub fn softmax_last<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    if !has_softmax(&x.device(), x.dtype()) {
        return None;
    }
    let out = <Dispatch as SoftmaxOps>::softmax_last(x.clone().into_dispatch());
    Some(Tensor::from_dispatch(out))
}

impl SoftmaxOps for Flex {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        let len = shape[shape.num_dims() - 1];
        if len == 0 {
            return x;
        }
        let y = forward_rows(&Self::host_values(&x), len);
        Self::from_host(y, shape)
    }
}

/// `softmax` of each row of `len` values: `exp(x − max) / Σ exp(x − max)`, the exponentials
/// in SIMD registers ([`crate::simd_math`]; Flex's softmax calls the scalar `expf` per value).
/// A `−∞` input gives exactly 0, as in PyTorch; a row holding NaN or `+∞`, or only `−∞`
/// (fully masked), is computed with the scalar `exp`, which gives PyTorch's NaN.
fn forward_rows(x: &[f32], len: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(len) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let start = y.len();
        if !max.is_finite() || row.iter().any(|v| v.is_nan()) {
            y.extend(row.iter().map(|v| (v - max).exp()));
        } else {
            y.extend(row.iter().map(|v| v - max));
            crate::simd_math::exp_in_place(&mut y[start..]);
            // exp clamps its input at −87: a masked (−∞) score must still weigh exactly 0.
            for (e, v) in y[start..].iter_mut().zip(row) {
                *e = if *v == f32::NEG_INFINITY { 0.0 } else { *e };
            }
        }
        let out = &mut y[start..];
        let inverse = 1.0 / out.iter().sum::<f32>();
        out.iter_mut().for_each(|e| *e *= inverse);
    }
    y
}

/// `dx = y ⊙ (dy − Σ dy ⊙ y)` row by row; `y` and `dy` are row-major with rows of `len`.
fn backward_rows(y: &[f32], mut grad: Vec<f32>, len: usize) -> Vec<f32> {
    for (g, y) in grad.chunks_exact_mut(len).zip(y.chunks_exact(len)) {
        let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
        for (g, y) in g.iter_mut().zip(y) {
            *g = y * (*g - dot);
        }
    }
    grad
}

/// The backward pass of [`SoftmaxOps::softmax_last`]; its state is the forward's output.
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: HostTensors> Backward<B, 1> for SoftmaxBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [Some(node)] = ops.parents else {
            return;
        };
        let y = ops.state;
        let shape = y.shape();
        let len = shape[shape.num_dims() - 1];
        let dx = backward_rows(&B::host_values(&y), B::to_host(grad), len.max(1));
        grads.register::<B>(node.id, B::from_host(dx, shape));
    }
}

impl<B: HostTensors + SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, TensorData};
    use dl_core::{Tolerance, assert_close};

    use crate::finite_differences::assert_gradient;

    /// `|ours - theirs| <= tol * (1 + |theirs|)` element-wise, with dl-core's report on failure.
    fn close(ours: &TensorData, theirs: &TensorData, tol: f64, what: &str) {
        assert_close(ours, theirs, Tolerance::new(tol, tol), what);
    }

    /// Output and input gradient against Burn's generic softmax and its decomposed gradient,
    /// with a weighting of the output so the gradient is not trivially zero.
    #[test]
    fn matches_burns_softmax_and_its_gradient() {
        let device = Device::flex().autodiff();
        for shape in [[2, 3, 4, 16], [1, 1, 5, 1], [3, 2, 7, 9]] {
            let x =
                Tensor::<4>::random(shape, Distribution::Normal(0.0, 3.0), &device).require_grad();
            let w = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let ours = softmax_last(&x).unwrap();
            let burns = softmax(x.clone(), 3);
            close(&ours.to_data(), &burns.to_data(), 1e-6, "softmax");
            let g_ours = (ours * w.clone()).sum().backward();
            let g_ours = x.grad(&g_ours).unwrap();
            let g_burn = (burns * w).sum().backward();
            let g_burn = x.grad(&g_burn).unwrap();
            close(&g_ours.to_data(), &g_burn.to_data(), 1e-5, "input gradient");
        }
    }

    /// The input gradient against central finite differences in f64 of the same function.
    /// The SIMD forward against `f64` on rows of 1-37 values (vector tails included); masked
    /// (`−∞`) values weigh exactly 0; a fully masked row and a row with NaN give NaN, as in
    /// PyTorch.
    #[test]
    fn forward_rows_match_f64_and_pytorchs_special_cases() {
        for len in [1usize, 7, 16, 37] {
            let x: Vec<f32> = (0..3 * len)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7)
                .collect();
            let y = forward_rows(&x, len);
            for (row, out) in x.chunks(len).zip(y.chunks(len)) {
                let max = row
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
                for (&v, &o) in row.iter().zip(out) {
                    let expected = (f64::from(v) - max).exp() / sum;
                    assert!(
                        (f64::from(o) - expected).abs() <= 1e-6 * expected.max(1e-30),
                        "{o} against {expected}"
                    );
                }
            }
        }
        let y = forward_rows(&[1.0, f32::NEG_INFINITY, 1.0], 3);
        assert_eq!(y, [0.5, 0.0, 0.5]);
        assert!(
            forward_rows(&[f32::NEG_INFINITY; 2], 2)
                .iter()
                .all(|v| v.is_nan())
        );
        assert!(forward_rows(&[0.0, f32::NAN], 2).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (rows, len) = (3, 6);
        let x: Vec<f64> = (0..rows * len)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 2.0)
            .collect();
        let w: Vec<f64> = (0..rows * len)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 3.0)
            .collect();
        let loss = |x: &[f64]| -> f64 {
            x.chunks(len)
                .zip(w.chunks(len))
                .map(|(r, w)| {
                    let m = r.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = r.iter().map(|v| (v - m).exp()).sum();
                    r.iter()
                        .zip(w)
                        .map(|(v, w)| (v - m).exp() / z * w)
                        .sum::<f64>()
                })
                .sum()
        };
        let device = Device::flex().autodiff();
        let xt = Tensor::<2>::from_data(
            TensorData::new(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), [rows, len]),
            &device,
        )
        .require_grad();
        let wt = Tensor::<2>::from_data(
            TensorData::new(w.iter().map(|&v| v as f32).collect::<Vec<_>>(), [rows, len]),
            &device,
        );
        let grads = (softmax_last(&xt).unwrap() * wt).sum().backward();
        let got = xt.grad(&grads).unwrap().into_data();
        assert_gradient("dx", got, &x, 1e-5, Tolerance::new(0.0, 1e-5), loss);
    }

    #[test]
    fn other_backends_have_no_kernel() {
        #[cfg(feature = "ndarray")]
        {
            let x = Tensor::<2>::ones([2, 2], &dl_core::BackendKind::NdArray.device().unwrap());
            assert!(softmax_last(&x).is_none());
        }
        assert!(!has_softmax(&Device::flex(), DType::F64));
    }
}
