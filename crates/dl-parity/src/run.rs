//! Running one model on one backend and comparing what it computes.

use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{BackendKind, Classifier, Fixture, FromTensorData};
use dl_io::{
    LoadMode, PytorchModel, StateDict, grads_with_layout, layout_named, load_pytorch_state_dict,
    state_dict_with_layout,
};
use dl_models::{
    ModelConfig, ModelKind, Network, ScratchOutput, TransformerClassifier, TransformerInput,
    map_network, with_classifier,
};
use dl_optim::{AdamConfig, SgdConfig};
use serde_json::Value;

use crate::check::{CheckResult, Reference, compare_states};
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

fn case(fixture: &Fixture, model: ModelKind) -> Result<Value, String> {
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

/// A network built from the fixture's configuration with the PyTorch weights loaded, and its
/// key layout (to name gradients and trained weights as PyTorch does).
struct Loaded {
    network: Network,
    layout: String,
}

/// Build `config` on `device` and load `weights` into it, strictly.
fn load(config: &ModelConfig, weights: &StateDict, device: &Device) -> Result<Loaded, String> {
    let network = config.init(device).map_err(|e| e.to_string())?;
    let layout;
    let network = map_network!(network, m => {
        let (m, report) =
            load_pytorch_state_dict(m, weights, LoadMode::Strict).map_err(|e| e.to_string())?;
        layout = report.layout;
        m
    });
    Ok(Loaded { network, layout })
}

/// The key layout of `model` named `layout`.
fn layout_of<M: PytorchModel>(layout: &str) -> Result<dl_io::KeyLayout, String> {
    layout_named::<M>(layout).ok_or_else(|| format!("no layout named {layout}"))
}

/// Logits of a classifier for the fixture's input.
fn logits<M>(model: &M, x: &TensorData, device: &Device) -> Result<TensorData, String>
where
    M: Classifier,
    M::Input: FromTensorData,
{
    let input = M::Input::from_tensor_data(x.clone(), device).map_err(|e| e.to_string())?;
    Ok(model.logits(input).into_data())
}

/// Mean cross-entropy of a classifier's logits for the fixture's input and targets.
fn loss<M>(
    model: &M,
    x: &TensorData,
    targets: &TensorData,
    device: &Device,
) -> Result<Tensor<1>, String>
where
    M: Classifier,
    M::Input: FromTensorData,
{
    let input = M::Input::from_tensor_data(x.clone(), device).map_err(|e| e.to_string())?;
    Ok(cross_entropy(
        model.logits(input),
        Tensor::from_data(targets.clone(), device),
    ))
}

/// The loss and the gradients (named as PyTorch names them) of a classifier.
fn loss_and_grads<M>(
    model: &M,
    layout: &str,
    x: &TensorData,
    targets: &TensorData,
    device: &Device,
) -> Result<(TensorData, StateDict), String>
where
    M: Classifier + PytorchModel,
    M::Input: FromTensorData,
{
    let loss = loss(model, x, targets, device)?;
    let value = loss.to_data();
    let grads = loss.backward();
    Ok((
        value,
        grads_with_layout(model, &grads, &layout_of::<M>(layout)?),
    ))
}

/// The weights after ten steps of `check`'s optimizer (Adam lr 0.01, or SGD lr 0.05 with
/// momentum 0.9), named as PyTorch names them.
fn trained<M>(
    mut model: M,
    layout: &str,
    check: Check,
    x: &TensorData,
    targets: &TensorData,
    device: &Device,
) -> Result<StateDict, String>
where
    M: Classifier + PytorchModel,
    M::Input: FromTensorData,
{
    let (optimizer, lr) = match check {
        Check::Adam10 => (AdamConfig::new().init(), 0.01),
        _ => (SgdConfig::new().with_momentum(0.9).init(), 0.05),
    };
    let mut optimizer = optimizer.map_err(|e| e.to_string())?;
    for _ in 0..10 {
        let grads =
            GradientsParams::from_grads(loss(&model, x, targets, device)?.backward(), &model);
        model = optimizer.step(lr, model, grads);
    }
    Ok(state_dict_with_layout(&model, &layout_of::<M>(layout)?))
}

/// The error for a network that is not a classifier where one is needed.
fn not_a_classifier(model: ModelKind) -> String {
    format!("`{}` is not a classifier", model.case_name())
}

/// Run a classifier: eval logits on a plain device with the fixture's dropout; loss,
/// gradients and 10-step Adam and SGD trajectories on the autodiff device with dropout 0
/// (PyTorch's train mode with p = 0).
fn run_classifier(
    backend: BackendKind,
    model: ModelKind,
    weights: &StateDict,
    fixture: &Fixture,
    config: &ModelConfig,
) -> Result<Outputs, String> {
    let name = model.case_name();
    let x = tensor(fixture, &format!("{name}.input"))?;
    let targets = tensor(fixture, &format!("{name}.target"))?;
    let mut out = Outputs::default();

    let eval_device = backend.device().map_err(|e| e.to_string())?;
    let eval = load(config, weights, &eval_device)?;
    let logits = with_classifier!(&eval.network, m => logits(m, &x, &eval_device)?, _other => {
        return Err(not_a_classifier(model))
    });
    out.push_one(Check::Logits, "logits", logits);

    let device = backend.autodiff_device().map_err(|e| e.to_string())?;
    let training = config.clone().with_dropout(0.0);
    let trainable = load(&training, weights, &device)?;
    let (loss, grads) = with_classifier!(&trainable.network, m => {
        loss_and_grads(m, &trainable.layout, &x, &targets, &device)?
    }, _other => return Err(not_a_classifier(model)));
    out.push_one(Check::Loss, "loss", loss);
    out.tensors.push((Check::Grads, grads));

    for check in [Check::Adam10, Check::Sgd10] {
        let fresh = load(&training, weights, &device)?;
        let state = with_classifier!(fresh.network, m => {
            trained(m, &fresh.layout, check, &x, &targets, &device)?
        }, _other => return Err(not_a_classifier(model)));
        out.tensors.push((check, state));
    }
    if let Network::Transformer(m) = eval.network {
        out.tensors
            .push((Check::Attention, attention(&m, &x, &eval_device)?));
    }
    Ok(out)
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
    let config = ModelConfig::from_case(model, &case(fixture, model)?, &["model"])
        .map_err(|e| e.to_string())?;
    let mut weights = state_with_prefix(fixture, &format!("{name}.param."))?;
    if let Some(perturb) = perturb {
        perturb(&mut weights);
    }
    match model {
        ModelKind::Scratch => scratch_outputs(fixture, backend, &weights, config),
        ModelKind::Forecast => Err(format!(
            "`{}` has no parity fixture (one of {})",
            model.case_name(),
            crate::PARITY_MODELS.map(|m| m.case_name()).join(", ")
        )),
        _ => run_classifier(backend, model, &weights, fixture, &config),
    }
}

/// Every block's attention weights for the fixture's input, as `block.{i}` tensors.
fn attention(
    model: &TransformerClassifier,
    x: &TensorData,
    device: &Device,
) -> Result<StateDict, String> {
    let input = TransformerInput::from_tensor_data(x.clone(), device).map_err(|e| e.to_string())?;
    let (_, attention) = model
        .try_forward_with_attention(input)
        .map_err(|e| e.to_string())?;
    let mut state = StateDict::new("attention");
    for (i, w) in attention.into_iter().enumerate() {
        state.insert(i.to_string(), w.into_data());
    }
    Ok(state)
}

/// The from-scratch network's output (sigmoid, as the chapter's) and its hand-computed
/// gradients for the fixture's labels.
fn scratch_outputs(
    fixture: &Fixture,
    backend: BackendKind,
    weights: &StateDict,
    config: ModelConfig,
) -> Result<Outputs, String> {
    let err = |e: dl_core::Error| e.to_string();
    let ModelConfig::Scratch(config) = config else {
        return Err("the scratch case needs a scratch configuration".into());
    };
    let device = backend.device().map_err(err)?;
    let net = config
        .with_output(ScratchOutput::Sigmoid)
        .init(&device)
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
