//! Export: `to_pytorch_state_dict(&model).write_safetensors(path)` writes a file that PyTorch's
//! chapter model loads with `load_state_dict(strict=True)` and that gives our logits; the
//! write is atomic.
//!
//! The PyTorch half runs `fixtures/gen/check_export.py` with the Python named by
//! `DL_RS_PYTHON`, else the workspace's `.venv/bin/python` (made by `cargo xtask fixtures`),
//! and is skipped with a printed note when neither exists (CI has no torch).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use dl_core::{BackendKind, Classifier, Fixture, Tolerance, compare, fixtures_dir, seed_device};
use dl_io::{Error, PytorchModel, StateDict, to_pytorch_state_dict};

mod common;
use common::{cnn_config, mlp_config, models};

const BACKENDS: [BackendKind; 2] = [BackendKind::Flex, BackendKind::NdArray];
/// Logits: f32 matmul/conv summation order differs between PyTorch and each backend (the
/// tolerance of tests/pytorch_models.rs).
const LOGITS: Tolerance = Tolerance::new(1e-5, 1e-5);

/// The Python to run the check with, if there is one.
fn python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("DL_RS_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => fixtures_dir().parent()?.join(".venv/bin/python"),
    };
    candidate.exists().then_some(candidate)
}

/// Run check_export.py on `path`; returns PyTorch's logits.
fn pytorch_logits(python: &Path, path: &Path, model: &str) -> TensorData {
    let script = fixtures_dir().join("gen/check_export.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(path)
        .arg(model)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} {} {model} failed:\n{stdout}\n{}",
        script.display(),
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    let json: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let shape: Vec<usize> = json["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().expect("dim") as usize)
        .collect();
    let values: Vec<f32> = json["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    TensorData::new(values, shape)
}

/// Export `model` (freshly initialized, so not the fixture's weights), read the file back,
/// and where Python is available compare PyTorch's logits on the case's input with ours.
fn export_check<M, I>(backend: BackendKind, name: &str, model: M, input: I)
where
    M: PytorchModel + Classifier,
    I: Fn(TensorData, &Device) -> M::Input,
{
    let fixture: Fixture = models();
    let device = backend.device().expect("backend");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(format!("{name}.safetensors"));

    let state = to_pytorch_state_dict(&model);
    state.write_safetensors(&path).expect("write");
    // Only the file itself is left in the folder: the temporary file was renamed.
    assert_eq!(listing(dir.path()), [format!("{name}.safetensors")]);

    let bytes = std::fs::read(&path).expect("read back");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    assert_eq!(
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );
    let back = StateDict::from_file(&path).expect("read back");
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        state.keys().collect::<Vec<_>>()
    );
    for key in state.keys() {
        assert_eq!(back.get(key), state.get(key), "`{key}` changed in the file");
    }

    let x = fixture.tensor(&format!("{name}.input")).expect("input");
    let ours = model.logits(input(x, &device)).into_data();
    let Some(python) = python() else {
        println!(
            "note: no Python with torch (set DL_RS_PYTHON or run `cargo xtask fixtures`): \
             skipped PyTorch's load of the {name} export on {backend}"
        );
        return;
    };
    let theirs = pytorch_logits(&python, &path, name);
    let r = compare(&ours, &theirs, LOGITS);
    assert!(
        r.passed(),
        "{name} on {backend}: PyTorch's logits differ from ours: {r}"
    );
}

#[test]
fn pytorch_loads_the_mlp_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 31);
        let model = mlp_config(&models()).init(&device).expect("valid");
        export_check(backend, "mlp", model, |x, d| Tensor::<2>::from_data(x, d));
    }
}

#[test]
fn pytorch_loads_the_cnn_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 37);
        let model = cnn_config(&models()).init(&device).expect("valid");
        export_check(backend, "cnn", model, |x, d| Tensor::<4>::from_data(x, d));
    }
}

fn sample_state(value: f32) -> StateDict {
    let mut state = StateDict::new("sample");
    state.insert("fc.weight", TensorData::new(vec![value; 6], [2, 3]));
    state.insert("fc.bias", TensorData::new(vec![value; 2], [2]));
    state
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn write_replaces_an_existing_file_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weights.safetensors");
    sample_state(1.0)
        .write_safetensors(&path)
        .expect("first write");
    sample_state(2.0)
        .write_safetensors(&path)
        .expect("second write");
    let back = StateDict::from_safetensors_file(&path).expect("read");
    assert_eq!(back.get("fc.bias"), sample_state(2.0).get("fc.bias"));
    assert_eq!(listing(dir.path()), ["weights.safetensors"]);
}

#[test]
fn failed_writes_leave_no_file_and_the_old_one_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weights.safetensors");
    sample_state(1.0).write_safetensors(&path).expect("write");
    let before = std::fs::read(&path).expect("read");

    // Refused before anything is written: an integer tensor.
    let mut bad = sample_state(5.0);
    bad.insert("steps", TensorData::new(vec![3i64], [1]));
    let err = bad.write_safetensors(&path).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedDtype { key, .. } if key == "steps"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(listing(dir.path()), ["weights.safetensors"]);

    // Fails at the rename, after the temporary file was written and synced: the target is a
    // non-empty folder. The temporary file is removed and the folder is untouched.
    let folder = dir.path().join("taken");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("keep.txt"), b"keep").expect("write");
    let err = sample_state(5.0).write_safetensors(&folder).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("taken"), "{err}");
    assert_eq!(listing(&folder), ["keep.txt"]);
    assert_eq!(listing(dir.path()), ["taken", "weights.safetensors"]);

    // Fails at the start: the folder does not exist. Nothing is created.
    let missing = dir.path().join("no_such_dir").join("weights.safetensors");
    let err = sample_state(5.0).write_safetensors(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("no_such_dir"), "{err}");
    assert_eq!(listing(dir.path()), ["taken", "weights.safetensors"]);
    assert_eq!(std::fs::read(&path).expect("read"), before);
}
