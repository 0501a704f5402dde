//! Multi-head attention through LibTorch's own inference kernel, as a Burn backend extension.
//!
//! PyTorch's `nn.MultiheadAttention` takes a fused path at inference without weights:
//! `at::_native_multi_head_attention`, which adds the projection biases, scales the queries and
//! lays q, k and v out per head in one kernel, runs the scaled dot-product attention and the
//! output projection. Burn's path on LibTorch is the in-projection, three strided head views,
//! LibTorch's SDPA, a copy back to `[B, L, E]` and the out-projection, each a separate ATen call.
//! [`TorchAttentionOps::torch_multi_head_attention`] calls PyTorch's kernel itself, so the
//! kernels and the result are PyTorch's.
//!
//! Inference only, without masks: [`torch_multi_head_attention`] returns `None` on an autodiff
//! device, and `dl_layers::MultiHeadAttention` calls it only without a padding, causal or
//! custom mask and with both projection biases (what the kernel takes).

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, LibTorch, backend_extension};
use burn::tensor::Tensor;

use crate::torch_autograd::is_libtorch_float;

/// LibTorch's fused multi-head attention, per backend.
#[backend_extension(LibTorch: cfg(feature = "tch"))]
pub trait TorchAttentionOps: Backend {
    /// Attention of `query` `[B, L, E]` over `key`, `value` `[B, S, E]` with PyTorch's
    /// parameter layouts: `in_weight` `[3E, E]`, `in_bias` `[3E]`, `out_weight` `[E, E]`
    /// (`[out, in]`), `out_bias` `[E]`; returns `[B, L, E]`.
    #[allow(clippy::too_many_arguments)]
    fn torch_multi_head_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        in_weight: FloatTensor<Self>,
        in_bias: FloatTensor<Self>,
        out_weight: FloatTensor<Self>,
        out_bias: FloatTensor<Self>,
        num_heads: usize,
    ) -> FloatTensor<Self>;
}

/// The parameters of [`torch_multi_head_attention`], in PyTorch's layouts.
#[derive(Debug, Clone, Copy)]
pub struct TorchAttentionWeights<'a> {
    /// `in_proj_weight` `[3E, E]`.
    pub in_weight: &'a Tensor<2>,
    /// `in_proj_bias` `[3E]`.
    pub in_bias: &'a Tensor<1>,
    /// `out_proj.weight` `[E, E]`, PyTorch's `[out, in]`.
    pub out_weight: &'a Tensor<2>,
    /// `out_proj.bias` `[E]`.
    pub out_bias: &'a Tensor<1>,
}

/// Unmasked multi-head attention of `query` `[B, L, E]` over `key`, `value` `[B, S, E]`
/// without attention weights, through `at::_native_multi_head_attention`, or `None` when
/// `query` is not on a plain (not autodiff) LibTorch device with an `f32` or `f64` tensor.
///
/// # Panics
///
/// When the shapes do not fit (`dl_layers::MultiHeadAttention` checks them before calling);
/// the panic carries ATen's message.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_kernels::TorchAttentionWeights;
///
/// // On any backend but LibTorch there is nothing to run.
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<3>::ones([1, 2, 4], &device);
/// let (w, b) = (Tensor::<2>::ones([12, 4], &device), Tensor::<1>::zeros([12], &device));
/// let (wo, bo) = (Tensor::<2>::ones([4, 4], &device), Tensor::<1>::zeros([4], &device));
/// let weights =
///     TorchAttentionWeights { in_weight: &w, in_bias: &b, out_weight: &wo, out_bias: &bo };
/// assert!(dl_kernels::torch_multi_head_attention(&x, &x, &x, weights, 2).is_none());
/// ```
pub fn torch_multi_head_attention(
    query: &Tensor<3>,
    key: &Tensor<3>,
    value: &Tensor<3>,
    weights: TorchAttentionWeights<'_>,
    num_heads: usize,
) -> Option<Tensor<3>> {
    let device = query.device();
    if device.is_autodiff() || !is_libtorch_float(&device, query.dtype()) {
        return None;
    }
    let out = <Dispatch as TorchAttentionOps>::torch_multi_head_attention(
        query.clone().into_dispatch(),
        key.clone().into_dispatch(),
        value.clone().into_dispatch(),
        weights.in_weight.clone().into_dispatch(),
        weights.in_bias.clone().into_dispatch(),
        weights.out_weight.clone().into_dispatch(),
        weights.out_bias.clone().into_dispatch(),
        num_heads,
    );
    Some(Tensor::from_dispatch(out))
}

impl TorchAttentionOps for LibTorch {
    fn torch_multi_head_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        in_weight: FloatTensor<Self>,
        in_bias: FloatTensor<Self>,
        out_weight: FloatTensor<Self>,
        out_bias: FloatTensor<Self>,
        num_heads: usize,
    ) -> FloatTensor<Self> {
        let embed_dim = query.tensor.size().last().copied().unwrap_or(0);
        let out = tch::no_grad(|| {
            tch::Tensor::f_internal_native_multi_head_attention(
                &query.tensor,
                &key.tensor,
                &value.tensor,
                embed_dim,
                num_heads as i64,
                &in_weight.tensor,
                &in_bias.tensor,
                &out_weight.tensor,
                &out_bias.tensor,
                None::<tch::Tensor>,
                false,
                false,
                None,
            )
            .unwrap_or_else(|e| {
                panic!("torch_multi_head_attention: LibTorch refused the inputs: {e}")
            })
            .0
        });
        TchTensor::new(out)
    }
}
