//! LibTorch's own 2-D convolution and its backward pass, as a Burn backend extension.
//!
//! Burn's autodiff differentiates `conv2d` with backend-generic rules on every backend but
//! CubeCL: the input gradient as a transposed convolution and the weight gradient as another
//! convolution with batch and channels swapped, whose kernel is as large as the output plane.
//! On LibTorch that second convolution is a shape oneDNN handles poorly (the CNN training step
//! took 1.36x PyTorch's time). [`TorchConv2dOps::torch_conv2d`] runs `at::conv2d` and lets
//! LibTorch's autograd differentiate it ([`crate::torch_autograd`]), so both gradients come
//! from `convolution_backward`, as in PyTorch: the results are PyTorch's.
//!
//! Other backends are not routed here ([`torch_conv2d`] returns `None`).

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, LibTorch, backend_extension};
use burn::tensor::Tensor;

use crate::torch_autograd::{is_libtorch_float, with_torch_autograd};

/// LibTorch's convolution, per backend.
#[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TorchConv2dOps: Backend {
    /// `conv2d(x, weight, bias)`: `x` `[N, C, H, W]`, `weight` `[C_out, C / groups, k_h, k_w]`,
    /// `bias` `[C_out]`; result `[N, C_out, H_out, W_out]`.
    fn torch_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: TorchConv2dOptions,
    ) -> FloatTensor<Self>;
}

/// Stride, symmetric zero padding, dilation and groups of [`torch_conv2d`], per axis
/// `[height, width]` as in PyTorch's `nn.Conv2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorchConv2dOptions {
    /// Step between windows.
    pub stride: [usize; 2],
    /// Zeros added on both sides.
    pub padding: [usize; 2],
    /// Spacing of the kernel's taps.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

/// `conv2d(x, weight, bias)` through LibTorch's `at::conv2d`, or `None` when `x` is not on a
/// LibTorch device (CPU or CUDA) with an `f32` or `f64` tensor.
///
/// # Panics
///
/// When the shapes do not fit together (`dl_layers::conv2d_forward` leaves those cases to
/// Burn's `Conv2d`, which reports them); the panic carries ATen's message.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_kernels::TorchConv2dOptions;
///
/// // On any backend but LibTorch there is nothing to run.
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<4>::ones([2, 1, 5, 5], &device);
/// let weight = Tensor::<4>::ones([3, 1, 3, 3], &device);
/// let bias = Tensor::<1>::zeros([3], &device);
/// let options = TorchConv2dOptions { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
/// assert!(dl_kernels::torch_conv2d(&x, &weight, &bias, options).is_none());
/// ```
pub fn torch_conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: &Tensor<1>,
    options: TorchConv2dOptions,
) -> Option<Tensor<4>> {
    if !is_libtorch_float(&x.device(), x.dtype()) {
        return None;
    }
    let out = <Dispatch as TorchConv2dOps>::torch_conv2d(
        x.clone().into_dispatch(),
        weight.clone().into_dispatch(),
        bias.clone().into_dispatch(),
        options,
    );
    Some(Tensor::from_dispatch(out))
}

fn aten_conv2d(
    x: &tch::Tensor,
    weight: &tch::Tensor,
    bias: &tch::Tensor,
    options: TorchConv2dOptions,
) -> tch::Tensor {
    let pair = |v: [usize; 2]| [v[0] as i64, v[1] as i64];
    x.f_conv2d(
        weight,
        Some(bias),
        pair(options.stride),
        pair(options.padding),
        pair(options.dilation),
        options.groups as i64,
    )
    .unwrap_or_else(|e| panic!("torch_conv2d: LibTorch's conv2d refused its inputs: {e}"))
}

impl TorchConv2dOps for LibTorch {
    fn torch_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: TorchConv2dOptions,
    ) -> FloatTensor<Self> {
        let y = tch::no_grad(|| aten_conv2d(&x.tensor, &weight.tensor, &bias.tensor, options));
        TchTensor::new(y)
    }
}

impl<C: CheckpointStrategy> TorchConv2dOps for Autodiff<LibTorch, C> {
    fn torch_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: TorchConv2dOptions,
    ) -> FloatTensor<Self> {
        with_torch_autograd::<C, 3>(
            [x, weight, bias],
            [true; 3],
            |[x, weight, bias]| aten_conv2d(x, weight, bias, options),
            |[x, weight, bias]| LibTorch::torch_conv2d(x, weight, bias, options),
        )
    }
}
