//! Running one model on one backend and comparing what it computes.

use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{BackendKind, Classifier, Fixture};
use dl_io::{
    LoadMode, PytorchModel, StateDict, grads_with_layout, layout_named, load_pytorch_state_dict,
    state_dict_with_layout,
};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, ModelKind, ScratchMlpConfig, ScratchOutput,
    TransformerClassifierConfig, TransformerInput,
};
use dl_optim::{AdamConfig, SgdConfig};
use serde_json::Value;

use crate::check::{CheckResult, Reference, compare_states};
use crate::model::fixture_config;
use crate::tolerance::Check;

/// Everything a model computed in one run, named as PyTorch names it.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// One tensor per check (`logits`, `loss`, `output`), or a state dict's worth
    /// (`grads`, `adam10`, `sgd10`, `attention` as `block.{i}`).
    pub tensors: Vec<(Check, StateDict)>,
}

impl Outputs {
    fn push_one(&mut self, check: Check, name: &str, data: TensorData) {
        let mut state = StateDict::new(check.name());
        state.insert(name, data);
        self.tensors.push((check, state));
    }

    fn get(&self, check: Check) -> Option<&StateDict> {
        self.tensors
            .iter()
            .find(|(c, _)| *c == check)
            .map(|(_, s)| s)
    }
}

/// A change to the PyTorch weights before they are loaded (to prove a check can fail).
pub type Perturbation = fn(&mut StateDict);

fn state_with_prefix(fixture: &Fixture, prefix: &str) -> Result<StateDict, String> {
    let mut state = StateDict::new(format!("{} [{prefix}*]", fixture.path().display()));
    for name in fixture.names() {
        if let Some(key) = name.strip_prefix(prefix) {
            state.insert(key, fixture.tensor(name).map_err(|e| e.to_string())?);
        }
    }
    if state.is_empty() {
        return Err(format!("fixture has no tensors named {prefix}*"));
    }
    Ok(state)
}

fn tensor(fixture: &Fixture, name: &str) -> Result<TensorData, String> {
    fixture.tensor(name).map_err(|e| e.to_string())
}

fn config(fixture: &Fixture, model: ModelKind) -> Result<Value, String> {
    fixture
        .cases()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(name, _)| name == model.case_name())
        .map(|(_, v)| v)
        .ok_or_else(|| format!("fixture has no case `{}`", model.case_name()))
}

/// PyTorch's numbers for `model`, as [`Outputs`].
pub fn pytorch_outputs(fixture: &Fixture, model: ModelKind) -> Result<Outputs, String> {
    let name = model.case_name();
    let mut out = Outputs::default();
    if model == ModelKind::Scratch {
        out.push_one(Check::Output, "output", tensor(fixture, "scratch.output")?);
        out.tensors
            .push((Check::Grads, state_with_prefix(fixture, "scratch.grad.")?));
        return Ok(out);
    }
    out.push_one(
        Check::Logits,
        "logits",
        tensor(fixture, &format!("{name}.logits"))?,
    );
    out.push_one(
        Check::Loss,
        "loss",
        tensor(fixture, &format!("{name}.loss"))?,
    );
    out.tensors.push((
        Check::Grads,
        state_with_prefix(fixture, &format!("{name}.grad."))?,
    ));
    out.tensors.push((
        Check::Adam10,
        state_with_prefix(fixture, &format!("{name}.adam10."))?,
    ));
    out.tensors.push((
        Check::Sgd10,
        state_with_prefix(fixture, &format!("{name}.sgd10."))?,
    ));
    if model == ModelKind::Transformer {
        out.tensors.push((
            Check::Attention,
            state_with_prefix(fixture, "transformer.attn.")?,
        ));
    }
    Ok(out)
}

fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim(1))
        .mean()
        .neg()
}

