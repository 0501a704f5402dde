//! Every layer against PyTorch 2.9.0 (`fixtures/layers.safetensors`, written by
//! `fixtures/gen/layers.py`).
//!
//! For each case the PyTorch `state_dict` is loaded into our module through
//! [`dl_layers::PytorchPath`], the Burn-path → PyTorch-name rules that dl-io's loading and
//! export use too (Burn's `Linear` weight is transposed, Burn's `LayerNorm` `gamma`/`beta` are
//! PyTorch's `weight`/`bias`, the feed-forward's `linear1`/`linear2` are `nn.Sequential`
//! indices 0/3, the LSTM's `layers[k]`/`reverse_layers[k]` get `_l{k}`/`_l{k}_reverse`). The
//! map must use every stored key exactly once. Then the module
//! runs on an autodiff device, the outputs are compared, the scalar loss
//! `Σ (output · w).sum()` (with PyTorch's fixed random `w`) is differentiated, and the
//! gradients of every parameter and input are compared with PyTorch's. Cases PyTorch ran in
//! `eval()` are also run on the plain (inference) device.
//!
//! Everything runs on Flex and on NdArray through the same functions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Gradients, Tensor, TensorData};
use dl_core::{BackendKind, Fixture, Tolerance, compare, config_from_case};
use dl_layers::{
    AttentionMask, ConvBlockConfig, DenseConfig, LstmConfig, MultiHeadAttentionConfig,
    PositionalEncodingConfig, PytorchPath, TransformerBlockConfig, set_training,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Keys of a layer case that describe the scenario (which layer, train or eval, which inputs),
/// not the layer's configuration.
const SCENARIO_KEYS: &[&str] = &[
    "kind",
    "train",
    "with_state",
    "causal",
    "key_padding_mask",
    "self_attention",
    "pool",
];

/// Forward values (outputs, final LSTM states, attention weights, buffers, the positional
/// table): the workspace default. Measured on Flex and NdArray: max abs error 4.8e-7 (matrix
/// products and the LSTM recurrence sum in another order than PyTorch's kernels), table 6e-8.
/// Issue 3 allows atol 1e-5; the default is tighter and passes.
const OUTPUT_TOL: Tolerance = Tolerance::new(1e-5, 1e-6);
/// Gradients: issue 3's rtol 1e-4, atol 1e-5, looser than the default because
/// (a) some gradients are mathematically zero and come out as cancellation noise — the conv
/// bias in front of a train-mode batch norm (measured up to 2.4e-6) and the key part of
/// `in_proj_bias` (softmax ignores a per-row shift; up to 7e-7) — which no relative tolerance
/// covers, and (b) the backward sums over batch, time, heads and features in another order than
/// PyTorch; measured max relative error on non-zero gradients 6.5e-6 (conv weights through
/// batch norm), so rtol 1e-4 leaves room for other CPUs' kernels.
const GRAD_TOL: Tolerance = Tolerance::new(1e-4, 1e-5);

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        Fixture::open(dl_core::fixtures_dir().join("layers.safetensors"))
            .expect("fixtures/layers.safetensors (run fixtures/gen/layers.py)")
    })
}

/// One fixture case on one backend.
struct Case {
    name: String,
    cfg: Value,
    backend: BackendKind,
    /// The autodiff device the module is trained on.
    device: Device,
}

impl Case {
    fn key(&self, what: &str) -> String {
        format!("{}.{what}", self.name)
    }

    fn has(&self, what: &str) -> bool {
        fixture().contains(&self.key(what))
    }

    fn data(&self, what: &str) -> TensorData {
        fixture().tensor(&self.key(what)).unwrap()
    }

    fn tensor<const D: usize>(&self, what: &str, device: &Device) -> Tensor<D> {
        Tensor::from_data(self.data(what), device)
    }

    fn mask<const D: usize>(&self, what: &str, device: &Device) -> Tensor<D, Bool> {
        Tensor::from_data(self.data(what), device)
    }

