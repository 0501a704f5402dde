//! Every model of the chapter loads PyTorch's state dict under PyTorch's names, and exports
//! it back unchanged; a state dict that does not fit is reported like PyTorch reports it.
//!
//! The numbers these weights produce (logits, gradients, trajectories) are compared with
//! PyTorch's by the parity suite, `crates/dl-parity`.

use burn::module::Module;
use burn::tensor::{Device, TensorData};
use dl_core::{BackendKind, Fixture, Tolerance, compare};
use dl_io::{
    Error, LoadMode, PytorchModel, StateDict, layout_named, load_pytorch_state_dict,
    state_dict_with_layout, to_pytorch_state_dict,
};
use dl_models::{
    CnnConfig, LstmClassifierConfig, LstmForecasterConfig, MlpConfig, ScratchMlpConfig,
    TransformerClassifierConfig,
};
use serde_json::Value;

mod common;

use common::{case_config, models};

fn state_with_prefix(fixture: &Fixture, prefix: &str) -> StateDict {
    let mut state = StateDict::new(format!("{} [{prefix}*]", fixture.path().display()));
    for name in fixture.names() {
        if let Some(key) = name.strip_prefix(prefix) {
            state.insert(key, fixture.tensor(name).expect("tensor"));
        }
    }
    state
}

fn usize_of(config: &Value, key: &str) -> usize {
    config[key].as_u64().expect("integer config") as usize
}

fn sizes(config: &Value, key: &str) -> Vec<usize> {
    config[key]
        .as_array()
        .expect("sizes")
        .iter()
        .map(|v| v.as_u64().expect("size") as usize)
        .collect()
}

/// Strict load, then export under the layout the load picked: exactly the file's tensors.
fn round_trip<M: PytorchModel>(backend: BackendKind, name: &str, model: M) {
    let fixture = models();
    let state = state_with_prefix(&fixture, &format!("{name}.param."));
    let (model, report) = load_pytorch_state_dict(model, &state, LoadMode::Strict)
        .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.loaded.len(), state.len());
    let layout = layout_named::<M>(&report.layout).expect("the layout the load used");
    let exported = state_dict_with_layout(&model, &layout);
    assert_eq!(
        exported.keys().collect::<Vec<_>>(),
        state.keys().collect::<Vec<_>>()
    );
    for key in state.keys() {
        let r = compare(
            exported.get(key).expect("key"),
            state.get(key).expect("key"),
            Tolerance::EXACT,
        );
        assert!(r.passed(), "{name} on {backend} `{key}`: {r}");
    }
}

#[test]
fn every_model_round_trips_pytorch_state_dicts() {
    let fixture = models();
    for backend in [BackendKind::Flex, BackendKind::NdArray] {
        let device: Device = backend.device().expect("backend");
        let c = case_config(&fixture, "mlp");
        let mlp = MlpConfig::new()
            .with_input_size(usize_of(&c, "input_size"))
            .with_hidden_sizes(sizes(&c, "hidden_sizes"))
            .with_num_classes(usize_of(&c, "num_classes"));
        round_trip(backend, "mlp", mlp.init(&device).expect("mlp"));
        for name in ["cnn", "image_cnn"] {
            let c = case_config(&fixture, name);
            let channels = sizes(&c, "conv_channels");
            let cnn = cnn_config(&c, [channels[0], channels[1], channels[2]]);
            round_trip(backend, name, cnn.init(&device).expect("cnn"));
        }
        let c = case_config(&fixture, "lstm");
        let lstm = LstmClassifierConfig::new()
            .with_input_size(usize_of(&c, "input_size"))
            .with_hidden_size(usize_of(&c, "hidden_size"))
            .with_num_layers(usize_of(&c, "num_layers"))
            .with_num_classes(usize_of(&c, "num_classes"));
        round_trip(backend, "lstm", lstm.init(&device).expect("lstm"));
        let c = case_config(&fixture, "transformer");
        let transformer = TransformerClassifierConfig::new()
            .with_vocab_size(usize_of(&c, "vocab_size"))
            .with_d_model(usize_of(&c, "d_model"))
            .with_n_heads(usize_of(&c, "n_heads"))
            .with_n_layers(usize_of(&c, "n_layers"))
            .with_d_ff(usize_of(&c, "d_ff"))
            .with_max_seq_length(usize_of(&c, "max_seq_length"))
            .with_num_classes(usize_of(&c, "num_classes"));
        round_trip(
            backend,
            "transformer",
            transformer.init(&device).expect("transformer"),
        );
        let c = case_config(&fixture, "scratch");
        let scratch = ScratchMlpConfig::new(sizes(&c, "layer_sizes"));
        round_trip(backend, "scratch", scratch.init(&device).expect("scratch"));
    }
}

