//! The fused LSTM recurrence as a Burn backend extension.
//!
//! [`LstmOps::lstm_recurrence`] runs one layer in one direction over a whole sequence, given
//! the input projection of every step (`x_t W_ihᵀ + b_ih + b_hh`, one large product the caller
//! makes with ordinary tensor operations) and the recurrent weight. On Flex it runs the host
//! kernel of [`crate::lstm_host`]: per step one `[B, H] × [H, 4H]` product (with `W_hhᵀ` packed
//! once per pass, [`crate::packed`], from batch 8 up; through gemm below) and one vectorised
//! loop for the gates and the cell update, both split over two threads by batch rows when the
//! pool has two and the step is large enough. Under autodiff its backward pass is the
//! hand-written backpropagation through time of the same module, with the gradient of `W_hh`
//! as one `[4H, T·B] × [T·B, H]` product after the loop, instead of the ~10 recorded
//! operations per step that the composed LSTM leaves to Burn's autodiff.
//!
//! For inference (no autodiff) from 8 sequences up, [`lstm_layer_inference`] runs the whole layer
//! instead: no projection made beforehand, each step multiplies `[x_t, h_{t−1}]` by
//! `[W_ihᵀ; W_hhᵀ]` packed once with the bias, so no `[T, B, 4H]` buffer is written and read
//! back (training needs that projection for its backward pass, so it keeps the split).
//!
//! Backends without the kernel (NdArray, LibTorch, wgpu, CUDA) are not routed here:
//! [`lstm_recurrence`] returns `None` for them and `dl_layers::Lstm` keeps its composed path.
//!
//! Numerics against PyTorch: the same equations in the same order per element; `σ` and `tanh`
//! are the approximations of [`crate::simd_math`] (within 3e-7 relative of the exact
//! values, as PyTorch's own vectorised kernels are), and the products sum in order with fused
//! multiply-adds as gemm does, so results agree with PyTorch's LSTM to f32 rounding (checked in dl-layers' parity tests at
//! rtol 1e-5 for outputs and 1e-4 for gradients).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::gemm::{MatRef, product};
use crate::host::HostTensors;
use crate::lstm_host::{self, Dims, Input, Recurrent};
use crate::packed::PackedRhs;

/// The fused recurrence, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait LstmOps: Backend {
    /// One LSTM layer in one direction over a sequence.
    ///
    /// * `projected` `[T, B, 4H]`: the input projection of every step with both biases, gate
    ///   order `(i, f, g, o)`;
    /// * `w_hh` `[4H, H]` (PyTorch's layout); `h0`, `c0` `[B, H]`;
    /// * `reverse`: process `t = T − 1` first (the backward direction of a bidirectional LSTM);
    /// * `batch_first`: `projected` is `[B, T, 4H]` and the result `[2, B, T, H]`.
    ///
    /// Returns `[2, T, B, H]`: `h_t` of every step, then `c_t` of every step, in time order.
    fn lstm_recurrence(
        projected: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        reverse: bool,
        batch_first: bool,
    ) -> FloatTensor<Self>;
}

/// A whole LSTM layer in one direction, for inference: the input projection inside the
/// recurrence.
#[backend_extension(Flex)]
pub trait LstmInferenceOps: Backend {
    /// One LSTM layer in one direction over a sequence, without autodiff.
    ///
    /// * `x` `[T, B, I]` (or `[B, T, I]` when `batch_first`): the layer's input;
    /// * `w_ih` `[4H, I]`, `bias` `[4H]` (`b_ih + b_hh`), `w_hh` `[4H, H]` (PyTorch's layouts);
    /// * `h0`, `c0` `[B, H]`; `reverse` as in [`LstmOps::lstm_recurrence`].
    ///
    /// Returns what [`LstmOps::lstm_recurrence`] returns for the projection
    /// `x W_ihᵀ + bias`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_layer_inference(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        reverse: bool,
        batch_first: bool,
    ) -> FloatTensor<Self>;
}

/// The weights of one layer in one direction for [`lstm_layer_inference`], PyTorch's layouts.
#[derive(Debug, Clone, Copy)]
pub struct LstmLayerWeights<'a> {
    /// `weight_ih` `[4H, I]`.
    pub w_ih: &'a Tensor<2>,
    /// `weight_hh` `[4H, H]`.
    pub w_hh: &'a Tensor<2>,
    /// `bias_ih + bias_hh` `[4H]`, or `None` for a layer without biases.
    pub bias: Option<&'a Tensor<1>>,
}

