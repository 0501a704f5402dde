//! PyTorch `.pt`/`.pth` checkpoints written by `torch.save` (fixtures/pt, made by
//! `fixtures/gen/pt_files.py` with PyTorch 2.9.0 from the weights in models.safetensors)
//! read into the same state dict as the safetensors reference, and loaded into our models.

use burn::tensor::{Tensor, TensorData};
use dl_core::{BackendKind, Classifier, Fixture, Tolerance, compare};
use dl_io::{Error, LoadMode, StateDict, load_pytorch_state_dict};

mod common;
use common::{cnn_config, mlp_config, models, pt_fixture};

const BACKENDS: [BackendKind; 2] = [BackendKind::Flex, BackendKind::NdArray];
/// Logits: f32 matmul/conv summation order differs between PyTorch and each backend (the
/// tolerance of tests/pytorch_models.rs).
const LOGITS: Tolerance = Tolerance::new(1e-5, 1e-5);

/// The `{model}.param.*` tensors of models.safetensors under their state-dict keys.
fn reference(fixture: &Fixture, model: &str) -> StateDict {
    let prefix = format!("{model}.param.");
    let mut state = StateDict::new("reference");
    for name in fixture.names() {
        if let Some(key) = name.strip_prefix(&prefix) {
            state.insert(key, fixture.tensor(name).expect("tensor"));
        }
    }
    state
}

fn assert_same_tensors(actual: &StateDict, expected: &StateDict) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for key in expected.keys() {
        // Bit-exact: the .pt file holds the same f32 values as the safetensors file.
        let r = compare(
            actual.get(key).expect("key"),
            expected.get(key).expect("key"),
            Tolerance::EXACT,
        );
        assert!(r.passed(), "`{key}`: {r}");
    }
}

/// Load `state` into the fixture's MLP and compare its eval logits with PyTorch's.
fn mlp_logits_match(backend: BackendKind, state: &StateDict) {
    let fixture = models();
    let device = backend.device().expect("backend");
    let model = mlp_config(&fixture).init(&device).expect("valid");
    let (model, report) =
        load_pytorch_state_dict(model, state, LoadMode::Strict).expect("strict load");
    assert!(report.is_clean(), "{report}");
    let x = Tensor::<2>::from_data(fixture.tensor("mlp.input").expect("input"), &device);
    let r = compare(
        &model.logits(x).to_data(),
        &fixture.tensor("mlp.logits").expect("logits"),
        LOGITS,
    );
    assert!(
        r.passed(),
        "mlp logits on {backend} from {}: {r}",
        state.source()
    );
}

fn cnn_logits_match(backend: BackendKind, state: &StateDict) {
    let fixture = models();
    let device = backend.device().expect("backend");
    let model = cnn_config(&fixture).init(&device).expect("valid");
    let (model, report) =
        load_pytorch_state_dict(model, state, LoadMode::Strict).expect("strict load");
    assert!(report.is_clean(), "{report}");
    let x = Tensor::<4>::from_data(fixture.tensor("cnn.input").expect("input"), &device);
    let r = compare(
        &model.logits(x).to_data(),
        &fixture.tensor("cnn.logits").expect("logits"),
        LOGITS,
    );
    assert!(
        r.passed(),
        "cnn logits on {backend} from {}: {r}",
        state.source()
    );
}

#[test]
fn zip_checkpoint_matches_the_safetensors_reference_and_loads() {
    let path = pt_fixture("mlp.pt");
    let state = StateDict::from_pytorch_file(&path).expect("read mlp.pt");
    assert_eq!(state.source(), path.display().to_string());
    assert!(state.notes().is_empty(), "{:?}", state.notes());
    assert_same_tensors(&state, &reference(&models(), "mlp"));
    BACKENDS
        .into_iter()
        .for_each(|b| mlp_logits_match(b, &state));
}

#[test]
fn legacy_pickle_checkpoint_reads_the_same() {
    // `_use_new_zipfile_serialization=False`: no zip, found by content via `from_file`.
    let state = StateDict::from_file(pt_fixture("mlp_legacy.pt")).expect("read legacy");
    assert_same_tensors(&state, &reference(&models(), "mlp"));
}