/// The transformer's positional table is not a parameter: nothing in the state dict for it,
/// as in the chapter, where it is a plain attribute.
#[test]
fn positional_table_is_not_exported() {
    let device = BackendKind::Flex.device().expect("flex");
    let model = TransformerClassifierConfig::new()
        .init(&device)
        .expect("transformer");
    let state = to_pytorch_state_dict(&model);
    assert!(
        state.keys().all(|k| !k.contains("pos")),
        "{:?}",
        state.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        state
            .keys()
            .map(|k| state.get(k).map_or(0, |d| d.num_elements()))
            .sum::<usize>(),
        model.num_params()
    );
}

fn cnn_config(config: &Value, channels: [usize; 3]) -> CnnConfig {
    CnnConfig::new()
        .with_in_channels(usize_of(config, "in_channels"))
        .with_image_size(usize_of(config, "image_size"))
        .with_conv_channels(channels)
        .with_hidden_size(usize_of(config, "hidden_size"))
        .with_num_classes(usize_of(config, "num_classes"))
}

#[test]
fn strict_loading_reports_every_problem_by_name_with_shapes() {
    let fixture = models();
    let device = BackendKind::Flex.device().expect("flex");
    let config = case_config(&fixture, "cnn");
    let mut state = state_with_prefix(&fixture, "cnn.param.");
    state.remove("fc2.bias");
    state.insert("fc3.weight", TensorData::new(vec![0.0f32; 6], [2, 3]));
    state.insert("conv1.bias", TensorData::new(vec![0.0f32; 3], [3]));
    let model = cnn_config(&config, [4, 6, 8]).init(&device).expect("valid");
    let err = load_pytorch_state_dict(model, &state, LoadMode::Strict).unwrap_err();
    let Error::Mismatch(report) = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(report.missing, vec![("fc2.bias".to_string(), vec![5])]);
    assert_eq!(
        report.unexpected,
        vec![("fc3.weight".to_string(), vec![2, 3])]
    );
    assert_eq!(report.mismatched.len(), 1);
    let text = err.to_string();
    assert!(text.contains("missing key(s): \"fc2.bias\" [5]"), "{text}");
    assert!(
        text.contains("unexpected key(s): \"fc3.weight\" [2, 3]"),
        "{text}"
    );
    assert!(
        text.contains("size mismatch for conv1.bias: copying a param with shape [3] from checkpoint, the shape in current model is [4]"),
        "{text}"
    );

    // Partial mode loads the rest and returns the same report.
    let model = cnn_config(&config, [4, 6, 8]).init(&device).expect("valid");
    let (model, report) =
        load_pytorch_state_dict(model, &state, LoadMode::Partial).expect("partial");
    assert!(!report.is_clean());
    let fc1 = to_pytorch_state_dict(&model);
    assert_eq!(fc1.get("fc1.weight"), state.get("fc1.weight"));
}

/// fixtures/forecaster.safetensors (fixtures/gen/forecaster.py): PyTorch's `LstmForecaster`
/// weights load strictly under PyTorch's names and give PyTorch's outputs.
#[test]
fn lstm_forecaster_matches_pytorch() {
    let fixture = Fixture::open(dl_core::fixtures_dir().join("forecaster.safetensors"))
        .expect("forecaster fixture");
    let cases = fixture.cases().expect("cases");
    assert_eq!(cases.len(), 2);
    for backend in [BackendKind::Flex, BackendKind::NdArray] {
        let device: Device = backend.device().expect("backend");
        for (name, c) in &cases {
            let config = LstmForecasterConfig::new()
                .with_input_size(usize_of(c, "input_size"))
                .with_hidden_size(usize_of(c, "hidden_size"))
                .with_num_layers(usize_of(c, "num_layers"))
                .with_horizon(usize_of(c, "horizon"));
            assert_eq!(config.num_params().unwrap(), usize_of(c, "parameters"));
            let state = state_with_prefix(&fixture, &format!("{name}.param."));
            let (model, report) = load_pytorch_state_dict(
                config.init(&device).expect("model"),
                &state,
                LoadMode::Strict,
            )
            .unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
            assert!(report.is_clean(), "{report}");
            let input = fixture.tensor(&format!("{name}.input")).expect("input");
            let output = model.forward(burn::tensor::Tensor::<3>::from_data(input, &device));
            let expected = fixture.tensor(&format!("{name}.output")).expect("output");
            // 1e-5: f32 LSTM over at most 7 steps; only the summation order differs from PyTorch.
            let r = compare(&output.into_data(), &expected, Tolerance::new(1e-5, 1e-5));
            assert!(r.passed(), "{name} on {backend}: {r}");
            // And the export gives PyTorch's keys back.
            assert_eq!(
                to_pytorch_state_dict(&model).keys().collect::<Vec<_>>(),
                state.keys().collect::<Vec<_>>()
            );
        }
    }
}
