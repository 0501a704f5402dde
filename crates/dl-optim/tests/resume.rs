//! Resuming: N steps, save the optimizer state to bytes, load it into a freshly built
//! optimizer, M more steps — must equal N + M uninterrupted steps, for every optimizer and
//! every state it keeps: bit for bit on flex and ndarray, to a few ulps on LibTorch (see
//! [`tolerance`]).

#![allow(clippy::unwrap_used)]

mod common;

use burn::optim::ModuleOptimizer;
use burn::tensor::TensorData;
use dl_core::{BackendKind, Tolerance, assert_close, compare};
use dl_optim::{AdamConfig, AdamWConfig, RmsPropConfig, SgdConfig};

use common::{Affine, OptimizerSpec, data, fixture};

const BEFORE: usize = 5;
const AFTER: usize = 4;
const LR: f64 = 0.01;

fn specs() -> Vec<(&'static str, OptimizerSpec)> {
    vec![
        ("sgd", OptimizerSpec::Sgd(SgdConfig::new())),
        (
            "sgd nesterov + weight decay",
            OptimizerSpec::Sgd(
                SgdConfig::new()
                    .with_momentum(0.9)
                    .with_nesterov(true)
                    .with_weight_decay(0.1),
            ),
        ),
        (
            "sgd momentum + dampening",
            OptimizerSpec::Sgd(SgdConfig::new().with_momentum(0.9).with_dampening(0.5)),
        ),
        ("adam", OptimizerSpec::Adam(AdamConfig::new())),
        (
            "adam amsgrad + weight decay",
            OptimizerSpec::Adam(AdamConfig::new().with_amsgrad(true).with_weight_decay(0.1)),
        ),
        (
            "adamw amsgrad",
            OptimizerSpec::AdamW(AdamWConfig::new().with_amsgrad(true)),
        ),
        ("rmsprop", OptimizerSpec::RmsProp(RmsPropConfig::new())),
        (
            "rmsprop centered + momentum",
            OptimizerSpec::RmsProp(
                RmsPropConfig::new()
                    .with_centered(true)
                    .with_momentum(0.9)
                    .with_weight_decay(0.01),
            ),
        ),
    ]
}

fn train(
    model: Affine,
    optimizer: &mut ModuleOptimizer,
    steps: usize,
    fixture: &dl_core::Fixture,
) -> Affine {
    let device = model.weight.val().device();
    let (x, y) = data(fixture, &device);
    let mut model = model;
    for _ in 0..steps {
        let grads = model.grads(x.clone(), y.clone());
        model = optimizer.step(LR, model, grads);
    }
    model
}

/// How close a resumed run must come to the uninterrupted one on `kind`.
///
/// Flex and NdArray repeat a computation bit for bit. LibTorch's CPU matrix products (MKL, in
/// the PyTorch wheel) may round differently from one call to the next with the same inputs,
/// depending on how their buffers happen to be aligned (Intel documents this under "conditional
/// numerical reproducibility"); CI once saw plain SGD, which keeps no state at all, end 1 ulp
/// apart after nine steps. So on LibTorch the two runs must agree to rounding only — far tighter
/// than the difference a lost optimizer state makes, which the same tolerance must reject.
fn tolerance(kind: BackendKind) -> Tolerance {
    match kind {
        BackendKind::Tch | BackendKind::TchCuda => Tolerance::new(1e-5, 1e-8),
        _ => Tolerance::EXACT,
    }
}

fn params(model: &Affine) -> (TensorData, TensorData) {
    (model.weight.val().to_data(), model.bias.val().to_data())
}

fn check_resume(kind: BackendKind) {
    let fixture = fixture();
    let device = kind.autodiff_device().unwrap();
    for (name, spec) in specs() {
        let mut straight = spec.init();
        let expected = train(
            Affine::from_fixture(&fixture, &device),
            &mut straight,
            BEFORE + AFTER,
            &fixture,
        );

        let mut first = spec.init();
        let halfway = train(
            Affine::from_fixture(&fixture, &device),
            &mut first,
            BEFORE,
            &fixture,
        );
        let bytes = first.into_bytes().unwrap();
        drop(first);
        let mut resumed = spec.init().from_bytes(bytes).unwrap();
        let actual = train(halfway.clone(), &mut resumed, AFTER, &fixture);

        let (ew, eb) = params(&expected);
        let (aw, ab) = params(&actual);
        let what = format!("{kind} {name}");
        let tolerance = tolerance(kind);
        assert_close(&aw, &ew, tolerance, &format!("{what} weight"));
        assert_close(&ab, &eb, tolerance, &format!("{what} bias"));

        // A fresh optimizer without the saved state takes a different path whenever there is
        // state to lose, so the comparison above really exercises the restored state.
        if name != "sgd" {
            let mut fresh = spec.init();
            let (fw, _) = params(&train(halfway, &mut fresh, AFTER, &fixture));
            let report = compare(&fw, &ew, tolerance);
            assert!(
                !report.passed(),
                "{what}: losing the state should change the result beyond {tolerance:?}"
            );
        }
    }
}

mod resumes_exactly {
    dl_core::per_backend_tests!(super::check_resume);
}
