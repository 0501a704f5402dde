//! Dropout of the CNN and the Transformer has PyTorch's semantics (`nn.Dropout(p)`,
//! `nn.MultiheadAttention(dropout=p)`): in training each element of the tensor it acts on is
//! zeroed with probability `p` and the survivors are scaled by `1 / (1 - p)` (inverted
//! dropout); outside training nothing changes.
//!
//! Each test makes the layers after a dropout transparent (an identity classifier or
//! projection), so the dropped tensor is the output, and compares a training pass with the
//! evaluation pass of the same model element by element: every element must be 0 or exactly
//! the evaluation value scaled by `1 / (1 - p)`, and the fraction zeroed must be `p` within
//! six standard deviations of a Bernoulli count.
#![allow(clippy::unwrap_used)]

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use dl_core::BackendKind;
use dl_layers::{AttentionMask, MultiHeadAttentionConfig, TransformerBlockConfig, set_training};
use dl_models::{CnnConfig, TransformerClassifierConfig, TransformerInput};

const P: f64 = 0.5;

fn identity(linear: &mut Linear, size: usize, device: &Device) {
    let mut w = vec![0.0f32; size * size];
    for i in 0..size {
        w[i * size + i] = 1.0;
    }
    linear.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [size, size]), device));
    linear.bias = Some(Param::from_tensor(Tensor::zeros([size], device)));
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Checks inverted dropout of `eval` in the training passes `train`; returns the fraction of
/// nonzero evaluation values that were dropped.
fn check_inverted(what: &str, eval: &[f32], train: &[Vec<f32>]) {
    let scale = (1.0 / (1.0 - P)) as f32;
    let (mut dropped, mut counted) = (0usize, 0usize);
    for pass in train {
        assert_eq!(pass.len(), eval.len());
        for (&e, &t) in eval.iter().zip(pass) {
            if e == 0.0 {
                assert_eq!(t, 0.0, "{what}: a zero became {t}");
                continue;
            }
            counted += 1;
            if t == 0.0 {
                dropped += 1;
            } else {
                let kept = e * scale;
                assert!(
                    (t - kept).abs() <= 1e-5 * kept.abs().max(1.0),
                    "{what}: a kept element is {t}, expected {kept} (= {e} / (1 - p))"
                );
            }
        }
    }
    let n = counted as f64;
    assert!(n > 2000.0, "{what}: only {n} nonzero elements to count");
    let fraction = dropped as f64 / n;
    assert!(
        (fraction - P).abs() < 6.0 * (P * (1.0 - P) / n).sqrt(),
        "{what}: dropped {fraction:.4} of {n} elements, expected {P}"
    );
    assert_ne!(train[0], train[1], "{what}: the same mask twice");
}

#[test]
fn cnn_dropout_before_the_classifier() {
    let device = BackendKind::Flex.autodiff_device().unwrap();
    dl_core::seed_device(&device, 11);
    let hidden = 64;
    let mut cnn = CnnConfig::new()
        .with_conv_channels([4, 4, 4])
        .with_hidden_size(hidden)
        .with_num_classes(hidden)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    identity(&mut cnn.fc2, hidden, &device);
    let x = Tensor::<4>::random([32, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let eval = values(set_training(cnn.clone(), false).forward(x.clone()));
    let train: Vec<_> = (0..3).map(|_| values(cnn.forward(x.clone()))).collect();
    check_inverted("cnn dropout", &eval, &train);
}

#[test]
fn transformer_dropout_after_the_positions() {
    let device = BackendKind::Flex.autodiff_device().unwrap();
    dl_core::seed_device(&device, 12);
    let d = 64;
    // No blocks and one token: the logits are the dropped embedding itself.
    let mut model = TransformerClassifierConfig::new()
        .with_d_model(d)
        .with_n_layers(0)
        .with_num_classes(d)
        .with_patch_size(Some(8))
        .with_max_seq_length(1)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    identity(&mut model.fc, d, &device);
    let x = Tensor::<3>::random([64, 1, 8], Distribution::Normal(0.0, 1.0), &device);
    let run = |m: &dl_models::TransformerClassifier| {
        values(m.try_forward(TransformerInput::Patches(x.clone())).unwrap())
    };
    let eval = run(&set_training(model.clone(), false));
    let train: Vec<_> = (0..3).map(|_| run(&model)).collect();
    check_inverted("transformer embedding dropout", &eval, &train);
}

#[test]
fn attention_dropout_acts_on_the_weights() {
    let device = BackendKind::Flex.autodiff_device().unwrap();
    dl_core::seed_device(&device, 13);
    let attention = MultiHeadAttentionConfig::new(16, 4)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    let x = Tensor::<3>::random([8, 12, 16], Distribution::Normal(0.0, 1.0), &device);
    let weights = |m: &dl_layers::MultiHeadAttention| {
        values(
            m.forward_self(x.clone(), AttentionMask::none(), true)
                .1
                .unwrap(),
        )
    };
    let eval = weights(&set_training(attention.clone(), false));
    let train: Vec<_> = (0..3).map(|_| weights(&attention)).collect();
    check_inverted("attention weights", &eval, &train);
}

#[test]
fn transformer_feed_forward_dropout_after_the_relu() {
    let device = BackendKind::Flex.autodiff_device().unwrap();
    dl_core::seed_device(&device, 14);
    let d = 32;
    let mut block = TransformerBlockConfig::new(d, 4, d)
        .with_dropout(P)
        .init(&device)
        .unwrap();
    identity(&mut block.feed_forward.linear2, d, &device);
    let x = Tensor::<3>::random([16, 8, d], Distribution::Normal(0.0, 1.0), &device);
    let ff = &block.feed_forward;
    let eval = values(set_training(ff.clone(), false).forward(x.clone()));
    let train: Vec<_> = (0..3).map(|_| values(ff.forward(x.clone()))).collect();
    check_inverted("feed-forward dropout", &eval, &train);
}
