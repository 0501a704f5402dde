//! Export: `to_pytorch_state_dict(&model).write_safetensors(path)` and `.write_pytorch(path)`
//! write files that PyTorch's chapter model loads with `load_state_dict(strict=True)` (the
//! `.pt` file through `torch.load(weights_only=True)`) and that give our logits, for every
//! model; the write is atomic.
//!
//! The PyTorch half runs `fixtures/gen/check_export.py` with the Python named by
//! `DL_RS_PYTHON`, else the workspace's `.venv/bin/python` (made by `cargo xtask fixtures` or
//! `cargo xtask venv`, which `.ci/run` calls). Without a Python that imports torch the check
//! fails under `CI=true`, naming what is missing, and is skipped with a printed note elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{BackendKind, Fixture, Tolerance, compare, fixtures_dir, seed_device};
use dl_io::{Error, PytorchModel, StateDict, to_pytorch_state_dict};
use dl_models::{
    CnnConfig, LstmClassifierConfig, ScratchMlpConfig, TransformerClassifierConfig,
    TransformerInput,
};

mod common;
use common::{cnn_config, fixture_config, mlp_config, models};

const BACKENDS: [BackendKind; 2] = [BackendKind::Flex, BackendKind::NdArray];
/// Logits: f32 matmul/conv summation order differs between PyTorch and each backend (the
/// tolerance of tests/pytorch_models.rs).
const LOGITS: Tolerance = Tolerance::new(1e-5, 1e-5);

const SETUP: &str = "run `cargo xtask venv` (creates .venv with PyTorch 2.9.0) or set \
                     DL_RS_PYTHON to a Python with torch and safetensors";

/// Whether `python` imports torch and safetensors.
fn has_torch(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch, safetensors.torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Python to run the check with, found once. `None` (skip, with a note) only outside CI:
/// under `CI` a missing interpreter or a missing torch is a failure that says which.
fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let (candidate, named) = match std::env::var_os("DL_RS_PYTHON") {
                Some(path) => (PathBuf::from(path), true),
                None => (
                    fixtures_dir()
                        .parent()
                        .expect("fixtures/ lies in the workspace")
                        .join(".venv/bin/python"),
                    false,
                ),
            };
            let problem = if !candidate.exists() {
                format!("no Python at {}", candidate.display())
            } else if !has_torch(&candidate) {
                format!(
                    "{} cannot import torch and safetensors",
                    candidate.display()
                )
            } else {
                return Some(candidate);
            };
            assert!(
                !named && std::env::var_os("CI").is_none(),
                "PyTorch's load of our exports cannot run: {problem}; {SETUP}"
            );
            println!("note: {problem}: skipped PyTorch's load of our exports ({SETUP})");
            None
        })
        .as_deref()
}

/// Run check_export.py on `path` (a `.safetensors` or `.pt` state dict of case `model`);
/// returns PyTorch's logits.
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

/// Export `model` (freshly initialized, so not the fixture's weights) as safetensors and as
/// a `.pt` file, read the safetensors back, and where Python is available compare PyTorch's
/// logits from each file on the case's input with ours (`logits`).
fn export_check<M: PytorchModel>(
    backend: BackendKind,
    name: &str,
    model: M,
    logits: impl Fn(&M, TensorData, &Device) -> Tensor<2>,
) {
    let fixture: Fixture = models();
    let device = backend.device().expect("backend");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(format!("{name}.safetensors"));
    let pt = dir.path().join(format!("{name}.pt"));

    let state = to_pytorch_state_dict(&model);
    state.write_safetensors(&path).expect("write");
    // Only the file itself is left in the folder: the temporary file was renamed.
    assert_eq!(listing(dir.path()), [format!("{name}.safetensors")]);
    state.write_pytorch(&pt).expect("write .pt");

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
    let ours = logits(&model, x, &device).into_data();
    let Some(python) = python() else {
        return;
    };
    for file in [&path, &pt] {
        let theirs = pytorch_logits(python, file, name);
        let r = compare(&ours, &theirs, LOGITS);
        assert!(
            r.passed(),
            "{name} on {backend}, {}: PyTorch's logits differ from ours: {r}",
            file.display()
        );
    }
}

fn float(x: TensorData, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(x.convert::<f32>(), device)
}

#[test]
fn pytorch_loads_the_mlp_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 31);
        let model = mlp_config(&models()).init(&device).expect("valid");
        export_check(backend, "mlp", model, |m, x, d| m.forward(float(x, d)));
    }
}

#[test]
fn pytorch_loads_the_cnn_exports_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 37);
        let model = cnn_config(&models()).init(&device).expect("valid");
        let image = |m: &dl_models::Cnn, x: TensorData, d: &Device| {
            m.forward(Tensor::<4>::from_data(x.convert::<f32>(), d))
        };
        export_check(backend, "cnn", model, image);
        let model = fixture_config(&models(), "image_cnn", CnnConfig::new())
            .init(&device)
            .expect("valid");
        export_check(backend, "image_cnn", model, image);
    }
}

#[test]
fn pytorch_loads_the_lstm_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 41);
        let model = fixture_config(&models(), "lstm", LstmClassifierConfig::new())
            .init(&device)
            .expect("valid");
        export_check(backend, "lstm", model, |m, x, d| {
            m.forward(Tensor::<3>::from_data(x.convert::<f32>(), d))
        });
    }
}

#[test]
fn pytorch_loads_the_transformer_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 43);
        let model = fixture_config(&models(), "transformer", TransformerClassifierConfig::new())
            .init(&device)
            .expect("valid");
        export_check(backend, "transformer", model, |m, x, d| {
            let tokens = Tensor::<2, Int>::from_data(x.convert::<i64>(), d);
            m.try_forward(TransformerInput::Tokens(tokens))
                .expect("tokens fit")
        });
    }
}

#[test]
fn pytorch_loads_the_scratch_export_strictly() {
    for backend in BACKENDS {
        let device = backend.device().expect("backend");
        seed_device(&device, 47);
        // The case is the chapter's sigmoid network; He-scaled weights so that the logits
        // are not all near zero.
        let model = fixture_config(&models(), "scratch", ScratchMlpConfig::new(Vec::new()))
            .with_init_scale(0.0)
            .init(&device)
            .expect("valid");
        export_check(backend, "scratch", model, |m, x, d| m.logits(float(x, d)));
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
