//! `MultiHeadAttention` has two inference paths: with `need_weights = false` and no padding or
//! custom mask it calls Burn's fused attention (outside autodiff), with `need_weights = true` it
//! takes the decomposed path that keeps PyTorch's order of operations. Both must give the same
//! output on every backend: LibTorch's fused kernel is PyTorch's SDPA, whose boolean mask means
//! the opposite of Burn's, so a mask handed over unconverted shows up here.
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