/// A whole LSTM layer in one direction for inference, or `None` where this does not apply: on
/// an autodiff device (training keeps the projection for its backward pass: there
/// [`lstm_recurrence`] after one product), on a device without the host kernel (see
/// [`has_fused_lstm`]), and below 8 sequences, where the step's product is too small for the
/// packed form that this path multiplies with.
///
/// Each step makes `x_t W_ihᵀ + h_{t−1} W_hhᵀ + bias` as one product of the step's rows with
/// `[W_ihᵀ; W_hhᵀ]` (packed once per call) instead of reading a projection of the whole
/// sequence made beforehand: no `[T, B, 4H]` buffer is written and read back. Values agree with
/// [`lstm_recurrence`] after the projection to f32 rounding (the same sums, in another order).
///
/// `x` is `[T, B, I]`, or `[B, T, I]` when `batch_first`; the result is that of
/// [`lstm_recurrence`] (or [`lstm_recurrence_batch_first`]): `[2, T, B, H]` or `[2, B, T, H]`.
///
/// # Panics
///
/// When the shapes do not fit together (`dl_layers::Lstm` checks its inputs before calling).
///
/// ```
/// use burn::tensor::{Distribution, Tensor};
/// use dl_kernels::LstmLayerWeights;
///
/// let device = burn::tensor::Device::flex();
/// let (t, b, i, h) = (5, 8, 3, 4);
/// let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Default, &device);
/// let (w_ih, w_hh) = (random([4 * h, i]), random([4 * h, h]));
/// let bias = Tensor::<1>::ones([4 * h], &device);
/// let x = Tensor::<3>::random([t, b, i], Distribution::Default, &device);
/// let zeros = Tensor::<2>::zeros([b, h], &device);
/// let weights = LstmLayerWeights { w_ih: &w_ih, w_hh: &w_hh, bias: Some(&bias) };
/// let fused = dl_kernels::lstm_layer_inference(&x, weights, &zeros, &zeros, false, false)
///     .expect("flex without autodiff, 8 sequences");
/// // The same as projecting first.
/// let projected = x.matmul(w_ih.transpose().unsqueeze::<3>()) + bias.unsqueeze::<3>();
/// let composed =
///     dl_kernels::lstm_recurrence(&projected, &w_hh, &zeros, &zeros, false).unwrap();
/// assert_eq!(fused.dims(), [2, t, b, h]);
/// assert!(fused.all_close(composed, Some(1e-5), Some(1e-6)));
/// ```
pub fn lstm_layer_inference(
    x: &Tensor<3>,
    weights: LstmLayerWeights<'_>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    reverse: bool,
    batch_first: bool,
) -> Option<Tensor<4>> {
    let device = x.device();
    if device.is_autodiff() || !has_fused_lstm(&device, x.dtype()) {
        return None;
    }
    let [d0, d1, size] = x.dims();
    let batch = if batch_first { d0 } else { d1 };
    if batch < PACK_MIN_BATCH {
        return None;
    }
    let [gates, hidden] = weights.w_hh.dims();
    let bias = match weights.bias {
        Some(bias) => bias.clone(),
        None => Tensor::zeros([gates], &device),
    };
    assert!(
        gates == 4 * hidden
            && weights.w_ih.dims() == [gates, size]
            && bias.dims() == [gates]
            && h0.dims() == [batch, hidden]
            && c0.dims() == [batch, hidden],
        "lstm_layer_inference: x {:?} (batch_first {batch_first}) needs w_ih [4H, {size}], \
         w_hh [4H, H], bias [4H], h0 and c0 [{batch}, H]; got {:?}, {:?}, {:?}, {:?}, {:?}",
        x.dims(),
        weights.w_ih.dims(),
        weights.w_hh.dims(),
        bias.dims(),
        h0.dims(),
        c0.dims()
    );
    let out = <Dispatch as LstmInferenceOps>::lstm_layer_inference(
        x.clone().into_dispatch(),
        weights.w_ih.clone().into_dispatch(),
        bias.into_dispatch(),
        weights.w_hh.clone().into_dispatch(),
        h0.clone().into_dispatch(),
        c0.clone().into_dispatch(),
        reverse,
        batch_first,
    );
    Some(Tensor::from_dispatch(out))
}