    /// The layer's `XConfig`: `defaults` with every field the case sets (serde), the keys that
    /// describe the scenario rather than the layer left out. Required fields of `defaults` are
    /// placeholders the case overwrites.
    fn config<C: Serialize + DeserializeOwned>(&self, defaults: C) -> C {
        config_from_case(&defaults, &self.cfg, SCENARIO_KEYS)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn flag(&self, field: &str) -> bool {
        self.cfg[field]
            .as_bool()
            .unwrap_or_else(|| panic!("{}: config field {field}", self.name))
    }

    /// Compare `actual` with the stored tensor `what`, naming case, tensor and backend.
    fn check<const D: usize>(&self, actual: Tensor<D>, what: &str, tolerance: Tolerance) {
        let report = compare(&actual.into_data(), &self.data(what), tolerance);
        assert!(
            report.passed(),
            "{} `{what}` on {}: {report}",
            self.name,
            self.backend
        );
    }

    /// `(output · w).sum()` for one returned tensor.
    fn loss_term<const D: usize>(&self, output: Tensor<D>, what: &str) -> Tensor<1> {
        let w = self.tensor::<D>(&format!("w.{what}"), &output.device());
        (output * w).sum()
    }
}

fn is_buffer(key: &str) -> bool {
    key.ends_with("running_mean") || key.ends_with("running_var")
}

/// Sets every parameter and buffer from `{case}.param.{pytorch key}`.
struct Loader<'a> {
    case: &'a Case,
    device: Device,
    path: PytorchPath,
    loaded: Vec<String>,
    errors: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (key, transposed) = self.path.pytorch_name();
        let name = format!("param.{key}");
        if !self.case.has(&name) {
            self.errors.push(format!(
                "no PyTorch tensor `{key}` for Burn parameter `{}`",
                self.path.burn_path()
            ));
            return param;
        }
        let mut value = self.case.tensor::<D>(&name, &self.device);
        if transposed {
            value = value.transpose();
        }
        if value.dims() != param.shape().dims::<D>() {
            self.errors.push(format!(
                "`{key}`: PyTorch shape {:?} (as stored here), module shape {:?}",
                value.dims(),
                param.shape().dims::<D>()
            ));
            return param;
        }
        self.loaded.push(key);
        param.map(|old| value.set_require_grad(old.is_require_grad()))
    }
}

/// Load the case's PyTorch state_dict into `module`, checking the key map is one-to-one.
fn load<M: Module>(module: M, case: &Case, device: &Device) -> M {
    let mut loader = Loader {
        case,
        device: device.clone(),
        path: PytorchPath::default(),
        loaded: Vec::new(),
        errors: Vec::new(),
    };
    let module = module.map(&mut loader);
    assert!(
        loader.errors.is_empty(),
        "{}: {:#?}",
        case.name,
        loader.errors
    );
    let prefix = format!("{}.param.", case.name);
    let stored: BTreeSet<String> = fixture()
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let loaded: BTreeSet<String> = loader.loaded.iter().cloned().collect();
    assert_eq!(
        loaded.len(),
        loader.loaded.len(),
        "{}: a key loaded twice",
        case.name
    );
    assert_eq!(
        loaded, stored,
        "{}: Burn parameters vs PyTorch state_dict keys",
        case.name
    );
    module
}

/// Compares every parameter's gradient (and every buffer's value) with PyTorch's.
struct GradCheck<'a> {
    case: &'a Case,
    /// `None`: check the buffers (on a synchronised `valid()` copy) instead of gradients.
    grads: Option<&'a Gradients>,
    path: PytorchPath,
    checked: usize,
    failures: Vec<String>,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (key, transposed) = self.path.pytorch_name();
        let (actual, expected, tolerance) = match self.grads {
            None if is_buffer(&key) => {
                // Running statistics after the forward pass (they move in train mode).
                let stored = if self.case.has(&format!("after.{key}")) {
                    "after"
                } else {
                    "param"
                };
                (param.val(), format!("{stored}.{key}"), OUTPUT_TOL)
            }
            None => return,
            Some(_) if is_buffer(&key) => return,
            Some(grads) => {
                let Some(grad) = param.val().grad(grads) else {
                    self.failures.push(format!("`{key}`: no gradient"));
                    return;
                };
                let grad = if transposed { grad.transpose() } else { grad };
                (grad, format!("grad.{key}"), GRAD_TOL)
            }
        };
        let report = compare(&actual.into_data(), &self.case.data(&expected), tolerance);
        self.checked += 1;
        if !report.passed() {
            self.failures
                .push(format!("`{key}` ({expected}): {report}"));
        }
    }
}

/// Gradients of every parameter, then (on a `valid()` copy, which synchronises Burn's
/// running states) the value of every buffer.
fn check_grads<M: Module>(module: &M, case: &Case, grads: &Gradients) {
    for (target, grads) in [(module.clone(), Some(grads)), (module.valid(), None)] {
        let mut visitor = GradCheck {
            case,
            grads,
            path: PytorchPath::default(),
            checked: 0,
            failures: Vec::new(),
        };
        target.visit(&mut visitor);
        assert!(
            grads.is_none() || visitor.checked > 0,
            "{}: no parameters",
            case.name
        );
        assert!(
            visitor.failures.is_empty(),
            "{} on {}: {:#?}",
            case.name,
            case.backend,
            visitor.failures
        );
    }
}

/// Gradient of an input leaf, compared with `grad.{what}`.
fn check_input_grad<const D: usize>(case: &Case, input: &Tensor<D>, grads: &Gradients, what: &str) {
    let grad = input
        .grad(grads)
        .unwrap_or_else(|| panic!("{}: no gradient for input {what}", case.name));
    case.check(grad, &format!("grad.{what}"), GRAD_TOL);
}

