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
//! | vectorisable `exp`, `sigmoid`, `tanh` | `simd_math.rs` | every CPU | Cephes, within 2–3 ulp |
//!
//! No `unsafe`: the SIMD code is plain loops compiled per instruction set by
//! [`pulp::Arch::dispatch`].

#[cfg(feature = "flex")]
mod lstm;
#[cfg(feature = "flex")]
mod lstm_host;
pub mod simd_math;

#[cfg(feature = "flex")]
pub use lstm::{
    HostTensors, LstmOps, has_fused_lstm, lstm_recurrence, lstm_recurrence_batch_first,
};

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