/// Whether [`lstm_recurrence`] has a native kernel for `f32` tensors on `device` (Flex, with or
/// without autodiff).
///
/// NdArray keeps the composed path: the same host kernel measured 2-3x slower there than
/// NdArray's own operations, because reading its matrix products back into host memory copies
/// them element by element (68% of the LSTM layer's time under perf).
pub fn has_fused_lstm(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// The fused recurrence on tensors, or `None` when their device has no native kernel (see
/// [`has_fused_lstm`]); shapes as in [`LstmOps::lstm_recurrence`] (time-major here; the
/// batch-first layout is [`lstm_recurrence_batch_first`]).
///
/// # Panics
///
/// When the last dimension of `projected` is not `4H` for the `H` of `w_hh` `[4H, H]`, or `h0`
/// and `c0` are not `[B, H]` (`dl_layers::Lstm::try_forward` checks its inputs before calling).
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let (t, b, h) = (5, 2, 3);
/// let projected = Tensor::<3>::zeros([t, b, 4 * h], &device);
/// let w_hh = Tensor::<2>::zeros([4 * h, h], &device);
/// let zeros = Tensor::<2>::zeros([b, h], &device);
/// let states = dl_kernels::lstm_recurrence(&projected, &w_hh, &zeros, &zeros, false)
///     .expect("flex has the fused kernel");
/// assert_eq!(states.dims(), [2, t, b, h]);
/// // All gates 0: c_1 = σ(0) · tanh(0) = 0, and so on.
/// assert_eq!(states.sum().into_scalar::<f32>(), 0.0);
/// ```
pub fn lstm_recurrence(
    projected: &Tensor<3>,
    w_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    reverse: bool,
) -> Option<Tensor<4>> {
    recurrence(projected, w_hh, h0, c0, reverse, false)
}

/// [`lstm_recurrence`] for a batch-first layer: `projected` `[B, T, 4H]`, result
/// `[2, B, T, H]`, so that a batch-first LSTM never transposes its activations.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let projected = Tensor::<3>::zeros([2, 5, 12], &device); // [B, T, 4H]
/// let w_hh = Tensor::<2>::zeros([12, 3], &device);
/// let zeros = Tensor::<2>::zeros([2, 3], &device);
/// let states =
///     dl_kernels::lstm_recurrence_batch_first(&projected, &w_hh, &zeros, &zeros, true).unwrap();
/// assert_eq!(states.dims(), [2, 2, 5, 3]);
/// ```
pub fn lstm_recurrence_batch_first(
    projected: &Tensor<3>,
    w_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    reverse: bool,
) -> Option<Tensor<4>> {
    recurrence(projected, w_hh, h0, c0, reverse, true)
}

fn recurrence(
    projected: &Tensor<3>,
    w_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    reverse: bool,
    batch_first: bool,
) -> Option<Tensor<4>> {
    if !has_fused_lstm(&projected.device(), projected.dtype()) {
        return None;
    }
    let [d0, d1, gates] = projected.dims();
    let batch = if batch_first { d0 } else { d1 };
    let hidden = gates / 4;
    let expected = ([4 * hidden, hidden], [batch, hidden]);
    assert!(
        gates % 4 == 0
            && w_hh.dims() == expected.0
            && h0.dims() == expected.1
            && c0.dims() == expected.1,
        "lstm_recurrence: projected {:?} needs w_hh {:?} and h0, c0 {:?}; got {:?}, {:?}, {:?}",
        projected.dims(),
        expected.0,
        expected.1,
        w_hh.dims(),
        h0.dims(),
        c0.dims()
    );
    let out = <Dispatch as LstmOps>::lstm_recurrence(
        projected.clone().into_dispatch(),
        w_hh.clone().into_dispatch(),
        h0.clone().into_dispatch(),
        c0.clone().into_dispatch(),
        reverse,
        batch_first,
    );
    Some(Tensor::from_dispatch(out))
}

/// The forward pass without autodiff, on a backend with host tensors.
macro_rules! host_lstm_ops {
    ($backend:ty) => {
        impl LstmOps for $backend {
            fn lstm_recurrence(
                projected: FloatTensor<Self>,
                w_hh: FloatTensor<Self>,
                h0: FloatTensor<Self>,
                c0: FloatTensor<Self>,
                reverse: bool,
                batch_first: bool,
            ) -> FloatTensor<Self> {
                let dims = dims_of::<Self>(&projected, batch_first);
                forward::<Self>(dims, projected, w_hh, h0, c0, reverse, false).0
            }
        }

        impl LstmInferenceOps for $backend {
            fn lstm_layer_inference(
                x: FloatTensor<Self>,
                w_ih: FloatTensor<Self>,
                bias: FloatTensor<Self>,
                w_hh: FloatTensor<Self>,
                h0: FloatTensor<Self>,
                c0: FloatTensor<Self>,
                reverse: bool,
                batch_first: bool,
            ) -> FloatTensor<Self> {
                let shape = burn::backend::TensorMetadata::shape(&x);
                let size = shape[2];
                let (steps, batch) = if batch_first {
                    (shape[1], shape[0])
                } else {
                    (shape[0], shape[1])
                };
                let hidden = burn::backend::TensorMetadata::shape(&w_hh)[1];
                let dims = Dims {
                    steps,
                    batch,
                    hidden,
                    batch_first,
                };
                let weights = Weights::with_input::<Self>(&w_ih, &bias, &w_hh, dims);
                let out = lstm_host::forward(
                    dims,
                    Input::Raw {
                        x: &Self::host_values(&x),
                        size,
                    },
                    &Self::host_values(&h0),
                    &Self::host_values(&c0),
                    reverse,
                    false,
                    &weights,
                );
                let [d0, d1, _] = sequence_shape(dims, hidden);
                Self::from_host(out.states, Shape::new([2, d0, d1, hidden]))
            }
        }
    };
}

host_lstm_ops!(Flex);

/// Batches of at least this many sequences pack `W_hh` once per pass ([`crate::packed`]); smaller
/// ones multiply through [`crate::gemm`] directly, where the product of a step is too small to
/// repay packing (at batch 1 gemm multiplies by a matrix-vector loop without packing).
const PACK_MIN_BATCH: usize = 8;

/// `W_hh` `[4H, H]` on the host and the two products with it, into buffers the recurrence
/// reuses: `h W_hhᵀ` in the forward steps, `dz W_hh` in the backward steps. Through the
/// backend's matmul each step paid for an extra zero-filled and copied output; through gemm at
/// batch 64 for a repacking of the same weight at every step, hence the packed form.
enum Weights {
    /// `W_hhᵀ` (forward) or `W_hh` (backward) packed, for batches of [`PACK_MIN_BATCH`] and up;
    /// for [`LstmInferenceOps::lstm_layer_inference`], `[W_ihᵀ; W_hhᵀ]` with the bias.
    Packed(PackedRhs),
    /// `W_hh` `[4H, H]` row-major, multiplied through gemm (batches under [`PACK_MIN_BATCH`]).
    Plain { w_hh: Vec<f32>, hidden: usize },
}

impl Weights {
    /// For one pass: the forward steps (`forward`) or the backward steps.
    fn new<B: HostTensors>(w_hh: &FloatTensor<B>, dims: Dims, forward: bool) -> Self {
        let values = B::host_values(w_hh);
        let hidden = dims.hidden;
        if dims.batch >= PACK_MIN_BATCH {
            let view = MatRef::row_major(&values, 4 * hidden, hidden);
            Self::Packed(PackedRhs::new(if forward { view.t() } else { view }))
        } else {
            Self::Plain {
                w_hh: values.into_owned(),
                hidden,
            }
        }
    }

    /// For the forward steps of [`LstmInferenceOps::lstm_layer_inference`]: `[W_ihᵀ; W_hhᵀ]`
    /// and the bias packed together, whatever the batch, since only that form multiplies the
    /// step's input as well.
    fn with_input<B: HostTensors>(
        w_ih: &FloatTensor<B>,
        bias: &FloatTensor<B>,
        w_hh: &FloatTensor<B>,
        dims: Dims,
    ) -> Self {
        let (w_ih, w_hh) = (B::host_values(w_ih), B::host_values(w_hh));
        let bias = B::host_values(bias);
        let hidden = dims.hidden;
        let size = w_ih.len() / (4 * hidden).max(1);
        Self::Packed(PackedRhs::stacked(
            Some(MatRef::row_major(&w_ih, 4 * hidden, size).t()),
            MatRef::row_major(&w_hh, 4 * hidden, hidden).t(),
            Some(&bias),
        ))
    }
}

impl Recurrent for Weights {
    fn hidden_to_gates(&self, x: &[f32], h: &[f32], gates: &mut [f32]) {
        match self {
            Self::Packed(packed) => packed.product_stacked(gates, x, h),
            Self::Plain { w_hh, hidden } => {
                // Only `with_input` multiplies the input, and it always packs.
                debug_assert!(x.is_empty(), "an input projection without packed weights");
                let w_hh = MatRef::row_major(w_hh, 4 * hidden, *hidden);
                let h = MatRef::row_major(h, h.len() / (*hidden).max(1), *hidden);
                product(gates, h, w_hh.t(), false, false);
            }
        }
    }

    fn gates_to_hidden(&self, dz: &[f32], dh: &mut [f32]) {
        match self {
            Self::Packed(packed) => packed.product(dh, dz),
            Self::Plain { w_hh, hidden } => {
                let w_hh = MatRef::row_major(w_hh, 4 * hidden, *hidden);
                let dz = MatRef::row_major(dz, dz.len() / (4 * hidden).max(1), 4 * hidden);
                product(dh, dz, w_hh, false, false);
            }
        }
    }
}

fn dims_of<B: Backend>(projected: &FloatTensor<B>, batch_first: bool) -> Dims {
    let shape = burn::backend::TensorMetadata::shape(projected);
    let (steps, batch) = if batch_first {
        (shape[1], shape[0])
    } else {
        (shape[0], shape[1])
    };
    Dims {
        steps,
        batch,
        hidden: shape[2] / 4,
        batch_first,
    }
}

/// `[T, B, inner]` or `[B, T, inner]`.
fn sequence_shape(dims: Dims, inner: usize) -> [usize; 3] {
    if dims.batch_first {
        [dims.batch, dims.steps, inner]
    } else {
        [dims.steps, dims.batch, inner]
    }
}

/// The forward pass on a host backend: `(states, [T, B, 4H] gates if kept)`.
fn forward<B: HostTensors>(
    dims: Dims,
    projected: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
    reverse: bool,
    keep_gates: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let weights = Weights::new::<B>(&w_hh, dims, true);
    let out = lstm_host::forward(
        dims,
        Input::Projected(&B::host_values(&projected)),
        &B::host_values(&h0),
        &B::host_values(&c0),
        reverse,
        keep_gates,
        &weights,
    );
    let (t, b, h) = (dims.steps, dims.batch, dims.hidden);
    let [d0, d1, _] = sequence_shape(dims, h);
    let states = B::from_host(out.states, Shape::new([2, d0, d1, h]));
    let gates = out
        .gates
        .map(|g| B::from_host(g, Shape::new([t, b, 4 * h])));
    (states, gates)
}

/// What the backward pass keeps from the forward pass.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    states: FloatTensor<B>,
    gates: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
    reverse: bool,
    dims: Dims,
}

