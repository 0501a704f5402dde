//! Layer normalisation over the last axis with a one-pass backward, as a Burn backend
//! extension.
//!
//! Burn's autodiff differentiates `layer_norm` through its backend-generic decomposition
//! (mean, subtraction, square, mean, `+ ε`, square root, division, `⊙ γ`, `+ β`): nine
//! operations forward and about twenty backward, each with its own buffer, for every norm of
//! every Transformer block. [`LayerNormOps::layer_norm_last`] normalises each row in one pass
//! and, under autodiff, keeps the normalised rows `x̂` and `1/σ` for one backward pass:
//!
//! - `dβ = Σ_rows dy`, `dγ = Σ_rows dy ⊙ x̂`
//! - `dx = (1/σ) · (g − mean(g) − x̂ · mean(g ⊙ x̂))` with `g = dy ⊙ γ`
//!
//! Numerics against PyTorch's `nn.LayerNorm`: the same definition (biased variance, `ε` inside
//! the square root); mean and variance are computed in two passes over the row in f32, as
//! Burn's generic path does. Tests compare output and all three gradients with Burn's generic
//! path and the input gradient with finite differences.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::host::HostTensors;

/// Layer normalisation over the last axis, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormOps: Backend {
    /// `(x − mean) / sqrt(var + epsilon) ⊙ gamma + beta` over the last axis of `x`, whose size
    /// is the length of `gamma` and `beta`.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// Whether [`layer_norm_last`] has a native kernel for `dtype` tensors on `device` (Flex `f32`,
/// with or without autodiff).
pub fn has_layer_norm(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// Layer normalisation over the last axis through [`LayerNormOps::layer_norm_last`], or `None`
/// when the device has no native kernel (see [`has_layer_norm`]) or the sizes disagree; the
/// caller then uses Burn's `LayerNorm`.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<2>::from_floats([[1.0, 3.0], [2.0, 6.0]], &device);
/// let gamma = Tensor::<1>::from_floats([2.0, 2.0], &device);
/// let beta = Tensor::<1>::from_floats([0.5, 0.5], &device);
/// let y = dl_kernels::layer_norm_last(&x, &gamma, &beta, 0.0).expect("flex has the kernel");
/// // Row 1: mean 2, σ 1 → (−1, 1) · 2 + 0.5; row 2: mean 4, σ 2, the same.
/// let y = y.into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(y, [-1.5, 2.5, -1.5, 2.5]);
/// ```
pub fn layer_norm_last<const D: usize>(
    x: &Tensor<D>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<Tensor<D>> {
    let [len] = gamma.dims();
    if !has_layer_norm(&x.device(), x.dtype())
        || x.dims()[D - 1] != len
        || beta.dims() != [len]
        || gamma.dtype() != DType::F32
        || beta.dtype() != DType::F32
    {
        return None;
    }
    let out = <Dispatch as LayerNormOps>::layer_norm_last(
        x.clone().into_dispatch(),
        gamma.clone().into_dispatch(),
        beta.clone().into_dispatch(),
        epsilon,
    );
    Some(Tensor::from_dispatch(out))
}

impl LayerNormOps for Flex {
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        <Flex as ModuleOps<Flex>>::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

/// The forward pass on host rows: the output, `x̂` and `1/σ` per row.
fn forward_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let len = gamma.len();
    let rows = x.len() / len;
    let (mut out, mut xhat, mut rstd) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; rows]);
    for (r, row) in x.chunks_exact(len).enumerate() {
        let mean = row.iter().sum::<f32>() / len as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len as f32;
        let inv = 1.0 / (var + epsilon).sqrt();
        rstd[r] = inv;
        let (o, h) = (&mut out[r * len..][..len], &mut xhat[r * len..][..len]);
        for i in 0..len {
            h[i] = (row[i] - mean) * inv;
            o[i] = h[i] * gamma[i] + beta[i];
        }
    }
    (out, xhat, rstd)
}

/// The three gradients `(dx, dγ, dβ)` from the output gradient and the saved rows.
fn backward_rows(
    grad: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let len = gamma.len();
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; grad.len()], vec![0.0; len], vec![0.0; len]);
    let mut g = vec![0.0f32; len];
    for (r, (dy, h)) in grad
        .chunks_exact(len)
        .zip(xhat.chunks_exact(len))
        .enumerate()
    {
        let (mut sum_g, mut sum_gh) = (0.0f32, 0.0f32);
        for i in 0..len {
            dgamma[i] += dy[i] * h[i];
            dbeta[i] += dy[i];
            g[i] = dy[i] * gamma[i];
            sum_g += g[i];
            sum_gh += g[i] * h[i];
        }
        let (mean_g, mean_gh) = (sum_g / len as f32, sum_gh / len as f32);
        let out = &mut dx[r * len..][..len];
        for i in 0..len {
            out[i] = rstd[r] * (g[i] - mean_g - h[i] * mean_gh);
        }
    }
    (dx, dgamma, dbeta)
}

/// What the backward pass keeps from the forward pass.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    xhat: FloatTensor<B>,
    rstd: Vec<f32>,
    gamma: FloatTensor<B>,
}

/// The backward pass of [`LayerNormOps::layer_norm_last`].
#[derive(Debug)]
struct LayerNormBackward;

impl<B: HostTensors> Backward<B, 3> for LayerNormBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let Saved { xhat, rstd, gamma } = ops.state;
        let shape = xhat.shape();
        let len = gamma.shape()[0];
        let (dx, dgamma, dbeta) = backward_rows(
            &B::to_host(grad),
            &B::host_values(&xhat),
            &rstd,
            &B::host_values(&gamma),
        );
        let [x_node, gamma_node, beta_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::from_host(dx, shape));
        }
        if let Some(node) = gamma_node {
            grads.register::<B>(node.id, B::from_host(dgamma, Shape::new([len])));
        }
        if let Some(node) = beta_node {
            grads.register::<B>(node.id, B::from_host(dbeta, Shape::new([len])));
        }
    }
}

