//! The LSTM's inter-layer dropout has PyTorch's semantics (`nn.LSTM(dropout=p)`): in training
//! it zeroes elements of the output of every layer but the last, each with probability `p`,
//! and scales the survivors by `1 / (1 - p)`; the last layer's output is never dropped; in
//! evaluation nothing is.
//!
//! The layers are read through the public API. The upper layer of a 2-layer LSTM is given
//! weights that make it a known, invertible function of its input for one time step: input
//! and output gates saturated open (`sigmoid(40) = 1` in f32), no recurrence, and
//! `g = 0.01 x`, so `h = tanh(tanh(0.01 x))`, with `h = 0` exactly where `x = 0`. What the
//! upper layer received — the lower layer's output after dropout — is then visible in the
//! LSTM's output element by element.
#![allow(clippy::unwrap_used)]

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use dl_core::BackendKind;
use dl_layers::{Lstm, LstmConfig, set_training};

const P: f64 = 0.5;
const HIDDEN: usize = 32;
const INPUT: usize = 5;
const BATCH: usize = 128;

/// Layer 1 of `lstm` replaced by the transparent layer described at the top.
fn transparent_upper_layer(mut lstm: Lstm, device: &Device) -> Lstm {
    let h = HIDDEN;
    let mut w_ih = vec![0.0f32; 4 * h * h];
    let mut bias = vec![0.0f32; 4 * h];
    for j in 0..h {
        // Gate order i, f, g, o: g (rows 2h..3h) reads its own input feature.
        w_ih[(2 * h + j) * h + j] = 0.01;
        bias[j] = 40.0; // i open
        bias[3 * h + j] = 40.0; // o open
    }
    let layer = &mut lstm.layers[1];
    layer.weight_ih =
        Param::from_tensor(Tensor::from_data(TensorData::new(w_ih, [4 * h, h]), device));
    layer.weight_hh = Param::from_tensor(Tensor::zeros([4 * h, h], device));
    layer.bias_ih = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias, [4 * h]),
        device,
    )));
    layer.bias_hh = Some(Param::from_tensor(Tensor::zeros([4 * h], device)));
    lstm
}

/// The lower layer alone, as a 1-layer LSTM.
fn lower_layer(lstm: &Lstm) -> Lstm {
    Lstm {
        layers: vec![lstm.layers[0].clone()],
        num_layers: 1,
        ..lstm.clone()
    }
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn upper(x: f32) -> f32 {
    (0.01 * x).tanh().tanh()
}

mod inter_layer_dropout_zeroes_and_rescales_the_lower_layers_output_in_training_only {
    dl_core::per_backend_tests!(super::inter_layer_dropout);
}

/// On every backend: Flex runs the fused recurrence, LibTorch its own `at::lstm` per layer, with
/// Burn's dropout between the layers in both cases.
fn inter_layer_dropout(backend: BackendKind) {
    let device = backend.autodiff_device().unwrap();
    dl_core::seed_device(&device, 5);
    let lstm = LstmConfig::new(INPUT, HIDDEN)
        .with_num_layers(2)
        .with_batch_first(true)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    let lstm = transparent_upper_layer(lstm, &device);
    let x = Tensor::<3>::random([BATCH, 1, INPUT], Distribution::Normal(0.0, 1.0), &device);
    let (lower, _) = lower_layer(&lstm).forward(x.clone(), None);
    let lower = values(lower);
    assert!(
        lower.iter().all(|&a| a != 0.0),
        "the test needs a nonzero lower output"
    );

    // Evaluation: the upper layer sees the lower output unchanged.
    let (eval, _) = set_training(lstm.clone(), false).forward(x.clone(), None);
    for (&a, &h) in lower.iter().zip(&values(eval)) {
        assert!((h - upper(a)).abs() <= 1e-6, "eval: {h} vs {}", upper(a));
    }

    // Training: each element is dropped (0) or kept and scaled by 1/(1-p); nothing else,
    // so the last layer's output is not dropped or scaled again.
    let scale = (1.0 / (1.0 - P)) as f32;
    let mut dropped = 0usize;
    let mut draws = Vec::new();
    for _ in 0..4 {
        let (train, _) = lstm.forward(x.clone(), None);
        let train = values(train);
        for (&a, &h) in lower.iter().zip(&train) {
            if h == 0.0 {
                dropped += 1;
            } else {
                let kept = upper(a * scale);
                assert!(
                    (h - kept).abs() <= 1e-6,
                    "a kept element is {h}, expected {kept} (scaled by 1/(1-p)); unscaled would be {}",
                    upper(a)
                );
            }
        }
        draws.push(train);
    }
    // 4 x 128 x 32 = 16,384 Bernoulli(p) draws: the fraction dropped has standard deviation
    // sqrt(p (1 - p) / n) = 0.0039; allow 6 of them.
    let n = (4 * BATCH * HIDDEN) as f64;
    let fraction = dropped as f64 / n;
    assert!(
        (fraction - P).abs() < 6.0 * (P * (1.0 - P) / n).sqrt(),
        "dropped {fraction:.4} of the elements, expected {P}"
    );
    // A fresh mask per pass.
    assert_ne!(draws[0], draws[1]);
}

mod a_single_layer_lstm_has_no_dropout_even_in_training {
    dl_core::per_backend_tests!(super::single_layer_has_no_dropout);
}

fn single_layer_has_no_dropout(backend: BackendKind) {
    let device = backend.autodiff_device().unwrap();
    dl_core::seed_device(&device, 6);
    let lstm = LstmConfig::new(INPUT, HIDDEN)
        .with_batch_first(true)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    let x = Tensor::<3>::random([8, 3, INPUT], Distribution::Normal(0.0, 1.0), &device);
    let (train, _) = lstm.forward(x.clone(), None);
    let (eval, _) = set_training(lstm, false).forward(x, None);
    assert_eq!(values(train), values(eval));
}
