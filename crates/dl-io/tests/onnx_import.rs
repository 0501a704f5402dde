//! ONNX import: `StateDict::from_onnx_file` on files written by `torch.onnx.export` from the
//! chapter's networks (fixtures/onnx/*.onnx, made by fixtures/gen/onnx_models.py with the
//! TorchScript exporter), and on broken files.
//!
//! For each fixture model the imported state dict must equal the PyTorch `state_dict()` stored
//! next to it in fixtures/onnx_models.safetensors (same keys, bit-identical values: the
//! exporter's renamed LSTM, `MatMul` and deduplicated weights included), load strictly into
//! our model of the same configuration, and give PyTorch's logits, on flex and on ndarray.

#![allow(clippy::unwrap_used)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{
    BackendKind, Fixture, SeededRng, Tolerance, compare, config_from_case, fixtures_dir,
};
use dl_io::{LoadMode, OnnxError, PytorchModel, StateDict, load_pytorch_state_dict};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, TransformerClassifierConfig, TransformerInput,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

const BACKENDS: [BackendKind; 2] = [BackendKind::Flex, BackendKind::NdArray];
/// Logits: f32 matmul/conv/LSTM summation order differs between PyTorch and each backend
/// (the tolerance of dl-io's other PyTorch-logit parity tests).
const LOGITS: Tolerance = Tolerance::new(1e-5, 1e-5);

fn fixture() -> Fixture {
    Fixture::open(fixtures_dir().join("onnx_models.safetensors")).unwrap()
}

fn onnx_file(name: &str) -> std::path::PathBuf {
    fixtures_dir().join("onnx").join(format!("{name}.onnx"))
}

/// The `XConfig` of fixture case `name`: `defaults` with every field the case sets.
fn config<C: Serialize + DeserializeOwned>(fixture: &Fixture, name: &str, defaults: C) -> C {
    let case = fixture
        .cases()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap();
    config_from_case(&defaults, &case, &[]).unwrap()
}

/// The imported state dict equals PyTorch's `state_dict()` exactly.
fn assert_state_dict(name: &str, state: &StateDict, fixture: &Fixture) {
    let prefix = format!("{name}.param.");
    let expected: Vec<&str> = fixture
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(prefix.as_str()))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        expected_sorted,
        "{name}: keys (notes: {:?})",
        state.notes()
    );
    for key in expected {
        let want = fixture.tensor(&format!("{prefix}{key}")).unwrap();
        let got = state.get(key).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}: {key}");
        assert_eq!(
            got.try_to_vec_as::<f32>().unwrap(),
            want.try_to_vec_as::<f32>().unwrap(),
            "{name}: {key}"
        );
    }
}

/// Import `name`, check it against the state dict, load it into `model` and compare the
/// logits that `forward` gives on the fixture's input with PyTorch's.
fn check<M: PytorchModel>(
    backend: BackendKind,
    name: &str,
    model: M,
    forward: impl Fn(&M, TensorData, &Device) -> TensorData,
) {
    let fixture = fixture();
    let device = backend.device().unwrap();
    let state = StateDict::from_onnx_file(onnx_file(name)).unwrap();
    assert_state_dict(name, &state, &fixture);
    let (model, report) = load_pytorch_state_dict(model, &state, LoadMode::Strict).unwrap();
    assert!(report.is_clean(), "{report}");
    let input = fixture.tensor(&format!("{name}.input")).unwrap();
    let expected = fixture.tensor(&format!("{name}.logits")).unwrap();
    let logits = forward(&model, input, &device);
    let result = compare(&logits, &expected, LOGITS);
    assert!(result.passed(), "{backend} {name}: {result}");
}

#[test]
fn torch_exported_mlp_loads() {
    let fixture = fixture();
    let config = config(&fixture, "mlp", MlpConfig::new());
    for backend in BACKENDS {
        let device = backend.device().unwrap();
        let model = config.init(&device).unwrap();
        check(backend, "mlp", model, |m, x, d| {
            m.forward(Tensor::from_data(x, d)).into_data()
        });
    }
}