impl<B: HostTensors + LayerNormOps, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let prep = LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let shape = x.shape();
                let (out, xhat, rstd) = forward_rows(
                    &B::host_values(&x),
                    &B::host_values(&gamma),
                    &B::host_values(&beta),
                    epsilon as f32,
                );
                let saved = Saved {
                    xhat: B::from_host(xhat, shape.clone()),
                    rstd,
                    gamma,
                };
                prep.finish(saved, B::from_host(out, shape))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_last(x, gamma, beta, epsilon)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::layer_norm;
    use burn::tensor::{Distribution, TensorData};
    use dl_core::{Tolerance, assert_close};

    use crate::finite_differences::assert_gradient;

    /// `|ours - theirs| <= tol * (1 + |theirs|)` element-wise, with dl-core's report on failure.
    fn close(ours: &TensorData, theirs: &TensorData, tol: f64, what: &str) {
        assert_close(ours, theirs, Tolerance::new(tol, tol), what);
    }

    /// Output and the gradients of input, γ and β against Burn's functional `layer_norm` (what
    /// its `LayerNorm` module calls) and its generic backward, with random γ and β so none of
    /// the three is trivial.
    #[test]
    fn matches_burns_layer_norm_and_its_gradients() {
        let device = Device::flex().autodiff();
        for (shape, eps) in [([4, 5, 8], 1e-5), ([2, 3, 64], 1e-5), ([1, 1, 3], 1e-2)] {
            let random = |dims: Vec<usize>, mean: f64, std: f64| {
                Tensor::<1>::random(
                    [dims.iter().product::<usize>()],
                    Distribution::Normal(mean, std),
                    &device,
                )
            };
            let gamma = random(vec![shape[2]], 1.0, 0.5).require_grad();
            let beta = random(vec![shape[2]], 0.0, 0.5).require_grad();
            let x = random(shape.to_vec(), 1.0, 2.0)
                .reshape(shape)
                .require_grad();
            let w = random(shape.to_vec(), 0.0, 1.0).reshape(shape);
            let ours = layer_norm_last(&x, &gamma, &beta, eps).unwrap();
            let burns = layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), eps);
            close(&ours.to_data(), &burns.to_data(), 1e-5, "layer norm");
            let g_ours = (ours * w.clone()).sum().backward();
            let g_burn = (burns * w).sum().backward();
            close(
                &x.grad(&g_ours).unwrap().to_data(),
                &x.grad(&g_burn).unwrap().to_data(),
                1e-4,
                "input gradient",
            );
            for (p, what) in [(&gamma, "gamma gradient"), (&beta, "beta gradient")] {
                close(
                    &p.grad(&g_ours).unwrap().to_data(),
                    &p.grad(&g_burn).unwrap().to_data(),
                    1e-4,
                    what,
                );
            }
        }
    }

    /// The input gradient against central finite differences of the same function in f64.
    #[test]
    fn input_gradient_matches_finite_differences() {
        let (rows, len, eps) = (3, 5, 1e-5);
        let x: Vec<f64> = (0..rows * len)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 2.0)
            .collect();
        let w: Vec<f64> = (0..rows * len)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 3.0)
            .collect();
        let gamma: Vec<f64> = (0..len).map(|i| 0.5 + i as f64 / 4.0).collect();
        let beta: Vec<f64> = (0..len).map(|i| i as f64 / 10.0 - 0.2).collect();
        let loss = |x: &[f64]| -> f64 {
            x.chunks(len)
                .zip(w.chunks(len))
                .map(|(r, w)| {
                    let m = r.iter().sum::<f64>() / len as f64;
                    let v = r.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / len as f64;
                    let s = (v + eps).sqrt();
                    (0..len)
                        .map(|i| ((r[i] - m) / s * gamma[i] + beta[i]) * w[i])
                        .sum::<f64>()
                })
                .sum()
        };
        let device = Device::flex().autodiff();
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
        let xt =
            Tensor::<2>::from_data(TensorData::new(f32s(&x), [rows, len]), &device).require_grad();
        let wt = Tensor::<2>::from_data(TensorData::new(f32s(&w), [rows, len]), &device);
        let gt = Tensor::<1>::from_data(TensorData::new(f32s(&gamma), [len]), &device);
        let bt = Tensor::<1>::from_data(TensorData::new(f32s(&beta), [len]), &device);
        let grads = (layer_norm_last(&xt, &gt, &bt, eps).unwrap() * wt)
            .sum()
            .backward();
        let got = xt.grad(&grads).unwrap().into_data();
        assert_gradient("dx", got, &x, 1e-5, Tolerance::new(0.0, 1e-4), loss);
    }

    #[test]
    fn mismatched_sizes_and_other_backends_have_no_kernel() {
        let device = Device::flex();
        let x = Tensor::<2>::ones([2, 4], &device);
        let three = Tensor::<1>::ones([3], &device);
        let four = Tensor::<1>::ones([4], &device);
        assert!(layer_norm_last(&x, &three, &three, 1e-5).is_none());
        assert!(layer_norm_last(&x, &four, &three, 1e-5).is_none());
        assert!(layer_norm_last(&x, &four, &four, 1e-5).is_some());
        #[cfg(feature = "ndarray")]
        {
            let device = dl_core::BackendKind::NdArray.device().unwrap();
            let x = Tensor::<2>::ones([2, 4], &device);
            let four = Tensor::<1>::ones([4], &device);
            assert!(layer_norm_last(&x, &four, &four, 1e-5).is_none());
        }
    }
}
