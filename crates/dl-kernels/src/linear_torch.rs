//! A linear map through LibTorch's own `at::linear`, for inference, as a Burn backend extension.
//!
//! Burn's `linear` on LibTorch is a `matmul` followed by a separate broadcast addition of the
//! bias: two ATen calls and a second pass over the output, where PyTorch's `nn.Linear` makes one
//! `addmm` (the bias is the product's starting value). [`TorchLinearOps::torch_linear`] calls
//! `at::linear` itself, so the kernels and the result are PyTorch's.
//!
//! Inference only: [`torch_linear`] returns `None` on an autodiff device. Under autodiff the
//! same call through LibTorch's autograd ([`crate::torch_autograd`]) was measured slower than
//! Burn's two recorded operations (the MLP training step 3.3 → 5.6-6.9 ms: recording and
//! replaying LibTorch's graph costs more than the extra pass at these sizes;
//! docs/performance.md).

// burn-tch 0.22 marks itself deprecated in favour of CubeCL backends; LibTorch stays one of
// dl-rs's backends (docs/backends.md), so this module uses it knowingly.
#![allow(deprecated)]

use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, LibTorch, backend_extension};
use burn::tensor::Tensor;

use crate::torch_autograd::is_libtorch_float;

/// LibTorch's linear map, per backend.
#[backend_extension(LibTorch: cfg(feature = "tch"))]
pub trait TorchLinearOps: Backend {
    /// `x W + b` over the last axis of `x`, `weight` `[in, out]` (Burn's layout), `bias`
    /// `[out]`.
    fn torch_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `x W + b` over the last axis of `x` through `at::linear`, with `weight` `[in, out]` (Burn's
/// layout), or `None` when `x` is not on a plain (not autodiff) LibTorch device with an `f32`
/// or `f64` tensor.
///
/// # Panics
///
/// When the shapes do not fit (`dl_layers::linear` checks them before calling); the panic
/// carries ATen's message.
///
/// ```
/// use burn::tensor::Tensor;
///
/// // On any backend but LibTorch there is nothing to run.
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<2>::ones([2, 3], &device);
/// let w = Tensor::<2>::ones([3, 4], &device);
/// let b = Tensor::<1>::zeros([4], &device);
/// assert!(dl_kernels::torch_linear(&x, &w, &b).is_none());
/// ```
pub fn torch_linear<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
) -> Option<Tensor<D>> {
    let device = x.device();
    if device.is_autodiff() || !is_libtorch_float(&device, x.dtype()) {
        return None;
    }
    let out = <Dispatch as TorchLinearOps>::torch_linear(
        x.clone().into_dispatch(),
        weight.clone().into_dispatch(),
        bias.clone().into_dispatch(),
    );
    Some(Tensor::from_dispatch(out))
}

impl TorchLinearOps for LibTorch {
    fn torch_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // at::linear takes PyTorch's `[out, in]`: the transposed view of Burn's `[in, out]`,
        // which for a weight loaded from PyTorch is the original storage again (no copy).
        let out = tch::no_grad(|| {
            x.tensor
                .f_linear(&weight.tensor.tr(), Some(&bias.tensor))
                .unwrap_or_else(|e| panic!("torch_linear: LibTorch refused the shapes: {e}"))
        });
        TchTensor::new(out)
    }
}
