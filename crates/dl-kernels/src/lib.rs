//! Fused CPU kernels for dl-rs, added to Burn's backends through `#[backend_extension]`.
//!
//! Each kernel is one file holding its operation and its backward pass; the layers in
//! `dl-layers` call them where the device has a native implementation and keep their composed
//! tensor-operation path elsewhere, so results never depend on which path ran beyond the
//! parity tolerances.
//!
//! | kernel | file | native on | numerics |
//! |---|---|---|---|
//! | LSTM recurrence (forward + backpropagation through time) | `lstm.rs`, `lstm_host.rs` | Flex | PyTorch's equations; `σ`/`tanh` within 3e-7 relative |
//! | an LSTM (stacked, bidirectional) through LibTorch's `at::lstm`, backward by LibTorch's autograd | `lstm_torch.rs`, `torch_autograd.rs` | LibTorch (feature `tch`) | PyTorch's own kernel (oneDNN on the CPU) |
//! | 2-D convolution and both gradients as per-example products on the unfolded input | `conv2d.rs`, `conv2d_host.rs` | Flex | PyTorch's, summed in another order |
//! | 2-D convolution through LibTorch's `at::conv2d`, both gradients by LibTorch's autograd | `conv2d_torch.rs`, `torch_autograd.rs` | LibTorch (feature `tch`) | PyTorch's own kernels |
//! | softmax over the last axis with a one-pass backward | `softmax.rs` | Flex | PyTorch's definition, SIMD `exp` within 2 ulp; backward PyTorch's formula |
//! | layer normalisation over the last axis with a one-pass backward | `layer_norm.rs` | Flex | PyTorch's definition; two-pass mean and variance in f32 |
//! | ReLU + 2x2 stride-2 max-pool in one pass, one byte per output for the backward | `relu_max_pool.rs` | Flex | exact, PyTorch's tie and NaN rules |
//! | unmasked multi-head self-attention heads from the packed projection, inference, each head's scores kept in cache | `attention.rs` | Flex | PyTorch's order (q scaled first, softmax, then `v`); SIMD `exp` within 2 ulp |
//! | multi-head attention through LibTorch's `at::_native_multi_head_attention` (PyTorch's fused inference path), unmasked inference | `attention_torch.rs` | LibTorch (feature `tch`) | PyTorch's own kernel |
//! | a linear map through LibTorch's `at::linear` (one `addmm`), inference | `linear_torch.rs` | LibTorch (feature `tch`) | PyTorch's own kernel |
//! | ReLU + max-pool through LibTorch's kernels, backward by LibTorch's autograd | `relu_max_pool_torch.rs`, `torch_autograd.rs` | LibTorch (feature `tch`) | PyTorch's own kernels |
//! | inverted dropout with a hashed mask, recomputed in the backward pass | `dropout.rs` | Flex | PyTorch's definition; another random stream |
//! | vectorisable `exp`, `sigmoid`, `tanh` | `simd_math.rs` | every CPU | Cephes, within 2–3 ulp |
//!
//! | linear map `x W + b` with its three gradients | `linear.rs` | Flex | PyTorch's `addmm`, summed in another order |
//! | matrix products on host slices (the convolution's, the LSTM step's below batch 8) | `gemm.rs` | Flex | `gemm`'s, as Flex's matmul |
//! | products with a right-hand matrix packed once (the LSTM's `W_hh`, batch 8 and up) | `packed.rs` | every CPU | ordered fused multiply-adds, as gemm's |
//!
//! One `unsafe` block, in `gemm.rs`: the call to `gemm::gemm` on slices whose sizes it checks
//! first (that file says why and how it is tested). The SIMD code is plain loops compiled per
//! instruction set by [`pulp::Arch::dispatch`].

#[cfg(feature = "flex")]
mod attention;
#[cfg(feature = "tch")]
mod attention_torch;
#[cfg(feature = "flex")]
mod conv2d;
#[cfg(feature = "flex")]
mod conv2d_host;
#[cfg(feature = "tch")]
mod conv2d_torch;
#[cfg(feature = "flex")]
mod dropout;
#[cfg(test)]
mod finite_differences;
#[cfg(feature = "flex")]
mod gemm;
#[cfg(feature = "flex")]
mod host;
#[cfg(feature = "flex")]
mod layer_norm;
#[cfg(feature = "flex")]
mod linear;
#[cfg(feature = "tch")]
mod linear_torch;
#[cfg(feature = "flex")]
mod lstm;
#[cfg(feature = "flex")]
mod lstm_host;
#[cfg(feature = "tch")]
mod lstm_torch;
#[cfg(feature = "flex")]
mod packed;
#[cfg(feature = "flex")]
mod relu_max_pool;
#[cfg(feature = "tch")]
mod relu_max_pool_torch;
pub mod simd_math;
#[cfg(feature = "flex")]
mod softmax;
#[cfg(feature = "tch")]
mod torch_autograd;