#[test]
fn dataparallel_checkpoint_loads_after_remapping() {
    let state = StateDict::from_file(pt_fixture("cnn_dataparallel.pth")).expect("read .pth");
    assert!(state.keys().all(|k| k.starts_with("module.")));
    let device = BackendKind::Flex.device().expect("flex");
    let model = cnn_config(&models()).init(&device).expect("valid");
    let err = load_pytorch_state_dict(model, &state, LoadMode::Strict).unwrap_err();
    assert!(
        err.to_string()
            .contains("unexpected key(s): \"module.conv1.bias\""),
        "{err}"
    );

    let state = state.remap_keys(&[("^module\\.", "")]).expect("remap");
    assert_same_tensors(&state, &reference(&models(), "cnn"));
    assert_eq!(
        state.notes(),
        ["renamed 10 of 10 keys by `^module\\.` -> ``"]
    );
    BACKENDS
        .into_iter()
        .for_each(|b| cnn_logits_match(b, &state));
}

#[test]
fn float_dtypes_become_f32_with_the_same_notes_as_safetensors() {
    let state = StateDict::from_pytorch_file(pt_fixture("dtypes.pt")).expect("read dtypes.pt");
    // torch.arange(-3, 3, 0.5).reshape(3, 4): exact in f16, bf16, f32 and f64.
    let expected: Vec<f32> = (0..12).map(|i| -3.0 + 0.5 * i as f32).collect();
    for key in ["bf16", "f16", "f32", "f64"] {
        let data = state.get(key).expect(key);
        assert_eq!(data.shape().to_vec(), [3, 4], "{key}");
        assert_eq!(data.try_to_vec::<f32>().expect("f32"), expected, "{key}");
    }
    assert_eq!(
        state.notes(),
        [
            "`bf16` converted from BF16 to F32",
            "`f16` converted from F16 to F32",
            "`f64` converted from F64 to F32",
        ]
    );
}

#[test]
fn integer_tensor_is_refused_by_file_and_key() {
    let path = pt_fixture("int_tensor.pt");
    let err = StateDict::from_pytorch_file(&path).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedDtype { key, dtype, .. } if key == "fc.steps" && dtype == "I64"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn non_finite_weights_warn_or_fail() {
    let path = pt_fixture("nonfinite.pt");
    let state = StateDict::from_file(&path).expect("read nonfinite.pt");
    // The generator stored [[1, nan, inf], [-inf, 2, 3]] and zeros(2).
    assert_eq!(
        state.check_finite(false).expect("warnings"),
        ["`fc.weight`: 3 of 6 values not finite (1 NaN, 1 +Inf, 1 -Inf)"]
    );
    let err = state.check_finite(true).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { key, count: 3, .. } if key == "fc.weight"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn from_file_goes_by_content_not_extension() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A PyTorch zip named .safetensors ...
    let pt_named_safetensors = dir.path().join("weights.safetensors");
    std::fs::copy(pt_fixture("mlp.pt"), &pt_named_safetensors).expect("copy");
    let state = StateDict::from_file(&pt_named_safetensors).expect("read by content");
    assert_same_tensors(&state, &reference(&models(), "mlp"));
    // ... and a safetensors file named .pt.
    let safetensors_named_pt = dir.path().join("weights.pt");
    state
        .write_safetensors(&safetensors_named_pt)
        .expect("write");
    let back = StateDict::from_file(&safetensors_named_pt).expect("read by content");
    assert_same_tensors(&back, &state);
    // The PyTorch reader itself refuses the safetensors file, naming it.
    let err = StateDict::from_pytorch_file(&safetensors_named_pt).unwrap_err();
    assert!(matches!(err, Error::Pytorch { .. }), "{err}");
}

#[test]
fn insert_and_read_back_keeps_shapes() {
    // A scalar and an empty tensor survive a write/read round trip through safetensors.
    let mut state = StateDict::new("mem");
    state.insert("scalar", TensorData::new(vec![4.5f32], Vec::<usize>::new()));
    state.insert("empty", TensorData::new(Vec::<f32>::new(), [0, 3]));
    let bytes = state.to_safetensors_bytes().expect("bytes");
    let back = StateDict::from_safetensors_bytes(&bytes, "mem").expect("read");
    assert_eq!(back.get("scalar"), state.get("scalar"));
    assert_eq!(back.get("empty").expect("empty").shape().to_vec(), [0, 3]);
}
