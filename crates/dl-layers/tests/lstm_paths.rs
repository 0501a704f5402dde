//! The LSTM's native paths against its composed path (`Lstm::fused = false`, the same tensor
//! operations on every backend) on the same device: the fused recurrence of `dl-kernels` on
//! Flex, LibTorch's own `at::lstm` on LibTorch (`--features tch`). Outputs, final states and
//! every gradient, for stacked, bidirectional, batch-first, bias-free and initial-state layers:
//! rtol 1e-5 for values, 1e-4 for gradients (the products are summed in another order, and the
//! gradients of `W_hh` sum over all steps).
#![allow(clippy::unwrap_used)]

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use dl_core::BackendKind;
use dl_layers::{Lstm, LstmConfig};

/// One test per backend with a native LSTM (NdArray has none: the composed path is its only
/// one, which the PyTorch parity suite checks).
mod native_path_matches_the_composed_path {
    #[cfg(feature = "flex")]
    #[test]
    fn flex() {
        super::native_matches_composed(dl_core::BackendKind::Flex);
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch() {
        super::native_matches_composed(dl_core::BackendKind::Tch);
    }
}

fn has_native_lstm(device: &Device) -> bool {
    let f32 = burn::tensor::DType::F32;
    #[cfg(feature = "tch")]
    if dl_kernels::has_torch_lstm(device, f32) {
        return true;
    }
    dl_kernels::has_fused_lstm(device, f32)
}

fn native_matches_composed(backend: BackendKind) {
    let device = backend.autodiff_device().unwrap();
    // Otherwise both runs below would take the composed path and prove nothing.
    assert!(has_native_lstm(&device), "{backend}: no native LSTM");
    assert!(has_native_lstm(&backend.device().unwrap()));
    for (layers, bidirectional, batch_first, bias, with_state) in [
        (2, true, false, true, true),
        (2, false, true, true, false),
        (1, false, false, false, true),
        (3, true, true, true, false),
        (2, true, false, false, true),
    ] {
        dl_core::seed_device(&device, 21);
        let fused = LstmConfig::new(5, 7)
            .with_num_layers(layers)
            .with_bidirectional(bidirectional)
            .with_batch_first(batch_first)
            .with_bias(bias)
            .init(&device)
            .unwrap();
        let mut composed = fused.clone();
        composed.fused = false;
        // 10 steps of 10 sequences either way round: from 8 sequences up inference on Flex
        // takes the input projection into the recurrence (`dl_kernels::lstm_layer_inference`).
        let x = Tensor::<3>::random([10, 10, 5], Distribution::Normal(0.0, 1.0), &device);
        let slots = layers * if bidirectional { 2 } else { 1 };
        let state = with_state.then(|| {
            let s = || Tensor::<3>::random([slots, 10, 7], Distribution::Normal(0.0, 1.0), &device);
            (s(), s())
        });
        let run = |lstm: &Lstm| {
            let x = x.clone().require_grad();
            let state = state
                .clone()
                .map(|(h, c)| (h.require_grad(), c.require_grad()));
            let (out, (h_n, c_n)) = lstm.forward(x.clone(), state.clone());
            // A loss that weighs every element differently, so no gradient is symmetric.
            let w = |t: &Tensor<3>| Tensor::<3>::random(t.dims(), Distribution::Default, &device);
            dl_core::seed_device(&device, 3);
            let loss = (out.clone() * w(&out)).sum()
                + (h_n.clone() * w(&h_n)).sum()
                + (c_n.clone() * w(&c_n)).sum();
            let grads = loss.backward();
            let mut params = Vec::new();
            for layer in lstm.layers.iter().chain(&lstm.reverse_layers) {
                params.push(layer.weight_ih.grad(&grads).unwrap());
                params.push(layer.weight_hh.grad(&grads).unwrap());
                if let (Some(bi), Some(bh)) = (&layer.bias_ih, &layer.bias_hh) {
                    params.push(bi.grad(&grads).unwrap().unsqueeze::<2>());
                    params.push(bh.grad(&grads).unwrap().unsqueeze::<2>());
                }
            }
            let state_grads = state
                .as_ref()
                .map(|(h0, c0)| (h0.grad(&grads).unwrap(), c0.grad(&grads).unwrap()));
            (
                out.inner(),
                h_n.inner(),
                c_n.inner(),
                x.grad(&grads).unwrap(),
                state_grads,
                params,
            )
        };
        let (out_f, h_f, c_f, dx_f, ds_f, dp_f) = run(&fused);
        let (out_c, h_c, c_c, dx_c, ds_c, dp_c) = run(&composed);
        dl_core::assert_tensor_close!(out_f, out_c, 1e-5, 1e-6);
        dl_core::assert_tensor_close!(h_f, h_c, 1e-5, 1e-6);
        dl_core::assert_tensor_close!(c_f, c_c, 1e-5, 1e-6);
        dl_core::assert_tensor_close!(dx_f, dx_c, 1e-4, 1e-5);
        if let (Some((dh_f, dc_f)), Some((dh_c, dc_c))) = (ds_f, ds_c) {
            dl_core::assert_tensor_close!(dh_f, dh_c, 1e-4, 1e-5);
            dl_core::assert_tensor_close!(dc_f, dc_c, 1e-4, 1e-5);
        }
        assert_eq!(dp_f.len(), dp_c.len());
        for (f, c) in dp_f.into_iter().zip(dp_c) {
            dl_core::assert_tensor_close!(f, c, 1e-4, 1e-5);
        }
        // Inference on the plain device takes the fused forward without autodiff: all 10
        // sequences, and 3 of them (below 8: the projection made first, as in training).
        let plain_fused = fused.valid();
        let mut plain_composed = plain_fused.clone();
        plain_composed.fused = false;
        let x = x.clone().inner();
        let state = state.clone().map(|(h, c)| (h.inner(), c.inner()));
        for batch in [10, 3] {
            let x = x.clone().narrow(usize::from(!batch_first), 0, batch);
            let state = state
                .clone()
                .map(|(h, c)| (h.narrow(1, 0, batch), c.narrow(1, 0, batch)));
            let (a, (ha, ca)) = plain_fused.forward(x.clone(), state.clone());
            let (b, (hb, cb)) = plain_composed.forward(x, state);
            dl_core::assert_tensor_close!(a, b, 1e-5, 1e-6);
            dl_core::assert_tensor_close!(ha, hb, 1e-5, 1e-6);
            dl_core::assert_tensor_close!(ca, cb, 1e-5, 1e-6);
        }
    }
}

/// `dl_kernels::torch_lstm` names what its caller got wrong instead of handing ATen weights
/// it would misread: a weight count that does not match the layout, and biases on only some
/// layers.
#[cfg(feature = "tch")]
mod torch_lstm_refuses_weights_that_do_not_fit_the_layout {
    use super::*;
    use dl_kernels::{TorchLstmLayout, TorchLstmWeights};