/// Backpropagation through time for [`LstmOps::lstm_recurrence`].
#[derive(Debug)]
struct RecurrenceBackward;

impl<B: HostTensors> Backward<B, 4> for RecurrenceBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let saved = ops.state;
        let dims = saved.dims;
        let weights = Weights::new::<B>(&saved.w_hh, dims, false);
        let back = lstm_host::backward(
            dims,
            &B::host_values(&grad),
            &B::host_values(&saved.states),
            &B::host_values(&saved.gates),
            &B::host_values(&saved.h0),
            &B::host_values(&saved.c0),
            saved.reverse,
            &weights,
        );
        let (t, b, h) = (dims.steps, dims.batch, dims.hidden);
        let [projected, w_hh, h0, c0] = ops.parents;
        let d_projected = B::from_host(back.d_projected, Shape::new([t * b, 4 * h]));
        if let Some(node) = w_hh {
            // d W_hh = Σ_t dz_tᵀ h_{t−1}: one product over all steps.
            let h_prev = B::from_host(back.h_prev, Shape::new([t * b, h]));
            let d_w = B::float_matmul(B::float_transpose(d_projected.clone()), h_prev);
            grads.register::<B>(node.id, d_w);
        }
        if let Some(node) = projected {
            let shape = Shape::new(sequence_shape(dims, 4 * h));
            grads.register::<B>(node.id, B::float_reshape(d_projected, shape));
        }
        if let Some(node) = h0 {
            grads.register::<B>(node.id, B::from_host(back.d_h0, Shape::new([b, h])));
        }
        if let Some(node) = c0 {
            grads.register::<B>(node.id, B::from_host(back.d_c0, Shape::new([b, h])));
        }
    }
}