fn train_mode<M: Module>(module: M, case: &Case) -> M {
    match case.cfg["train"].as_bool() {
        Some(false) => set_training(module, false),
        _ => module,
    }
}

fn plain_device(case: &Case) -> Option<Device> {
    // Cases PyTorch ran in eval() must also match on the inference device.
    (case.cfg["train"].as_bool() == Some(false)).then(|| case.backend.device().unwrap())
}

// ---------------------------------------------------------------------------------------------

fn dense(case: &Case) {
    match case.data("input").shape().len() {
        2 => dense_rank::<2>(case),
        3 => dense_rank::<3>(case),
        r => panic!("{}: rank {r}", case.name),
    }
}

fn dense_rank<const D: usize>(case: &Case) {
    let config = case.config(DenseConfig::new(0, 0));
    let device = &case.device;
    let dense = load(config.init(device).unwrap(), case, device);
    let x = case.tensor::<D>("input", device).require_grad();
    let y = dense.forward(x.clone());
    case.check(y.clone(), "output", OUTPUT_TOL);
    let grads = case.loss_term(y, "output").backward();
    check_grads(&dense, case, &grads);
    check_input_grad(case, &x, &grads, "input");
    // No train/eval difference: the inference device must agree too.
    let plain = case.backend.device().unwrap();
    case.check(
        dense.valid().forward(case.tensor::<D>("input", &plain)),
        "output",
        OUTPUT_TOL,
    );
}

fn conv_block(case: &Case) {
    let pool = case.cfg["pool"].as_array().map(|p| {
        let k = p[0].as_u64().unwrap() as usize;
        let s = p[1].as_u64().unwrap() as usize;
        ([k, k], [s, s])
    });
    let config = case
        .config(ConvBlockConfig::new(0, 0, [0, 0]))
        .with_pool_kernel(pool.map(|p| p.0))
        .with_pool_stride(pool.map(|p| p.1));
    let device = &case.device;
    let block = train_mode(load(config.init(device).unwrap(), case, device), case);
    let x = case.tensor::<4>("input", device).require_grad();
    let y = block.forward(x.clone());
    case.check(y.clone(), "output", OUTPUT_TOL);
    let grads = case.loss_term(y, "output").backward();
    check_grads(&block, case, &grads);
    check_input_grad(case, &x, &grads, "input");
    if let Some(plain) = plain_device(case) {
        case.check(
            block.valid().forward(case.tensor("input", &plain)),
            "output",
            OUTPUT_TOL,
        );
    }
}

fn lstm(case: &Case) {
    let config = case.config(LstmConfig::new(0, 0));
    let device = &case.device;
    let lstm = train_mode(load(config.init(device).unwrap(), case, device), case);
    let x = case.tensor::<3>("input", device).require_grad();
    let state = case.flag("with_state").then(|| {
        (
            case.tensor::<3>("h0", device).require_grad(),
            case.tensor::<3>("c0", device).require_grad(),
        )
    });
    let (out, (h_n, c_n)) = lstm.forward(x.clone(), state.clone());
    case.check(out.clone(), "output", OUTPUT_TOL);
    case.check(h_n.clone(), "h_n", OUTPUT_TOL);
    case.check(c_n.clone(), "c_n", OUTPUT_TOL);
    let loss =
        case.loss_term(out, "output") + case.loss_term(h_n, "h_n") + case.loss_term(c_n, "c_n");
    let grads = loss.backward();
    check_grads(&lstm, case, &grads);
    check_input_grad(case, &x, &grads, "input");
    if let Some((h0, c0)) = &state {
        check_input_grad(case, h0, &grads, "h0");
        check_input_grad(case, c0, &grads, "c0");
    }
    if let Some(plain) = plain_device(case) {
        let state = case
            .flag("with_state")
            .then(|| (case.tensor("h0", &plain), case.tensor("c0", &plain)));
        let (out, (h_n, _)) = lstm.valid().forward(case.tensor("input", &plain), state);
        case.check(out, "output", OUTPUT_TOL);
        case.check(h_n, "h_n", OUTPUT_TOL);
    }
}