/// Run a classifier: eval logits on a plain device; loss, gradients and 10-step Adam and SGD
/// trajectories on the autodiff device with dropout 0 (PyTorch's train mode with p = 0).
fn run_classifier<M>(
    backend: BackendKind,
    name: &str,
    weights: &StateDict,
    fixture: &Fixture,
    build: &dyn Fn(&Device, f64) -> Result<M, String>,
    dropout: f64,
    input: &dyn Fn(TensorData, &Device) -> M::Input,
) -> Result<(Outputs, M), String>
where
    M: PytorchModel + Classifier,
{
    let load = |device: &Device, dropout: f64| -> Result<(M, dl_io::KeyLayout), String> {
        let (model, report) =
            load_pytorch_state_dict(build(device, dropout)?, weights, LoadMode::Strict)
                .map_err(|e| e.to_string())?;
        let layout = layout_named::<M>(&report.layout)
            .ok_or_else(|| format!("no layout named {}", report.layout))?;
        Ok((model, layout))
    };
    let x = tensor(fixture, &format!("{name}.input"))?;
    let targets = tensor(fixture, &format!("{name}.target"))?;
    let mut out = Outputs::default();

    let device = backend.device().map_err(|e| e.to_string())?;
    let (model, layout) = load(&device, dropout)?;
    out.push_one(
        Check::Logits,
        "logits",
        model.logits(input(x.clone(), &device)).into_data(),
    );

    let device = backend.autodiff_device().map_err(|e| e.to_string())?;
    let (trainable, _) = load(&device, 0.0)?;
    let loss = cross_entropy(
        trainable.logits(input(x.clone(), &device)),
        Tensor::from_data(targets.clone(), &device),
    );
    out.push_one(Check::Loss, "loss", loss.to_data());
    let grads = loss.backward();
    out.tensors
        .push((Check::Grads, grads_with_layout(&trainable, &grads, &layout)));

    for (check, lr) in [(Check::Adam10, 0.01), (Check::Sgd10, 0.05)] {
        let optimizer = match check {
            Check::Adam10 => AdamConfig::new().init(),
            _ => SgdConfig::new().with_momentum(0.9).init(),
        };
        let mut optimizer = optimizer.map_err(|e| e.to_string())?;
        let (mut model, _) = load(&device, 0.0)?;
        for _ in 0..10 {
            let loss = cross_entropy(
                model.logits(input(x.clone(), &device)),
                Tensor::from_data(targets.clone(), &device),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
        out.tensors
            .push((check, state_dict_with_layout(&model, &layout)));
    }
    Ok((out, model))
}

/// What `model` computes on `backend` from the fixture's PyTorch weights (optionally changed
/// by `perturb` first).
pub fn model_outputs(
    fixture: &Fixture,
    model: ModelKind,
    backend: BackendKind,
    perturb: Option<Perturbation>,
) -> Result<Outputs, String> {
    let name = model.case_name();
    let config = config(fixture, model)?;
    let mut weights = state_with_prefix(fixture, &format!("{name}.param."))?;
    if let Some(perturb) = perturb {
        perturb(&mut weights);
    }
    let dropout = config["dropout"].as_f64().unwrap_or(0.0);
    let err = |e: dl_core::Error| e.to_string();
    match model {
        ModelKind::Mlp => run_classifier(
            backend,
            name,
            &weights,
            fixture,
            &|d, p| {
                fixture_config(MlpConfig::new(), &config)
                    .and_then(|c| c.with_dropout(p).init(d))
                    .map_err(err)
            },
            dropout,
            &|data, d| Tensor::<2>::from_data(data, d),
        )
        .map(|(o, _)| o),
        ModelKind::Cnn | ModelKind::ImageCnn => run_classifier(
            backend,
            name,
            &weights,
            fixture,
            &|d, p| {
                fixture_config(CnnConfig::new(), &config)
                    .and_then(|c| c.with_dropout(p).init(d))
                    .map_err(err)
            },
            dropout,
            &|data, d| Tensor::<4>::from_data(data, d),
        )
        .map(|(o, _)| o),
        ModelKind::Lstm => run_classifier(
            backend,
            name,
            &weights,
            fixture,
            &|d, p| {
                fixture_config(LstmClassifierConfig::new(), &config)
                    .and_then(|c| c.with_dropout(p).init(d))
                    .map_err(err)
            },
            dropout,
            &|data, d| Tensor::<3>::from_data(data, d),
        )
        .map(|(o, _)| o),
        ModelKind::Transformer => {
            transformer_outputs(fixture, backend, name, &weights, &config, dropout)
        }
        ModelKind::Scratch => scratch_outputs(fixture, backend, &weights, &config),
        ModelKind::Forecast => Err(format!(
            "`{}` has no parity fixture (one of {})",
            model.case_name(),
            crate::PARITY_MODELS.map(|m| m.case_name()).join(", ")
        )),
    }
}

/// The Transformer's outputs as [`model_outputs`] describes them, plus its attention weights.
fn transformer_outputs(
    fixture: &Fixture,
    backend: BackendKind,
    name: &str,
    weights: &StateDict,
    config: &Value,
    dropout: f64,
) -> Result<Outputs, String> {
    let tokens = |data, d: &Device| TransformerInput::Tokens(Tensor::<2, Int>::from_data(data, d));
    let (mut out, model) = run_classifier(
        backend,
        name,
        weights,
        fixture,
        &|d, p| {
            fixture_config(TransformerClassifierConfig::new(), config)
                .and_then(|c| c.with_dropout(p).init(d))
                .map_err(|e| e.to_string())
        },
        dropout,
        &tokens,
    )?;
    let device = backend.device().map_err(|e| e.to_string())?;
    let x = tensor(fixture, "transformer.input")?;
    let (_, attention) = model
        .try_forward_with_attention(tokens(x, &device))
        .map_err(|e| e.to_string())?;
    let mut state = StateDict::new("attention");
    for (i, w) in attention.into_iter().enumerate() {
        state.insert(i.to_string(), w.into_data());
    }
    out.tensors.push((Check::Attention, state));
    Ok(out)
}

/// The from-scratch network's output (sigmoid, as the chapter's) and its hand-computed
/// gradients for the fixture's labels.
fn scratch_outputs(
    fixture: &Fixture,
    backend: BackendKind,
    weights: &StateDict,
    config: &Value,
) -> Result<Outputs, String> {
    let err = |e: dl_core::Error| e.to_string();
    let device = backend.device().map_err(err)?;
    let net = fixture_config(ScratchMlpConfig::new(Vec::new()), config)
        .map(|c| c.with_output(ScratchOutput::Sigmoid))
        .and_then(|c| c.init(&device))
        .map_err(err)?;
    let (net, _) =
        load_pytorch_state_dict(net, weights, LoadMode::Strict).map_err(|e| e.to_string())?;
    let x = Tensor::<2>::from_data(tensor(fixture, "scratch.input")?, &device);
    let labels = Tensor::<1, Int>::from_data(tensor(fixture, "scratch.target")?, &device);
    let mut out = Outputs::default();
    out.push_one(Check::Output, "output", net.forward(x.clone()).into_data());
    let grads = net.gradients(x, labels).map_err(err)?;
    let mut state = StateDict::new("scratch gradients");
    for (i, (dw, db)) in grads.weights.into_iter().zip(grads.biases).enumerate() {
        state.insert(format!("weights.{i}"), dw.into_data());
        state.insert(format!("biases.{i}"), db.into_data());
    }
    out.tensors.push((Check::Grads, state));
    Ok(out)
}

/// The key third of attention's `in_proj_bias` adds the same score to every key of a query,
/// which softmax cancels: its true gradient is zero and every framework computes rounding
/// noise (about 1e-9). Adam divides by sqrt(v), turning that noise into full-size steps of
/// random sign, so those entries are not comparable after Adam steps and are zeroed on both
/// sides. Their gradient is still compared (to PyTorch's noise, within atol) by `grads`.
fn without_key_bias(state: &StateDict) -> StateDict {
    let mut out = state.clone();
    for key in state
        .keys()
        .filter(|k| k.ends_with("attention.in_proj_bias"))
    {
        let Some(values) = state
            .get(key)
            .and_then(|d| d.to_owned().try_into_vec::<f32>().ok())
        else {
            continue;
        };
        let mut values = values;
        let third = values.len() / 3;
        values[third..2 * third].fill(0.0);
        out.insert(key, TensorData::new(values, [3 * third]));
    }
    out
}

/// Compare `actual` with `expected`, check by check, into table rows.
pub fn compare_outputs(
    model: ModelKind,
    backend: BackendKind,
    actual: &Outputs,
    expected: &Outputs,
    reference: Reference,
) -> Vec<CheckResult> {
    let mut rows = Vec::new();
    for (check, want) in &expected.tensors {
        let tolerance = match reference {
            Reference::Pytorch => check.tolerance(),
            Reference::Flex => check.cross_backend_tolerance(),
        };
        let Some(got) = actual.get(*check) else {
            rows.push(CheckResult::failed(
                model.case_name(),
                backend,
                *check,
                reference,
                "not computed".into(),
            ));
            continue;
        };
        let (got, want) = if *check == Check::Adam10 {
            (without_key_bias(got), without_key_bias(want))
        } else {
            (got.clone(), want.clone())
        };
        let reports = compare_states(&got, &want, tolerance);
        rows.push(CheckResult::from_reports(
            model.case_name(),
            backend,
            *check,
            reference,
            tolerance,
            reports,
        ));
    }
    rows
}
