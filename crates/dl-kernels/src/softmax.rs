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
//! `exp` within 2 ulp (see `simd_math.rs`), the maximum and the sum taken per SIMD lane and then
//! across the lanes, as PyTorch's vectorised CPU kernel (`_vec_softmax_lastdim`) does; the
//! backward sums each row in f32 in index order; tests compare both with Burn's generic path
//! and with finite differences.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Tensor};

use pulp::{Arch, Simd, WithSimd};

use crate::host::HostTensors;
use crate::simd_math::{exp, load, store};

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
        // One copy of the values, then the rows in place (taking Flex's buffer with `to_host`
        // copies it through `TensorData` twice).
        let y = forward_rows(Self::host_values(&x).into_owned(), len);
        Self::from_host(y, shape)
    }
}

/// Values from which the rows are split across the thread pool (the Transformer benchmark's
/// attention scores at batch 64, `[64, 8, 64, 64]`, are 2 M).
const PARALLEL_VALUES: usize = 1 << 16;

/// `softmax` of each row of `len` values: `exp(x − max) / Σ exp(x − max)`, every pass over a
/// row in SIMD registers ([`crate::simd_math`]; Flex's softmax calls the scalar `expf` per
/// value). A `−∞` input gives exactly 0, as in PyTorch; a row holding NaN or `+∞`, or only
/// `−∞` (fully masked), is computed with the scalar `exp`, which gives PyTorch's NaN. Large
/// inputs are split by rows across the thread pool.
fn forward_rows(mut values: Vec<f32>, len: usize) -> Vec<f32> {
    let threads = rayon::current_num_threads();
    if threads > 1 && values.len() >= PARALLEL_VALUES {
        use rayon::prelude::*;
        let rows = values.len() / len;
        let per_task = rows.div_ceil(4 * threads) * len;
        values
            .par_chunks_mut(per_task)
            .for_each(|rows| Arch::new().dispatch(Rows { rows, len }));
    } else {
        Arch::new().dispatch(Rows {
            rows: &mut values,
            len,
        });
    }
    values
}

/// Rows of `len` values, replaced by their softmax.
struct Rows<'a> {
    rows: &'a mut [f32],
    len: usize,
}

impl WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let lanes = S::F32_LANES;
        let body = self.len / lanes * lanes;
        let below_finite = s.splat_f32s(f32::MIN);
        for row in self.rows.chunks_exact_mut(self.len) {
            // The maximum, and the sum of the inputs: NaN when one of them is NaN (or when
            // +∞ meets −∞, which the maximum shows anyway). −∞ alone makes it −∞, not NaN.
            let (mut vmax, mut vsum) = (s.splat_f32s(f32::NEG_INFINITY), s.splat_f32s(0.0));
            for chunk in row[..body].chunks_exact(lanes) {
                let v = load(s, chunk);
                vmax = s.max_f32s(vmax, v);
                vsum = s.add_f32s(vsum, v);
            }
            let mut max = s.reduce_max_f32s(vmax);
            let mut total = s.reduce_sum_f32s(vsum);
            for &v in &row[body..] {
                max = max.max(v);
                total += v;
            }
            if !max.is_finite() || total.is_nan() {
                row.iter_mut().for_each(|v| *v = (*v - max).exp());
                total = row.iter().sum();
            } else {
                let shift = s.splat_f32s(max);
                let mut vsum = s.splat_f32s(0.0);
                let (head, tail) = row.split_at_mut(body);
                for chunk in head.chunks_exact_mut(lanes) {
                    let v = load(s, chunk);
                    // exp clamps its input at −87: a masked (−∞) score must weigh exactly 0.
                    let e = s.select_f32s(
                        s.less_than_f32s(v, below_finite),
                        s.splat_f32s(0.0),
                        exp(s, s.sub_f32s(v, shift)),
                    );
                    vsum = s.add_f32s(vsum, e);
                    store(s, chunk, e);
                }
                for v in tail.iter_mut() {
                    *v = if *v == f32::NEG_INFINITY {
                        0.0
                    } else {
                        (*v - max).exp()
                    };
                }
                total = s.reduce_sum_f32s(vsum) + tail.iter().sum::<f32>();
            }
            let inverse = 1.0 / total;
            let scale = s.splat_f32s(inverse);
            let (head, tail) = row.split_at_mut(body);
            for chunk in head.chunks_exact_mut(lanes) {
                let e = s.mul_f32s(load(s, chunk), scale);
                store(s, chunk, e);
            }
            tail.iter_mut().for_each(|e| *e *= inverse);
        }
    }
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
            let y = forward_rows(x.clone(), len);
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
        let y = forward_rows(vec![1.0, f32::NEG_INFINITY, 1.0], 3);
        assert_eq!(y, [0.5, 0.0, 0.5]);
        assert!(
            forward_rows(vec![f32::NEG_INFINITY; 2], 2)
                .iter()
                .all(|v| v.is_nan())
        );
        assert!(
            forward_rows(vec![0.0, f32::NAN], 2)
                .iter()
                .all(|v| v.is_nan())
        );
    }

    /// Masked values and NaN inside the SIMD part of a row (not only in its scalar tail), and
    /// the split across threads, which must not change a single bit.
    #[test]
    fn masks_and_nan_anywhere_in_a_row_and_threads_change_nothing() {
        let len = 40;
        let mut row: Vec<f32> = (0..len).map(|i| (i % 9) as f32 * 0.3 - 1.0).collect();
        for i in [3, 20, 38] {
            row[i] = f32::NEG_INFINITY;
        }
        let y = forward_rows(row.clone(), len);
        for i in [3, 20, 38] {
            assert_eq!(y[i], 0.0, "masked value {i}");
        }
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        for (&v, &o) in row.iter().zip(&y) {
            let expected = (f64::from(v) - max).exp() / sum;
            assert!((f64::from(o) - expected).abs() <= 1e-6 * expected.max(1e-30));
        }
        for bad in [f32::NAN, f32::INFINITY] {
            let mut row = vec![0.5f32; 32];
            row[5] = bad;
            assert!(forward_rows(row, 32).iter().all(|v| v.is_nan()), "{bad}");
        }

        let (rows, len) = (1100, 64);
        let x: Vec<f32> = (0..rows * len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        assert!(x.len() >= PARALLEL_VALUES);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| forward_rows(x.clone(), len))
        };
        assert_eq!(on(1), on(3));
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
