//! LibTorch's own LSTM as a Burn backend extension: up to two stacked layers, one or both
//! directions, in one ATen call.
//!
//! On LibTorch the composed LSTM of `dl_layers::Lstm` costs about ten Burn operations per step,
//! each crossing Burn's dispatch and tch's FFI into a small ATen kernel (28 steps × 10 ≈ 280
//! calls per layer and direction). [`TorchLstmOps::torch_lstm`] instead hands the layers to
//! `at::lstm`, the function behind PyTorch's `nn.LSTM` on every device: on the CPU it runs
//! oneDNN's fused LSTM (as PyTorch does), on CUDA cuDNN's, so the results are PyTorch's, and so
//! is the dropout between the layers of one call (LibTorch's random stream, seeded by Burn's
//! seed on this backend). Each call has a fixed cost (oneDNN prepares its primitive and reorders
//! the weights), so the chapter's two-layer LSTM is one call, as in PyTorch; deeper ones are cut
//! into calls of two layers. The weights are passed as they are (PyTorch's `_flat_weights` are these same
//! tensors), not copied: the operation has a fixed nineteen tensor inputs (input, four weights
//! per layer and direction for two layers, states), and the slots a call does not fill (a
//! second layer, a reverse direction, biases) hold placeholders that are neither read nor
//! differentiated. Under autodiff the backward pass is LibTorch's own
//! ([`crate::torch_autograd`]).
//!
//! Other backends are not routed here ([`torch_lstm`] returns `None`); `dl_layers::Lstm` keeps
//! its fused Flex kernel or its composed path there.

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, LibTorch, backend_extension};
use burn::tensor::{DType, Device, Tensor};

use crate::torch_autograd::{is_libtorch_float, with_torch_autograd};

/// Layers per [`TorchLstmOps::torch_lstm`] call.
pub const TORCH_LSTM_MAX_LAYERS: usize = 2;

/// Weight slots of [`TorchLstmOps::torch_lstm`]: four per layer and direction, two layers.
const SLOTS: usize = 16;

/// LibTorch's LSTM, per backend.
#[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TorchLstmOps: Backend {
    /// One or two stacked LSTM layers over a sequence through `at::lstm`.
    ///
    /// * `input` `[T, B, in]` (`[B, T, in]` when batch-first);
    /// * `w00` to `w15`: four slots per layer and direction in PyTorch's order (layer 0
    ///   forward, layer 0 backward, layer 1 forward, layer 1 backward), each `w_ih` `[4H, in_l]`,
    ///   `w_hh` `[4H, H]`, `b_ih`, `b_hh` `[4H]`; the slots `layout` leaves empty hold
    ///   placeholders (any tensor);
    /// * `h0`, `c0` `[L·D, B, H]`.
    ///
    /// Returns one flat tensor: the output `[T, B, D·H]` (or `[B, T, D·H]`), then `h_n` and `c_n`
    /// `[L·D, B, H]`, each flattened in row-major order (Burn's autodiff tracks one output per
    /// operation; [`torch_lstm`] cuts it apart).
    #[allow(clippy::too_many_arguments)]
    fn torch_lstm(
        input: FloatTensor<Self>,
        w00: FloatTensor<Self>,
        w01: FloatTensor<Self>,
        w02: FloatTensor<Self>,
        w03: FloatTensor<Self>,
        w04: FloatTensor<Self>,
        w05: FloatTensor<Self>,
        w06: FloatTensor<Self>,
        w07: FloatTensor<Self>,
        w08: FloatTensor<Self>,
        w09: FloatTensor<Self>,
        w10: FloatTensor<Self>,
        w11: FloatTensor<Self>,
        w12: FloatTensor<Self>,
        w13: FloatTensor<Self>,
        w14: FloatTensor<Self>,
        w15: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        layout: TorchLstmLayout,
    ) -> FloatTensor<Self>;
}

/// The layers [`TorchLstmOps::torch_lstm`] runs, and their dropout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TorchLstmLayout {
    /// Stacked layers in this call, 1 or 2.
    pub num_layers: usize,
    /// Whether every layer has `b_ih` and `b_hh`.
    pub has_biases: bool,
    /// Whether every layer also runs backwards in time.
    pub bidirectional: bool,
    /// Whether input and output are `[B, T, ·]`.
    pub batch_first: bool,
    /// Dropout probability on the first layer's output when there are two; applied only when
    /// `train` (PyTorch's `nn.LSTM(dropout=p)` in training mode).
    pub dropout: f64,
    /// Training mode (dropout active).
    pub train: bool,
}

impl TorchLstmLayout {
    fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Which weight slots the call reads.
    fn used_slots(&self) -> [bool; SLOTS] {
        std::array::from_fn(|slot| {
            let (layer, direction, kind) = (slot / 8, (slot / 4) % 2, slot % 4);
            layer < self.num_layers
                && direction < self.directions()
                && (kind < 2 || self.has_biases)
        })
    }