#[cfg(feature = "flex")]
pub use attention::{AttentionHeadsOps, has_attention_heads, self_attention_heads};
#[cfg(feature = "tch")]
pub use attention_torch::{TorchAttentionOps, TorchAttentionWeights, torch_multi_head_attention};
#[cfg(feature = "flex")]
pub use conv2d::{Conv2dOps, conv2d, has_conv2d_gemm};
#[cfg(feature = "tch")]
pub use conv2d_torch::{TorchConv2dOps, TorchConv2dOptions, torch_conv2d};
#[cfg(feature = "flex")]
pub use dropout::{DropoutOps, dropout, has_dropout};
#[cfg(feature = "flex")]
pub use host::HostTensors;
#[cfg(feature = "flex")]
pub use layer_norm::{LayerNormOps, has_layer_norm, layer_norm_last};
#[cfg(feature = "flex")]
pub use linear::{LinearOps, has_linear, linear};
#[cfg(feature = "tch")]
pub use linear_torch::{TorchLinearOps, torch_linear};
#[cfg(feature = "flex")]
pub use lstm::{
    LstmInferenceOps, LstmLayerWeights, LstmOps, has_fused_lstm, lstm_layer_inference,
    lstm_recurrence, lstm_recurrence_batch_first,
};
#[cfg(feature = "tch")]
pub use lstm_torch::{
    TORCH_LSTM_MAX_LAYERS, TorchLstmLayout, TorchLstmOps, TorchLstmOutput, TorchLstmWeights,
    has_torch_lstm, torch_lstm,
};
#[cfg(feature = "flex")]
pub use relu_max_pool::{ReluMaxPoolOps, has_relu_max_pool, relu_max_pool2x2};
#[cfg(feature = "tch")]
pub use relu_max_pool_torch::{TorchMaxPoolOptions, TorchReluMaxPoolOps, torch_relu_max_pool2d};
#[cfg(feature = "flex")]
pub use softmax::{SoftmaxOps, has_softmax, softmax_last};

/// Without the `flex` feature no backend has a fused LSTM.
#[cfg(not(feature = "flex"))]
pub fn has_fused_lstm(_device: &burn::tensor::Device, _dtype: burn::tensor::DType) -> bool {
    false
}

/// Without the `flex` feature no backend has a fused LSTM: always `None`.
#[cfg(not(feature = "flex"))]
pub fn lstm_recurrence_batch_first(
    _projected: &burn::tensor::Tensor<3>,
    _w_hh: &burn::tensor::Tensor<2>,
    _h0: &burn::tensor::Tensor<2>,
    _c0: &burn::tensor::Tensor<2>,
    _reverse: bool,
) -> Option<burn::tensor::Tensor<4>> {
    None
}

/// Without the `flex` feature no backend has the convolution kernel.
#[cfg(not(feature = "flex"))]
pub fn has_conv2d_gemm(_device: &burn::tensor::Device, _dtype: burn::tensor::DType) -> bool {
    false
}

/// Without the `flex` feature no backend has the convolution kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn conv2d(
    _x: &burn::tensor::Tensor<4>,
    _weight: &burn::tensor::Tensor<4>,
    _bias: &burn::tensor::Tensor<1>,
    _stride: usize,
    _padding: usize,
) -> Option<burn::tensor::Tensor<4>> {
    None
}

/// Without the `flex` feature no backend has a fused LSTM: always `None`.
#[cfg(not(feature = "flex"))]
pub fn lstm_recurrence(
    _projected: &burn::tensor::Tensor<3>,
    _w_hh: &burn::tensor::Tensor<2>,
    _h0: &burn::tensor::Tensor<2>,
    _c0: &burn::tensor::Tensor<2>,
    _reverse: bool,
) -> Option<burn::tensor::Tensor<4>> {
    None
}

/// Without the `flex` feature no backend has the softmax kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn softmax_last<const D: usize>(
    _x: &burn::tensor::Tensor<D>,
) -> Option<burn::tensor::Tensor<D>> {
    None
}

/// Without the `flex` feature no backend has the layer-norm kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn layer_norm_last<const D: usize>(
    _x: &burn::tensor::Tensor<D>,
    _gamma: &burn::tensor::Tensor<1>,
    _beta: &burn::tensor::Tensor<1>,
    _epsilon: f64,
) -> Option<burn::tensor::Tensor<D>> {
    None
}

/// Without the `flex` feature no backend has the ReLU + max-pool kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn relu_max_pool2x2(_x: &burn::tensor::Tensor<4>) -> Option<burn::tensor::Tensor<4>> {
    None
}

/// Without the `flex` feature no backend has the dropout kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn dropout<const D: usize>(
    _x: &burn::tensor::Tensor<D>,
    _prob: f64,
) -> Option<burn::tensor::Tensor<D>> {
    None
}

/// Without the `flex` feature no backend has the softmax kernel.
#[cfg(not(feature = "flex"))]
pub fn has_softmax(_device: &burn::tensor::Device, _dtype: burn::tensor::DType) -> bool {
    false
}

/// Without the `flex` feature no backend has the linear kernel: always `None`.
#[cfg(not(feature = "flex"))]
pub fn linear<const D: usize>(
    _x: &burn::tensor::Tensor<D>,
    _weight: &burn::tensor::Tensor<2>,
    _bias: &burn::tensor::Tensor<1>,
) -> Option<burn::tensor::Tensor<D>> {
    None
}
