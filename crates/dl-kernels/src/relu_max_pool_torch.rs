//! ReLU followed by max-pooling through LibTorch's own kernels, as a Burn backend extension.
//!
//! On LibTorch Burn's autodiff differentiates ReLU as a `masked_fill` of the gradient with the
//! mask `x <= 0`, two ATen calls of which `masked_fill` runs element by element (14% of the CNN
//! training step under `perf`). [`TorchReluMaxPoolOps::torch_relu_max_pool2d`] runs
//! `max_pool2d(relu(x))` as PyTorch's `F.relu` and `nn.MaxPool2d` do and lets LibTorch's
//! autograd differentiate it ([`crate::torch_autograd`]): `max_pool2d_with_indices_backward`
//! and the vectorised `threshold_backward`, as in PyTorch. The results are PyTorch's.
//!
//! Other backends are not routed here ([`torch_relu_max_pool2d`] returns `None`).

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, LibTorch, backend_extension};
use burn::tensor::Tensor;

use crate::torch_autograd::{is_libtorch_float, with_torch_autograd};

/// LibTorch's ReLU and max-pool, per backend.
#[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TorchReluMaxPoolOps: Backend {
    /// `max_pool2d(relu(x))` for `x` `[N, C, H, W]`.
    fn torch_relu_max_pool2d(
        x: FloatTensor<Self>,
        options: TorchMaxPoolOptions,
    ) -> FloatTensor<Self>;
}

/// Window, stride, symmetric padding and dilation of [`torch_relu_max_pool2d`], per axis
/// `[height, width]` as in PyTorch's `nn.MaxPool2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorchMaxPoolOptions {
    /// Window size.
    pub kernel_size: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit `-inf` added on both sides.
    pub padding: [usize; 2],
    /// Spacing of the window's taps.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

/// `max_pool2d(relu(x))` through LibTorch's kernels, or `None` when `x` is not on a LibTorch
/// device (CPU or CUDA) with an `f32` or `f64` tensor.
///
/// # Panics
///
/// When ATen refuses the window (`dl_layers::relu_max_pool2d` passes a `MaxPool2d`'s own
/// settings); the panic carries ATen's message.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_kernels::TorchMaxPoolOptions;
///
/// // On any backend but LibTorch there is nothing to run.
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<4>::ones([1, 1, 4, 4], &device);
/// let options = TorchMaxPoolOptions {
///     kernel_size: [2, 2],
///     stride: [2, 2],
///     padding: [0, 0],
///     dilation: [1, 1],
///     ceil_mode: false,
/// };
/// assert!(dl_kernels::torch_relu_max_pool2d(&x, options).is_none());
/// ```
pub fn torch_relu_max_pool2d(x: &Tensor<4>, options: TorchMaxPoolOptions) -> Option<Tensor<4>> {
    if !is_libtorch_float(&x.device(), x.dtype()) {
        return None;
    }
    let out = <Dispatch as TorchReluMaxPoolOps>::torch_relu_max_pool2d(
        x.clone().into_dispatch(),
        options,
    );
    Some(Tensor::from_dispatch(out))
}

fn aten_relu_max_pool2d(x: &tch::Tensor, options: TorchMaxPoolOptions) -> tch::Tensor {
    let pair = |v: [usize; 2]| [v[0] as i64, v[1] as i64];
    x.relu()
        .f_max_pool2d(
            pair(options.kernel_size),
            pair(options.stride),
            pair(options.padding),
            pair(options.dilation),
            options.ceil_mode,
        )
        .unwrap_or_else(|e| panic!("torch_relu_max_pool2d: LibTorch refused the pool: {e}"))
}

impl TorchReluMaxPoolOps for LibTorch {
    fn torch_relu_max_pool2d(
        x: FloatTensor<Self>,
        options: TorchMaxPoolOptions,
    ) -> FloatTensor<Self> {
        TchTensor::new(tch::no_grad(|| aten_relu_max_pool2d(&x.tensor, options)))
    }
}

impl<C: CheckpointStrategy> TorchReluMaxPoolOps for Autodiff<LibTorch, C> {
    fn torch_relu_max_pool2d(
        x: FloatTensor<Self>,
        options: TorchMaxPoolOptions,
    ) -> FloatTensor<Self> {
        with_torch_autograd::<C, 1>(
            [x],
            [true],
            |[x]| aten_relu_max_pool2d(x, options),
            |[x]| LibTorch::torch_relu_max_pool2d(x, options),
        )
    }
}
