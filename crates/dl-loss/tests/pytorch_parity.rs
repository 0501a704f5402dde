//! Every loss against PyTorch 2.9.0 (`fixtures/losses.safetensors`, made by
//! `fixtures/gen/losses.py`), on Flex and on NdArray.
//!
//! For each case three things are compared with PyTorch's values:
//! 1. `forward` on a plain device against PyTorch's loss;
//! 2. the analytic `gradient` on a plain device against autograd's gradient;
//! 3. Burn's autodiff of `forward` (on the autodiff device, `loss.backward()`, or
//!    `loss.sum().backward()` for reduction "none") against the same autograd gradient.
//!
//! So forward, analytic gradient and autodiff agree with PyTorch and with each other.

#![allow(clippy::unwrap_used)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{BackendKind, Fixture, Tolerance, assert_close, fixtures_dir};
use dl_loss::{
    BinaryCrossEntropyConfig, BinaryCrossEntropyWithLogitsConfig, CrossEntropyLossConfig,
    CrossEntropyProbsConfig, HingeLossConfig, Loss, MseLossConfig, MultiMarginLossConfig,
    Reduction,
};

/// The default tolerance of the workspace, for values and gradients alike: every loss here is
/// a handful of f32 operations per element, so PyTorch and Burn differ by a few ulps only.
const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-6);

/// One fixture case: its name, configuration and tensors.
struct Case<'a> {
    name: &'a str,
    config: &'a serde_json::Value,
    fixture: &'a Fixture,
}