    fn weights(device: &Device, biases: bool) -> TorchLstmWeights {
        TorchLstmWeights {
            w_ih: Tensor::zeros([16, 3], device),
            w_hh: Tensor::zeros([16, 4], device),
            biases: biases.then(|| (Tensor::zeros([16], device), Tensor::zeros([16], device))),
        }
    }

    fn layout(num_layers: usize, has_biases: bool) -> TorchLstmLayout {
        TorchLstmLayout {
            num_layers,
            has_biases,
            bidirectional: false,
            batch_first: false,
            dropout: 0.0,
            train: false,
        }
    }

    #[test]
    #[should_panic(
        expected = "torch_lstm: 1 layer(s) of 1 direction(s) need as many sets of \
                               weights, got 2"
    )]
    fn tch() {
        let device = BackendKind::Tch.device().unwrap();
        let x = Tensor::<3>::zeros([5, 2, 3], &device);
        let h0 = Tensor::<3>::zeros([1, 2, 4], &device);
        let two = [weights(&device, true), weights(&device, true)];
        let _ = dl_kernels::torch_lstm(&x, &two, &h0, &h0, layout(1, true));
    }

    mod mixed_biases {
        use super::*;

        #[test]
        #[should_panic(expected = "torch_lstm: every layer has biases or none has \
                                   (has_biases: true)")]
        fn tch() {
            let device = BackendKind::Tch.device().unwrap();
            let x = Tensor::<3>::zeros([5, 2, 3], &device);
            let h0 = Tensor::<3>::zeros([2, 2, 4], &device);
            let mut upper = weights(&device, false);
            upper.w_ih = Tensor::zeros([16, 4], &device);
            let mixed = [weights(&device, true), upper];
            let _ = dl_kernels::torch_lstm(&x, &mixed, &h0, &h0, layout(2, true));
        }
    }
}