impl<B: HostTensors + LstmOps, C: CheckpointStrategy> LstmOps for Autodiff<B, C> {
    fn lstm_recurrence(
        projected: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        reverse: bool,
        batch_first: bool,
    ) -> FloatTensor<Self> {
        let nodes = [projected.node(), w_hh.node(), h0.node(), c0.node()];
        let prep = RecurrenceBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let (projected, w_hh, h0, c0) = (
            projected.into_primitive(),
            w_hh.into_primitive(),
            h0.into_primitive(),
            c0.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let dims = dims_of::<B>(&projected, batch_first);
                let (states, gates) = forward::<B>(
                    dims,
                    projected,
                    w_hh.clone(),
                    h0.clone(),
                    c0.clone(),
                    reverse,
                    true,
                );
                let saved = Saved {
                    states: states.clone(),
                    gates: gates.expect("the gates are kept when asked for"),
                    w_hh,
                    h0,
                    c0,
                    reverse,
                    dims,
                };
                prep.finish(saved, states)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::lstm_recurrence(
                projected,
                w_hh,
                h0,
                c0,
                reverse,
                batch_first,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "lstm_recurrence: projected [5, 2, 12] needs w_hh [12, 3]")]
    fn inconsistent_shapes_are_named() {
        let device = Device::flex();
        let projected = Tensor::<3>::zeros([5, 2, 12], &device);
        let w_hh = Tensor::<2>::zeros([12, 4], &device);
        let zeros = Tensor::<2>::zeros([2, 3], &device);
        let _ = lstm_recurrence(&projected, &w_hh, &zeros, &zeros, false);
    }

    #[test]
    #[should_panic(
        expected = "lstm_layer_inference: x [5, 8, 3] (batch_first false) needs \
                               w_ih [4H, 3]"
    )]
    fn inconsistent_inference_shapes_are_named() {
        let device = Device::flex();
        let x = Tensor::<3>::zeros([5, 8, 3], &device);
        let (w_ih, w_hh) = (
            Tensor::zeros([12, 4], &device),
            Tensor::zeros([12, 3], &device),
        );
        let zeros = Tensor::<2>::zeros([8, 3], &device);
        let weights = LstmLayerWeights {
            w_ih: &w_ih,
            w_hh: &w_hh,
            bias: None,
        };
        let _ = lstm_layer_inference(&x, weights, &zeros, &zeros, false, false);
    }

    #[test]
    fn inference_takes_plain_devices_from_eight_sequences() {
        let run = |device: &Device, batch: usize| {
            let x = Tensor::<3>::zeros([5, batch, 3], device);
            let (w_ih, w_hh) = (Tensor::zeros([8, 3], device), Tensor::zeros([8, 2], device));
            let zeros = Tensor::<2>::zeros([batch, 2], device);
            let weights = LstmLayerWeights {
                w_ih: &w_ih,
                w_hh: &w_hh,
                bias: None,
            };
            lstm_layer_inference(&x, weights, &zeros, &zeros, true, false)
        };
        let plain = Device::flex();
        let states = run(&plain, 8).expect("flex, 8 sequences");
        assert_eq!(states.dims(), [2, 5, 8, 2]);
        // All gates 0 without a bias: every state stays 0.
        assert_eq!(states.abs().sum().into_scalar::<f32>(), 0.0);
        assert!(
            run(&plain, 7).is_none(),
            "below 8 sequences: the projection first"
        );
        assert!(
            run(&plain.clone().autodiff(), 8).is_none(),
            "training keeps the projection"
        );
    }

    #[test]
    #[cfg(feature = "ndarray")]
    fn other_backends_are_not_routed() {
        #[allow(deprecated)]
        let device = Device::ndarray();
        let projected = Tensor::<3>::zeros([5, 2, 12], &device);
        let w_hh = Tensor::<2>::zeros([12, 3], &device);
        let zeros = Tensor::<2>::zeros([2, 3], &device);
        assert!(!has_fused_lstm(&device, DType::F32));
        assert!(lstm_recurrence(&projected, &w_hh, &zeros, &zeros, false).is_none());
        assert!(!has_fused_lstm(&Device::flex(), DType::F64));
    }
}
