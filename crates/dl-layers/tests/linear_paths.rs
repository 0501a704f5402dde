//! `dl_layers::linear` takes a native path where the device has one (dl-kernels' linear on
//! Flex, LibTorch's `at::linear` for inference on LibTorch): on every backend its result must be
//! Burn's own `linear` to f32 rounding, for 2-D and 3-D inputs, on the plain device (inference)
//! and on the autodiff device (training), where the gradients must agree as well.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Device, Distribution, Tensor};
use dl_core::BackendKind;

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn native_equals_burns(backend: BackendKind) {
    let plain = backend.device().unwrap();
    dl_core::seed_device(&plain, 5);
    let (w, b) = (random([6, 4], &plain), random([4], &plain));
    let x2 = random([3, 6], &plain);
    let x3 = random([2, 5, 6], &plain);
    // Inference.
    let ours = dl_layers::linear(x2.clone(), w.clone(), Some(b.clone()));
    let burns = burn::tensor::module::linear(x2.clone(), w.clone(), Some(b.clone()));
    dl_core::assert_tensor_close!(ours, burns, 1e-6, 1e-6);
    let ours = dl_layers::linear(x3.clone(), w.clone(), Some(b.clone()));
    let burns = burn::tensor::module::linear(x3, w.clone(), Some(b.clone()));
    dl_core::assert_tensor_close!(ours, burns, 1e-6, 1e-6);
    // Training: the same values and gradients on the autodiff device.
    let device = backend.autodiff_device().unwrap();
    let on = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &device).require_grad();
    let (x, w) = (on(&x2), on(&w));
    let b = Tensor::<1>::from_data(b.to_data(), &device).require_grad();
    let grads = |y: Tensor<2>| {
        let g = y.clone().sum().backward();
        (
            y.inner(),
            x.grad(&g).unwrap(),
            w.grad(&g).unwrap(),
            b.grad(&g).unwrap(),
        )
    };
    let (y1, dx1, dw1, db1) = grads(dl_layers::linear(x.clone(), w.clone(), Some(b.clone())));
    let burns = burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone()));
    let (y2, dx2, dw2, db2) = grads(burns);
    dl_core::assert_tensor_close!(y1, y2, 1e-6, 1e-6);
    dl_core::assert_tensor_close!(dx1, dx2, 1e-6, 1e-6);
    dl_core::assert_tensor_close!(dw1, dw2, 1e-6, 1e-6);
    dl_core::assert_tensor_close!(db1, db2, 1e-6, 1e-6);
}

mod native_linear_equals_burns {
    dl_core::per_backend_tests!(super::native_equals_burns);
}

/// LibTorch's `at::linear` is used for inference only: `torch_linear` declines an autodiff
/// device (where Burn's recorded product and addition are kept, see `linear_torch.rs`).
#[cfg(feature = "tch")]
mod torch_linear_is_for_inference {
    #[test]
    fn tch() {
        let backend = super::BackendKind::Tch;
        let plain = backend.device().unwrap();
        let (x, w, b) = (
            super::random([2, 3], &plain),
            super::random([3, 4], &plain),
            super::random([4], &plain),
        );
        assert!(dl_kernels::torch_linear(&x, &w, &b).is_some());
        let device = backend.autodiff_device().unwrap();
        let on = |t: &burn::tensor::Tensor<2>| {
            burn::tensor::Tensor::<2>::from_data(t.to_data(), &device)
        };
        let b = burn::tensor::Tensor::<1>::from_data(b.to_data(), &device);
        assert!(dl_kernels::torch_linear(&on(&x), &on(&w), &b).is_none());
    }
}

/// Shapes LibTorch cannot multiply reach `at::linear` only through a direct call of
/// `torch_linear` (`dl_layers::linear` checks them first); ATen's refusal becomes a panic that
/// names the kernel and carries ATen's message.
#[cfg(feature = "tch")]
mod torch_linear_reports_atens_refusal {
    #[test]
    #[should_panic(expected = "torch_linear: LibTorch refused the shapes")]
    fn tch() {
        let plain = super::BackendKind::Tch.device().unwrap();
        let x = super::random([2, 3], &plain);
        let w = super::random([5, 4], &plain);
        let b = super::random([4], &plain);
        let _ = dl_kernels::torch_linear(&x, &w, &b);
    }
}