    /// Which of the nineteen inputs the call reads.
    fn used(&self) -> [bool; SLOTS + 3] {
        let slots = self.used_slots();
        std::array::from_fn(|i| i == 0 || i > SLOTS || slots[i - 1])
    }
}

/// Whether [`torch_lstm`] runs on `device` with `dtype`: LibTorch (CPU or CUDA, with or without
/// autodiff) and a float type ATen's LSTM takes.
pub fn has_torch_lstm(device: &Device, dtype: DType) -> bool {
    is_libtorch_float(device, dtype)
}

/// The output of [`torch_lstm`]: every step's hidden state and the final states.
#[derive(Debug, Clone)]
pub struct TorchLstmOutput {
    /// `[T, B, D·H]` (`[B, T, D·H]` when batch-first), forward direction first.
    pub output: Tensor<3>,
    /// `h_n` `[L·D, B, H]`.
    pub h_n: Tensor<3>,
    /// `c_n` `[L·D, B, H]`.
    pub c_n: Tensor<3>,
}

/// The weights of one layer in one direction, as PyTorch names them.
#[derive(Debug, Clone)]
pub struct TorchLstmWeights {
    /// `weight_ih` `[4H, in]`.
    pub w_ih: Tensor<2>,
    /// `weight_hh` `[4H, H]`.
    pub w_hh: Tensor<2>,
    /// `bias_ih` and `bias_hh` `[4H]`, when the layer has them.
    pub biases: Option<(Tensor<1>, Tensor<1>)>,
}

/// One or two stacked LSTM layers through LibTorch's `at::lstm`, or `None` when `input` is not
/// on a LibTorch device (see [`has_torch_lstm`]).
///
/// `weights` holds [`TorchLstmWeights`] per layer and direction in PyTorch's order (layer 0
/// forward, layer 0 backward when bidirectional, layer 1 ...); `input` is `[T, B, in]`
/// (`[B, T, in]` when batch-first), `h0` and `c0` `[L·D, B, H]`. `layout.has_biases` must say
/// whether the weights have biases.
///
/// # Panics
///
/// When `weights` does not hold `L·D` entries, when `L` is not 1 or 2, when the biases do not
/// follow `layout`, or when the shapes do not fit together (`dl_layers::Lstm::try_forward`
/// checks them before calling; the panic carries ATen's message).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_kernels::{TorchLstmLayout, TorchLstmWeights};
///
/// // On any backend but LibTorch there is nothing to run.
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<3>::zeros([5, 2, 3], &device);
/// let weights = TorchLstmWeights {
///     w_ih: Tensor::zeros([16, 3], &device),
///     w_hh: Tensor::zeros([16, 4], &device),
///     biases: None,
/// };
/// let h0 = Tensor::<3>::zeros([1, 2, 4], &device);
/// let layout = TorchLstmLayout {
///     num_layers: 1,
///     has_biases: false,
///     bidirectional: false,
///     batch_first: false,
///     dropout: 0.0,
///     train: false,
/// };
/// assert!(dl_kernels::torch_lstm(&x, &[weights], &h0, &h0, layout).is_none());
/// ```
pub fn torch_lstm(
    input: &Tensor<3>,
    weights: &[TorchLstmWeights],
    h0: &Tensor<3>,
    c0: &Tensor<3>,
    layout: TorchLstmLayout,
) -> Option<TorchLstmOutput> {
    if !has_torch_lstm(&input.device(), input.dtype()) {
        return None;
    }
    assert!(
        (1..=TORCH_LSTM_MAX_LAYERS).contains(&layout.num_layers)
            && weights.len() == layout.num_layers * layout.directions(),
        "torch_lstm: {} layer(s) of {} direction(s) need as many sets of weights, got {}",
        layout.num_layers,
        layout.directions(),
        weights.len()
    );
    assert!(
        weights
            .iter()
            .all(|w| w.biases.is_some() == layout.has_biases),
        "torch_lstm: every layer has biases or none has (has_biases: {})",
        layout.has_biases
    );
    // The slots in order; placeholders (a tensor already at hand, so no new operation and no
    // autodiff node without a gradient, never read) where the call has nothing.
    let placeholder = weights[0].w_hh.clone().into_dispatch();
    let mut slots = vec![placeholder; SLOTS];
    for (i, w) in weights.iter().enumerate() {
        // Layer l, direction d fills slots 8l + 4d .. 8l + 4d + 4.
        let base = 8 * (i / layout.directions()) + 4 * (i % layout.directions());
        slots[base] = w.w_ih.clone().into_dispatch();
        slots[base + 1] = w.w_hh.clone().into_dispatch();
        if let Some((b_ih, b_hh)) = &w.biases {
            slots[base + 2] = b_ih.clone().into_dispatch();
            slots[base + 3] = b_hh.clone().into_dispatch();
        }
    }
    let [
        w00,
        w01,
        w02,
        w03,
        w04,
        w05,
        w06,
        w07,
        w08,
        w09,
        w10,
        w11,
        w12,
        w13,
        w14,
        w15,
    ]: [_; SLOTS] = slots.try_into().expect("sixteen slots");
    let [d0, d1, _] = input.dims();
    let state_dims = h0.dims();
    let out_dims = [d0, d1, layout.directions() * state_dims[2]];
    let flat = <Dispatch as TorchLstmOps>::torch_lstm(
        input.clone().into_dispatch(),
        w00,
        w01,
        w02,
        w03,
        w04,
        w05,
        w06,
        w07,
        w08,
        w09,
        w10,
        w11,
        w12,
        w13,
        w14,
        w15,
        h0.clone().into_dispatch(),
        c0.clone().into_dispatch(),
        layout,
    );
    let flat = Tensor::<1>::from_dispatch(flat);
    let out_len = out_dims.iter().product::<usize>();
    let state_len = state_dims.iter().product::<usize>();
    Some(TorchLstmOutput {
        output: flat.clone().narrow(0, 0, out_len).reshape(out_dims),
        h_n: flat
            .clone()
            .narrow(0, out_len, state_len)
            .reshape(state_dims),
        c_n: flat
            .narrow(0, out_len + state_len, state_len)
            .reshape(state_dims),
    })
}