#[test]
fn torch_exported_cnn_loads() {
    let fixture = fixture();
    let config = config(&fixture, "cnn", CnnConfig::new());
    for backend in BACKENDS {
        let device = backend.device().unwrap();
        let model = config.init(&device).unwrap();
        check(backend, "cnn", model, |m, x, d| {
            m.forward(Tensor::from_data(x, d)).into_data()
        });
    }
}

#[test]
fn torch_exported_lstm_loads_with_its_weights_renamed_back() {
    let fixture = fixture();
    let config = config(&fixture, "lstm", LstmClassifierConfig::new());
    // The exporter stores the LSTM weights as `onnx::LSTM_N` in ONNX's gate order.
    let state = StateDict::from_onnx_file(onnx_file("lstm")).unwrap();
    assert!(
        state
            .notes()
            .iter()
            .any(|n| n.starts_with("`lstm.weight_ih_l1` read from `onnx::LSTM_")),
        "{:?}",
        state.notes()
    );
    for backend in BACKENDS {
        let device = backend.device().unwrap();
        let model = config.init(&device).unwrap();
        check(backend, "lstm", model, |m, x, d| {
            m.forward(Tensor::from_data(x, d)).into_data()
        });
    }
}

#[test]
fn torch_exported_transformer_loads_with_shared_and_transposed_weights() {
    let fixture = fixture();
    let config = config(&fixture, "transformer", TransformerClassifierConfig::new());
    let state = StateDict::from_onnx_file(onnx_file("transformer")).unwrap();
    let notes = state.notes().join("\n");
    // Equal parameters are stored once (Identity nodes) and the in_proj weights transposed.
    assert!(
        notes.contains("`transformer_blocks.1.norm2.weight` is `"),
        "{notes}"
    );
    assert!(
        notes.contains("`transformer_blocks.1.attention.in_proj_weight` read from `onnx::MatMul_"),
        "{notes}"
    );
    for backend in BACKENDS {
        let device = backend.device().unwrap();
        let model = config.init(&device).unwrap();
        check(backend, "transformer", model, |m, x, d| {
            let tokens = Tensor::<2, Int>::from_data(x.convert::<i64>(), d);
            m.try_forward(TransformerInput::Tokens(tokens))
                .unwrap()
                .into_data()
        });
    }
}

#[test]
fn files_that_are_not_onnx_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let err = StateDict::from_onnx_file(&missing).unwrap_err();
    assert!(matches!(err, OnnxError::Io { .. }), "{err}");
    assert!(err.to_string().starts_with(&missing.display().to_string()));

    // A safetensors file and a PyTorch zip checkpoint are not ONNX models.
    for other in [
        fixtures_dir().join("onnx_models.safetensors"),
        fixtures_dir().join("pt/mlp.pt"),
    ] {
        if !other.exists() {
            continue;
        }
        let err = StateDict::from_onnx_file(&other).unwrap_err();
        assert!(
            matches!(err, OnnxError::Decode { .. })
                && err
                    .to_string()
                    .starts_with(&format!("{}: not a valid ONNX model", other.display())),
            "{err}"
        );
    }
}

/// Every prefix of a real file, and many copies with random bytes changed, give a state dict
/// or an error, never a panic or an allocation beyond the input.
#[test]
fn truncated_and_corrupted_files_never_panic() {
    for name in ["mlp", "lstm"] {
        let bytes = std::fs::read(onnx_file(name)).unwrap();
        let full = StateDict::from_onnx_bytes(&bytes, name).unwrap();
        let mut errors = 0;
        for len in 0..bytes.len() {
            match StateDict::from_onnx_bytes(&bytes[..len], name) {
                Ok(state) => assert!(state.len() <= full.len() + 4),
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().starts_with(name), "{e}");
                }
            }
        }
        // Most cuts land inside a field.
        assert!(errors > bytes.len() / 2, "{errors} of {}", bytes.len());
        let mut rng = SeededRng::new(4);
        for _ in 0..2000 {
            let mut corrupt = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(corrupt.len() as u64) as usize;
                corrupt[at] = rng.below(256) as u8;
            }
            let _ = StateDict::from_onnx_bytes(&corrupt, name);
        }
    }
}