impl Case<'_> {
    fn tensor(&self, what: &str) -> TensorData {
        self.fixture
            .tensor(&format!("{}.{what}", self.name))
            .unwrap()
    }

    fn reduction(&self) -> Reduction {
        self.str("reduction").parse().unwrap()
    }

    fn str(&self, key: &str) -> &str {
        self.config[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no string `{key}`", self.name))
    }

    fn f64(&self, key: &str) -> f64 {
        self.config[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no number `{key}`", self.name))
    }

    /// False where the fixture says Burn's autodiff cannot match PyTorch's hand-written
    /// backward (binary cross-entropy at saturated probabilities, see bce.rs).
    fn autodiff(&self) -> bool {
        self.config["autodiff"].as_bool().unwrap_or(true)
    }
}

/// How a target tensor is made from the fixture data on a device.
trait FromData: Sized {
    fn from_data(data: TensorData, device: &Device) -> Self;
}

impl<const D: usize> FromData for Tensor<D> {
    fn from_data(data: TensorData, device: &Device) -> Self {
        Tensor::from_data(data, device)
    }
}

impl FromData for Tensor<1, Int> {
    fn from_data(data: TensorData, device: &Device) -> Self {
        Tensor::from_data(data, device)
    }
}

/// Check one case of a loss on one backend: forward, analytic gradient and autodiff.
fn check<const D: usize, L>(case: &Case<'_>, loss: &L, kind: BackendKind)
where
    L: Loss<D>,
    L::Target: FromData,
{
    let what = |part: &str| format!("{} on {kind}: {part}", case.name);
    assert_eq!(loss.reduction(), case.reduction(), "{}", what("reduction"));
    let (input, target) = (case.tensor("input"), case.tensor("target"));
    let (expected_loss, expected_grad) = (case.tensor("loss"), case.tensor("grad"));
    assert_eq!(input.shape().len(), D, "{}", what("input rank"));

    let device = kind.device().unwrap();
    let x = Tensor::<D>::from_data(input.clone(), &device);
    let t = || L::Target::from_data(target.clone(), &device);
    let value = loss.try_forward(x.clone(), t()).unwrap();
    assert_close(
        &value.into_data(),
        &expected_loss,
        TOLERANCE,
        &what("forward"),
    );
    let gradient = loss.gradient(x, t()).unwrap();
    assert_close(
        &gradient.into_data(),
        &expected_grad,
        TOLERANCE,
        &what("gradient()"),
    );

    if !case.autodiff() {
        return;
    }
    let device = kind.autodiff_device().unwrap();
    let x = Tensor::<D>::from_data(input, &device).require_grad();
    let value = loss
        .try_forward(x.clone(), L::Target::from_data(target, &device))
        .unwrap();
    let grads = match loss.reduction() {
        Reduction::None => value.sum().backward(),
        Reduction::Mean | Reduction::Sum => value.backward(),
    };
    let autodiff = x.grad(&grads).expect("the input takes part in the loss");
    assert_close(
        &autodiff.into_data(),
        &expected_grad,
        TOLERANCE,
        &what("autodiff"),
    );
}

/// Every loss the fixture must cover.
const LOSSES: [&str; 7] = [
    "cross_entropy",
    "cross_entropy_probs",
    "mse",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "hinge",
    "multi_margin",
];

fn open_fixture() -> Fixture {
    Fixture::open(fixtures_dir().join("losses.safetensors")).unwrap()
}

/// Every case of the fixture on one backend.
fn check_all(kind: BackendKind) {
    let fixture = open_fixture();
    for (name, config) in fixture.cases().unwrap() {
        let case = Case {
            name: &name,
            config: &config,
            fixture: &fixture,
        };
        let reduction = case.reduction();
        let loss = case.str("loss");
        match loss {
            "cross_entropy" => {
                let l = CrossEntropyLossConfig::new()
                    .with_reduction(reduction)
                    .with_label_smoothing(case.f64("label_smoothing"))
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            "cross_entropy_probs" => {
                let l = CrossEntropyProbsConfig::new()
                    .with_reduction(reduction)
                    .with_epsilon(case.f64("epsilon"))
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            "mse" => {
                let l = MseLossConfig::new()
                    .with_reduction(reduction)
                    .init()
                    .unwrap();
                check::<3, _>(&case, &l, kind);
            }
            "binary_cross_entropy" => {
                let l = BinaryCrossEntropyConfig::new()
                    .with_reduction(reduction)
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            "binary_cross_entropy_with_logits" => {
                let l = BinaryCrossEntropyWithLogitsConfig::new()
                    .with_reduction(reduction)
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            "hinge" => {
                let l = HingeLossConfig::new()
                    .with_reduction(reduction)
                    .with_margin(case.f64("margin"))
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            "multi_margin" => {
                let p = case.config["p"].as_u64().unwrap();
                let l = MultiMarginLossConfig::new()
                    .with_reduction(reduction)
                    .with_p(u32::try_from(p).unwrap())
                    .with_margin(case.f64("margin"))
                    .init()
                    .unwrap();
                check::<2, _>(&case, &l, kind);
            }
            other => panic!("{name}: unknown loss `{other}`"),
        }
    }
}

mod matches_pytorch {
    dl_core::per_backend_tests!(super::check_all);
}

#[test]
fn fixture_covers_every_reduction_of_every_loss() {
    let cases = open_fixture().cases().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (_, config) in &cases {
        let loss = config["loss"].as_str().unwrap().to_string();
        let reduction = config["reduction"].as_str().unwrap().to_string();
        seen.insert((loss, reduction));
    }
    for loss in LOSSES {
        for reduction in Reduction::ALL {
            assert!(
                seen.contains(&(loss.to_string(), reduction.name().to_string())),
                "no {loss} case with reduction {reduction}"
            );
        }
    }
    // The cases the task calls out by name.
    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| cases.iter().any(|(_, c)| pred(c));
    assert!(has(&|c| c["label_smoothing"].as_f64() == Some(0.1)));
    assert!(has(
        &|c| c["margin"].as_f64() == Some(0.5) && c["loss"] == "hinge"
    ));
    assert!(has(
        &|c| c["margin"].as_f64() == Some(0.7) && c["p"].as_u64() == Some(2)
    ));
    assert!(cases.iter().any(|(name, _)| name == "ce_large_logits_ls0"));
}
