//! Shared pieces of the dl-optim integration tests: the tiny model of the fixtures, reading the
//! fixture's optimizer settings, and the training step.

#![allow(dead_code, clippy::unwrap_used)]

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use dl_core::Fixture;
use dl_optim::{AdamConfig, AdamWConfig, RmsPropConfig, SgdConfig};
use serde_json::Value;

/// `nn.Linear(5, 3)` written out: `x W^T + b`.
#[derive(Module, Debug)]
pub struct Affine {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Affine {
    pub fn new(weight: TensorData, bias: TensorData, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::from_data(weight, device)),
            bias: Param::from_tensor(Tensor::from_data(bias, device)),
        }
    }

    /// The model of `fixtures/optim.safetensors`, at its initial values.
    pub fn from_fixture(fixture: &Fixture, device: &Device) -> Self {
        Self::new(
            fixture.tensor("init.weight").unwrap(),
            fixture.tensor("init.bias").unwrap(),
            device,
        )
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze::<2>()
    }

    /// `F.mse_loss(self(x), y)` (mean reduction) and its gradients.
    pub fn grads(&self, x: Tensor<2>, y: Tensor<2>) -> GradientsParams {
        let loss = (self.forward(x) - y).square().mean();
        GradientsParams::from_grads(loss.backward(), self)
    }
}

pub fn fixture() -> Fixture {
    Fixture::open(dl_core::fixtures_dir().join("optim.safetensors")).unwrap()
}

/// The fixture's `x` and `y` on `device`.
pub fn data(fixture: &Fixture, device: &Device) -> (Tensor<2>, Tensor<2>) {
    (
        Tensor::from_data(fixture.tensor("x").unwrap(), device),
        Tensor::from_data(fixture.tensor("y").unwrap(), device),
    )
}

fn f64_or(spec: &Value, key: &str, default: f64) -> f64 {
    spec.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn bool_or(spec: &Value, key: &str, default: bool) -> bool {
    spec.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn betas_or(spec: &Value, default: (f64, f64)) -> (f64, f64) {
    match spec.get("betas").and_then(Value::as_array) {
        Some(b) => (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()),
        None => default,
    }
}

/// One of our optimizer configs, rebuilt from the PyTorch constructor arguments in the
/// fixture (`{"type": "adam", "lr": 0.01, ...}`; missing ones take our defaults, which are
/// PyTorch's).
#[derive(Debug, Clone)]
pub enum OptimizerSpec {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    AdamW(AdamWConfig),
    RmsProp(RmsPropConfig),
}

impl OptimizerSpec {
    pub fn from_json(spec: &Value) -> Self {
        match spec["type"].as_str().unwrap() {
            "sgd" => {
                let d = SgdConfig::new();
                Self::Sgd(
                    d.clone()
                        .with_lr(f64_or(spec, "lr", d.lr))
                        .with_momentum(f64_or(spec, "momentum", d.momentum))
                        .with_dampening(f64_or(spec, "dampening", d.dampening))
                        .with_nesterov(bool_or(spec, "nesterov", d.nesterov))
                        .with_weight_decay(f64_or(spec, "weight_decay", d.weight_decay)),
                )
            }
            "adam" => {
                let d = AdamConfig::new();
                Self::Adam(
                    d.clone()
                        .with_lr(f64_or(spec, "lr", d.lr))
                        .with_betas(betas_or(spec, d.betas))
                        .with_eps(f64_or(spec, "eps", d.eps))
                        .with_weight_decay(f64_or(spec, "weight_decay", d.weight_decay))
                        .with_amsgrad(bool_or(spec, "amsgrad", d.amsgrad)),
                )
            }
            "adamw" => {
                let d = AdamWConfig::new();
                Self::AdamW(
                    d.clone()
                        .with_lr(f64_or(spec, "lr", d.lr))
                        .with_betas(betas_or(spec, d.betas))
                        .with_eps(f64_or(spec, "eps", d.eps))
                        .with_weight_decay(f64_or(spec, "weight_decay", d.weight_decay))
                        .with_amsgrad(bool_or(spec, "amsgrad", d.amsgrad)),
                )
            }
            "rmsprop" => {
                let d = RmsPropConfig::new();
                Self::RmsProp(
                    d.clone()
                        .with_lr(f64_or(spec, "lr", d.lr))
                        .with_alpha(f64_or(spec, "alpha", d.alpha))
                        .with_eps(f64_or(spec, "eps", d.eps))
                        .with_weight_decay(f64_or(spec, "weight_decay", d.weight_decay))
                        .with_momentum(f64_or(spec, "momentum", d.momentum))
                        .with_centered(bool_or(spec, "centered", d.centered)),
                )
            }
            other => panic!("unknown optimizer type {other}"),
        }
    }

    pub fn lr(&self) -> f64 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
            Self::AdamW(c) => c.lr,
            Self::RmsProp(c) => c.lr,
        }
    }

    pub fn init(&self) -> ModuleOptimizer {
        match self {
            Self::Sgd(c) => c.init(),
            Self::Adam(c) => c.init(),
            Self::AdamW(c) => c.init(),
            Self::RmsProp(c) => c.init(),
        }
        .unwrap()
    }
}

/// Row `index` of a stacked `[N, ...]` fixture tensor.
pub fn row(data: &TensorData, index: usize) -> TensorData {
    let shape = data.shape().to_vec();
    let size: usize = shape[1..].iter().product();
    let values = data.try_to_vec::<f32>().unwrap();
    TensorData::new(
        values[index * size..(index + 1) * size].to_vec(),
        shape[1..].to_vec(),
    )
}