fn mha(case: &Case) {
    let config = case.config(MultiHeadAttentionConfig::new(0, 0));
    let device = &case.device;
    let mha = train_mode(load(config.init(device).unwrap(), case, device), case);
    // The causal mask both as the flag and as PyTorch's explicit boolean attn_mask.
    let masks = |device: &Device| {
        let mut base = AttentionMask::none();
        if case.flag("key_padding_mask") {
            base = base.with_key_padding(case.mask("key_padding_mask", device));
        }
        if case.flag("causal") {
            vec![
                base.clone().with_causal(true),
                base.with_attn_mask(case.mask("attn_mask", device)),
            ]
        } else {
            vec![base]
        }
    };
    let self_attention = case.flag("self_attention");
    for mask in masks(device) {
        let (inputs, (out, weights)) = if self_attention {
            let x = case.tensor::<3>("input", device).require_grad();
            let r = mha.try_forward_self(x.clone(), mask, true).unwrap();
            (vec![(x, "input")], r)
        } else {
            let q = case.tensor::<3>("query", device).require_grad();
            let k = case.tensor::<3>("key", device).require_grad();
            let v = case.tensor::<3>("value", device).require_grad();
            let r = mha
                .try_forward(q.clone(), k.clone(), v.clone(), mask, true)
                .unwrap();
            (vec![(q, "query"), (k, "key"), (v, "value")], r)
        };
        let weights = weights.unwrap();
        case.check(out.clone(), "output", OUTPUT_TOL);
        case.check(weights.clone(), "attn_weights", OUTPUT_TOL);
        let loss = case.loss_term(out, "output") + case.loss_term(weights, "attn_weights");
        let grads = loss.backward();
        check_grads(&mha, case, &grads);
        for (x, what) in &inputs {
            check_input_grad(case, x, &grads, what);
        }
    }
    if let Some(plain) = plain_device(case) {
        let eval = mha.valid();
        for mask in masks(&plain) {
            let (out, _) = if self_attention {
                eval.forward_self(case.tensor("input", &plain), mask, false)
            } else {
                let t = |w: &str| case.tensor::<3>(w, &plain);
                eval.forward(t("query"), t("key"), t("value"), mask, false)
            };
            case.check(out, "output", OUTPUT_TOL);
        }
    }
}

fn transformer_block(case: &Case) {
    let config = case.config(TransformerBlockConfig::new(0, 0, 0));
    let device = &case.device;
    let block = train_mode(load(config.init(device).unwrap(), case, device), case);
    let x = case.tensor::<3>("input", device).require_grad();
    let (y, weights) = block.forward_with(x.clone(), AttentionMask::none(), true);
    let weights = weights.unwrap();
    case.check(y.clone(), "output", OUTPUT_TOL);
    case.check(weights.clone(), "attn_weights", OUTPUT_TOL);
    let grads = (case.loss_term(y, "output") + case.loss_term(weights, "attn_weights")).backward();
    check_grads(&block, case, &grads);
    check_input_grad(case, &x, &grads, "input");
    if let Some(plain) = plain_device(case) {
        case.check(
            block.valid().forward(case.tensor("input", &plain)),
            "output",
            OUTPUT_TOL,
        );
    }
}

fn positional(case: &Case) {
    // No parameters: the table and the forward pass, on the plain device.
    let device = case.backend.device().unwrap();
    let pe = case
        .config(PositionalEncodingConfig::new(0, 0))
        .init(&device)
        .unwrap();
    assert_eq!(pe.num_params(), 0);
    case.check(pe.table(), "table", OUTPUT_TOL);
    case.check(
        pe.forward(case.tensor("input", &device)),
        "output",
        OUTPUT_TOL,
    );
}

// ---------------------------------------------------------------------------------------------

/// Runs one case on its backend.
type Runner = fn(&Case);

const KINDS: [(&str, Runner); 6] = [
    ("dense", dense),
    ("conv_block", conv_block),
    ("lstm", lstm),
    ("mha", mha),
    ("transformer_block", transformer_block),
    ("positional", positional),
];

/// Run every case of `kind` on `backend`.
fn run_kind(kind: &str, backend: BackendKind) {
    let (_, run) = KINDS.iter().find(|(k, _)| *k == kind).unwrap();
    let mut ran = 0;
    for (name, cfg) in fixture().cases().unwrap() {
        if cfg["kind"] != kind {
            continue;
        }
        let case = Case {
            name,
            cfg,
            backend,
            device: backend.autodiff_device().unwrap(),
        };
        run(&case);
        ran += 1;
    }
    assert!(ran > 0, "no `{kind}` cases in the fixture");
}

#[test]
fn every_fixture_case_has_a_runner() {
    for (name, cfg) in fixture().cases().unwrap() {
        let kind = cfg["kind"].as_str().unwrap_or_default();
        assert!(
            KINDS.iter().any(|(k, _)| *k == kind),
            "case {name}: unknown kind `{kind}`"
        );
    }
    assert_eq!(fixture().metadata("torch"), Some("2.9.0"));
}

macro_rules! parity_tests {
    ($($module:ident => $kind:literal),* $(,)?) => {$(
        mod $module {
            dl_core::per_backend_tests!(|kind| super::run_kind($kind, kind));
        }
    )*};
}

parity_tests! {
    dense => "dense",
    conv_block => "conv_block",
    lstm => "lstm",
    mha => "mha",
    transformer_block => "transformer_block",
    positional => "positional",
}