/// `at::lstm` on the nineteen tch tensors of [`TorchLstmOps::torch_lstm`]: the flat
/// `[output, h_n, c_n]`.
fn aten_lstm(inputs: &[tch::Tensor; SLOTS + 3], layout: TorchLstmLayout) -> tch::Tensor {
    let used = layout.used_slots();
    let weights: Vec<&tch::Tensor> = (0..SLOTS)
        .filter(|&i| used[i])
        .map(|i| &inputs[i + 1])
        .collect();
    let (output, h_n, c_n) = inputs[0]
        .f_lstm(
            &[&inputs[SLOTS + 1], &inputs[SLOTS + 2]],
            &weights,
            layout.has_biases,
            layout.num_layers as i64,
            layout.dropout,
            layout.train,
            layout.bidirectional,
            layout.batch_first,
        )
        .unwrap_or_else(|e| panic!("torch_lstm: LibTorch's lstm refused its inputs: {e}"));
    tch::Tensor::cat(
        &[output.reshape([-1]), h_n.reshape([-1]), c_n.reshape([-1])],
        0,
    )
}

impl TorchLstmOps for LibTorch {
    fn torch_lstm(
        input: FloatTensor<Self>,
        w00: FloatTensor<Self>,
        w01: FloatTensor<Self>,
        w02: FloatTensor<Self>,
        w03: FloatTensor<Self>,
        w04: FloatTensor<Self>,
        w05: FloatTensor<Self>,
        w06: FloatTensor<Self>,
        w07: FloatTensor<Self>,
        w08: FloatTensor<Self>,
        w09: FloatTensor<Self>,
        w10: FloatTensor<Self>,
        w11: FloatTensor<Self>,
        w12: FloatTensor<Self>,
        w13: FloatTensor<Self>,
        w14: FloatTensor<Self>,
        w15: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        layout: TorchLstmLayout,
    ) -> FloatTensor<Self> {
        let inputs = [
            input, w00, w01, w02, w03, w04, w05, w06, w07, w08, w09, w10, w11, w12, w13, w14, w15,
            h0, c0,
        ]
        .map(|t| t.tensor);
        TchTensor::new(tch::no_grad(|| aten_lstm(&inputs, layout)))
    }
}

impl<C: CheckpointStrategy> TorchLstmOps for Autodiff<LibTorch, C> {
    fn torch_lstm(
        input: FloatTensor<Self>,
        w00: FloatTensor<Self>,
        w01: FloatTensor<Self>,
        w02: FloatTensor<Self>,
        w03: FloatTensor<Self>,
        w04: FloatTensor<Self>,
        w05: FloatTensor<Self>,
        w06: FloatTensor<Self>,
        w07: FloatTensor<Self>,
        w08: FloatTensor<Self>,
        w09: FloatTensor<Self>,
        w10: FloatTensor<Self>,
        w11: FloatTensor<Self>,
        w12: FloatTensor<Self>,
        w13: FloatTensor<Self>,
        w14: FloatTensor<Self>,
        w15: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        layout: TorchLstmLayout,
    ) -> FloatTensor<Self> {
        with_torch_autograd::<C, { SLOTS + 3 }>(
            [
                input, w00, w01, w02, w03, w04, w05, w06, w07, w08, w09, w10, w11, w12, w13, w14,
                w15, h0, c0,
            ],
            layout.used(),
            |inputs| aten_lstm(inputs, layout),
            |inputs| {
                TchTensor::new(tch::no_grad(|| {
                    aten_lstm(&inputs.map(|t| t.tensor), layout)
                }))
            },
        )
    }
}
