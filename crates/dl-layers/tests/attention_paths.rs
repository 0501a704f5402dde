//! `MultiHeadAttention` has two inference paths: with `need_weights = false` and no padding or
//! custom mask it calls Burn's fused attention (outside autodiff), with `need_weights = true` it
//! takes the decomposed path that keeps PyTorch's order of operations. Both must give the same
//! output on every backend: LibTorch's fused kernel is PyTorch's SDPA, whose boolean mask means
//! the opposite of Burn's, so a mask handed over unconverted shows up here. On Flex unmasked
//! self-attention without weights has a third, dl-kernels' `self_attention_heads`, checked here
//! against the decomposed path as well.
//!
//! rtol 1e-5 rather than 1e-6: the fused kernel scales the product (q·kᵀ)·s where PyTorch's
//! order, kept by the decomposed path, scales q first, and it sums in another order; a 1% error
//! in the scale gives 2e-3 here.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Device, Distribution, Tensor};
use dl_core::BackendKind;
use dl_layers::{AttentionMask, MultiHeadAttentionConfig};

fn rand3(shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn fused_equals_decomposed(backend: BackendKind) {
    let device = backend.device().unwrap();
    dl_core::seed_device(&device, 24);
    let mha = MultiHeadAttentionConfig::new(16, 4).init(&device).unwrap();
    for causal in [false, true] {
        let mask = AttentionMask::none().with_causal(causal);
        let x = rand3([3, 7, 16], &device);
        let (fused, w) = mha.forward_self(x.clone(), mask.clone(), false);
        assert!(w.is_none());
        let (decomposed, _) = mha.forward_self(x, mask.clone(), true);
        dl_core::assert_tensor_close!(fused, decomposed, 1e-5, 1e-6);
        // Cross-attention with fewer queries than keys, causal or not.
        let (q, kv) = (rand3([3, 4, 16], &device), rand3([3, 9, 16], &device));
        let (fused, _) = mha.forward(q.clone(), kv.clone(), kv.clone(), mask.clone(), false);
        let (decomposed, _) = mha.forward(q, kv.clone(), kv, mask, true);
        dl_core::assert_tensor_close!(fused, decomposed, 1e-5, 1e-6);
    }
}

mod fused_inference_path_equals_the_decomposed_one {
    dl_core::per_backend_tests!(super::fused_equals_decomposed);
}

/// On Flex, unmasked self-attention at inference without weights is dl-kernels'
/// `self_attention_heads` between the two projections, bit for bit; with a causal mask, with
/// weights or under autodiff the layer keeps its composed path (the kernel declines autodiff).
#[cfg(feature = "flex")]
mod flex_attention_heads_are_the_inference_path {
    use super::*;

    #[test]
    fn flex() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 26);
        let mha = MultiHeadAttentionConfig::new(16, 4).init(&device).unwrap();
        let x = rand3([3, 7, 16], &device);
        let (layer, _) = mha.forward_self(x.clone(), AttentionMask::none(), false);
        let packed = dl_layers::linear(
            x.clone(),
            mha.in_proj_weight.val().transpose(),
            mha.in_proj_bias.as_ref().map(|b| b.val()),
        );
        let heads = dl_kernels::self_attention_heads(&packed, 4).unwrap();
        let kernel = dl_layers::linear_forward(&mha.out_proj, heads);
        assert!(layer.clone().equal(kernel).all().into_scalar::<bool>());
        let (causal, _) =
            mha.forward_self(x.clone(), AttentionMask::none().with_causal(true), false);
        let (unmasked_weights, _) = mha.forward_self(x.clone(), AttentionMask::none(), true);
        dl_core::assert_tensor_close!(layer.clone(), unmasked_weights, 1e-5, 1e-6);
        assert!(!layer.equal(causal).all().into_scalar::<bool>());
        let autodiff = Tensor::<3>::from_data(packed.to_data(), &device.clone().autodiff());
        assert!(dl_kernels::self_attention_heads(&autodiff, 4).is_none());
    }
}

/// On LibTorch, unmasked self-attention at inference without weights is PyTorch's own fused
/// kernel (`at::_native_multi_head_attention`): the layer's output is that kernel's, bit for
/// bit, and the kernel declines an autodiff device.
#[cfg(feature = "tch")]
mod native_attention_is_pytorchs_kernel {
    use super::*;

    #[test]
    fn tch() {
        let device = BackendKind::Tch.device().unwrap();
        dl_core::seed_device(&device, 25);
        let mha = MultiHeadAttentionConfig::new(16, 4).init(&device).unwrap();
        let x = rand3([3, 7, 16], &device);
        let (layer, _) = mha.forward_self(x.clone(), AttentionMask::none(), false);
        let (in_weight, in_bias) = (
            mha.in_proj_weight.val(),
            mha.in_proj_bias.as_ref().unwrap().val(),
        );
        let out_weight = mha.out_proj.weight.val().transpose();
        let out_bias = mha.out_proj.bias.as_ref().unwrap().val();
        let weights = dl_kernels::TorchAttentionWeights {
            in_weight: &in_weight,
            in_bias: &in_bias,
            out_weight: &out_weight,
            out_bias: &out_bias,
        };
        let kernel = dl_kernels::torch_multi_head_attention(&x, &x, &x, weights, 4).unwrap();
        assert!(layer.equal(kernel).all().into_scalar::<bool>());
        let autodiff = BackendKind::Tch.autodiff_device().unwrap();
        let x = Tensor::<3>::from_data(x.to_data(), &autodiff);
        assert!(dl_kernels::torch_multi_head_attention(&x, &x, &x, weights, 4).is_none());
    }
}

/// Weights of the wrong size reach PyTorch's kernel only through a direct call (the layer's
/// weights always fit): ATen's refusal becomes a panic that names the kernel.
#[cfg(feature = "tch")]
mod native_attention_reports_atens_refusal {
    use super::*;

    #[test]
    #[should_panic(expected = "torch_multi_head_attention: LibTorch refused the inputs")]
    fn tch() {
        let device = BackendKind::Tch.device().unwrap();
        let x = rand3([3, 7, 16], &device);
        // The input projection of a 12-wide model, for 16-wide inputs.
        let in_weight = Tensor::<2>::zeros([36, 12], &device);
        let in_bias = Tensor::<1>::zeros([36], &device);
        let out_weight = Tensor::<2>::zeros([12, 12], &device);
        let out_bias = Tensor::<1>::zeros([12], &device);
        let weights = dl_kernels::TorchAttentionWeights {
            in_weight: &in_weight,
            in_bias: &in_bias,
            out_weight: &out_weight,
            out_bias: &out_bias,
        };
        let _ = dl_kernels::torch_multi_head_attention(&x, &x, &x, weights, 4);
    }
}
