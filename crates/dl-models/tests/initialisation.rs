//! Initialisation is reproducible for a seed and follows PyTorch's default distributions.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use dl_core::{BackendKind, seed_device};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, ScratchMlpConfig, TransformerClassifierConfig,
};

/// The backend's generator is process-wide and tests run on parallel threads: every test here
/// that draws random numbers holds this lock, so a seed is followed by its own draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every parameter's values, in visiting order.
fn parameters<M: Module>(model: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().iter::<f32>().collect();
            self.0.push(values);
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

fn same_seed_same_weights<M: Module>(backend: BackendKind, build: impl Fn(&Device) -> M) {
    let device = backend.device().expect("backend");
    seed_device(&device, 11);
    let a = parameters(&build(&device));
    seed_device(&device, 11);
    let b = parameters(&build(&device));
    seed_device(&device, 12);
    let c = parameters(&build(&device));
    // Compare without printing thousands of numbers on failure: name the first differing tensor.
    let first_difference =
        |x: &[Vec<f32>], y: &[Vec<f32>]| x.iter().zip(y).position(|(p, q)| p != q);
    assert_eq!(a.len(), b.len());
    assert_eq!(
        first_difference(&a, &b),
        None,
        "same seed, different weights on {backend} (parameter index shown)"
    );
    assert!(
        first_difference(&a, &c).is_some(),
        "another seed gave the same weights on {backend}"
    );
}

#[test]
fn every_model_is_reproducible_for_a_seed() {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for backend in [BackendKind::Flex, BackendKind::NdArray] {
        same_seed_same_weights(backend, |d| {
            MlpConfig::new()
                .with_hidden_sizes(vec![16])
                .init(d)
                .expect("mlp")
        });
        same_seed_same_weights(backend, |d| {
            CnnConfig::new().with_image_size(8).init(d).expect("cnn")
        });
        same_seed_same_weights(backend, |d| {
            LstmClassifierConfig::new()
                .with_hidden_size(8)
                .init(d)
                .expect("lstm")
        });
        same_seed_same_weights(backend, |d| {
            TransformerClassifierConfig::new()
                .with_vocab_size(20)
                .with_d_model(16)
                .with_n_heads(2)
                .with_d_ff(32)
                .init(d)
                .expect("transformer")
        });
        same_seed_same_weights(backend, |d| {
            ScratchMlpConfig::new(vec![5, 4, 3])
                .init(d)
                .expect("scratch")
        });
    }
}

/// Bounds, mean and variance of a sample that should be U(-bound, bound).
fn assert_uniform(values: &[f32], bound: f64, what: &str) {
    let n = values.len() as f64;
    assert!(
        values.iter().all(|&v| (v as f64).abs() <= bound),
        "{what}: a value outside ±{bound}"
    );
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    // U(-b, b): mean 0 with standard error b/sqrt(3n); variance b²/3, within 5%
    // (the relative standard error of the variance estimate is sqrt(0.8/n) < 1% here).
    assert!(
        mean.abs() < 5.0 * bound / (3.0 * n).sqrt(),
        "{what}: mean {mean}"
    );
    let expected = bound * bound / 3.0;
    assert!(
        (var - expected).abs() < 0.05 * expected,
        "{what}: variance {var} vs {expected}"
    );
}

#[test]
fn linear_conv_and_lstm_follow_pytorch_defaults() {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = BackendKind::Flex.device().expect("flex");
    seed_device(&device, 3);
    let cnn = CnnConfig::new().init(&device).expect("cnn");
    // kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias.
    let values = |t: Tensor<4>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    assert_uniform(
        &values(cnn.conv2.weight.val()),
        1.0 / (32.0f64 * 9.0).sqrt(),
        "conv2.weight",
    );
    let fc1 = cnn
        .fc1
        .weight
        .val()
        .into_data()
        .iter::<f32>()
        .collect::<Vec<_>>();
    assert_uniform(&fc1, 1.0 / 1152f64.sqrt(), "fc1.weight");
    let fc1_bias = cnn
        .fc1
        .bias
        .as_ref()
        .expect("bias")
        .val()
        .into_data()
        .iter::<f32>()
        .collect::<Vec<_>>();
    assert!(
        fc1_bias
            .iter()
            .all(|&v| (v as f64).abs() <= 1.0 / 1152f64.sqrt()),
        "fc1.bias bound"
    );

    let lstm = LstmClassifierConfig::new().init(&device).expect("lstm");
    // nn.LSTM: every parameter U(-1/sqrt(h), 1/sqrt(h)).
    let w = lstm.lstm.layers[1]
        .weight_hh
        .val()
        .into_data()
        .iter::<f32>()
        .collect::<Vec<_>>();
    assert_uniform(&w, 1.0 / 64f64.sqrt(), "lstm.weight_hh_l1");
}
