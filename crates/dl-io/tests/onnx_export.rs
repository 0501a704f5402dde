//! ONNX export of the five dl-models networks: `export_onnx` writes a file that
//! `onnx.checker` accepts and that ONNX Runtime runs to our outputs, and whose initializers
//! are the model's PyTorch state dict.
//!
//! For each model (small configurations, seeded, on flex and on ndarray) the test
//! 1. exports it to a temporary folder;
//! 2. reads the file back with dl-io's own decoder (`StateDict::from_onnx_file`) and checks
//!    that the initializers are exactly `to_pytorch_state_dict(&model)`, then loads them
//!    strictly into a fresh model and checks that it gives bit-identical outputs;
//! 3. writes the inputs and our outputs to a safetensors file and runs
//!    `fixtures/gen/check_onnx.py`, which runs `onnx.checker.check_model(full_check=True)` and
//!    ONNX Runtime on the CPU at batch sizes 1 and 3 (and, for the sequence models, two
//!    sequence lengths), comparing with rtol 1e-4, atol 1e-5.
//!
//! Step 3 needs a Python with onnx and onnxruntime: `DL_RS_ONNX_PYTHON`, else
//! `.venv-onnx/bin/python` at the workspace root, else `.venv/bin/python` if it has them. With
//! none, the step is skipped with a note, except in CI (`CI` set) where that is a failure.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dl_core::{BackendKind, SeededRng, fixtures_dir, seed_device};
use dl_io::{
    LoadMode, OnnxExport, OnnxExportOptions, PytorchModel, StateDict, export_onnx,
    load_pytorch_state_dict, to_pytorch_state_dict,
};
use dl_models::{
    CnnConfig, LstmClassifierConfig, LstmForecasterConfig, MlpConfig, ScratchActivation,
    ScratchMlpConfig, ScratchOutput, TransformerClassifierConfig, TransformerInput,
};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

const BACKENDS: [BackendKind; 2] = [BackendKind::Flex, BackendKind::NdArray];

#[path = "support/onnx_python.rs"]
mod onnx_python;
use onnx_python::python;

// ---- the Python side -------------------------------------------------------------------------

/// Write the cases as `input[.k]` / `expected[.k]` for check_onnx.py.
fn write_cases(path: &Path, cases: &[(TensorData, TensorData)]) {
    let mut buffers = Vec::new();
    for (k, (input, expected)) in cases.iter().enumerate() {
        let suffix = if k == 0 {
            String::new()
        } else {
            format!(".{k}")
        };
        for (name, data) in [("input", input), ("expected", expected)] {
            let (dtype, bytes) = match data.dtype() {
                burn::tensor::DType::I64 => (
                    Dtype::I64,
                    data.iter::<i64>()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<_>>(),
                ),
                _ => (
                    Dtype::F32,
                    data.iter::<f32>().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            };
            buffers.push((
                format!("{name}{suffix}"),
                dtype,
                data.shape().to_vec(),
                bytes,
            ));
        }
    }
    let views = buffers.iter().map(|(name, dtype, shape, bytes)| {
        (
            name.as_str(),
            TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
        )
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Run check_onnx.py; panics with its output unless every run is within tolerance.
fn onnx_runtime_check(python: &Path, model: &Path, cases_file: &Path, cases: usize) {
    let script = fixtures_dir().join("gen/check_onnx.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(cases_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed:\n{stdout}\n{stderr}",
        script.display(),
        model.display()
    );
    // Shown with `cargo test -- --nocapture`: the measured errors.
    println!("{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["ok"], true, "{stdout}");
    // Every case at batch 1 and at its full batch of 3.
    assert_eq!(
        summary["runs"].as_array().unwrap().len(),
        2 * cases,
        "{stdout}"
    );
}

// ---- the shared check ------------------------------------------------------------------------

/// Export `model`, check its initializers and a strict reload with dl-io's decoder, then run
/// the ONNX Runtime check on `cases` (input, our output).
fn export_check<M: OnnxExport>(
    backend: BackendKind,
    name: &str,
    model: &M,
    cases: &[(TensorData, TensorData)],
    reload: impl Fn(&StateDict) -> Vec<TensorData>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    export_onnx(model, &path, &OnnxExportOptions::default()).unwrap();

    let state = to_pytorch_state_dict(model);
    let read = StateDict::from_onnx_file(&path).unwrap();
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        state.keys().collect::<Vec<_>>(),
        "{backend} {name}: initializer names"
    );
    for key in state.keys() {
        let (a, b) = (read.get(key).unwrap(), state.get(key).unwrap());
        assert_eq!(a.shape(), b.shape(), "{backend} {name}: {key} shape");
        assert_eq!(
            a.try_to_vec_as::<f32>().unwrap(),
            b.try_to_vec_as::<f32>().unwrap(),
            "{backend} {name}: {key} values"
        );
    }
    assert!(read.notes().is_empty(), "{:?}", read.notes());
    // The same weights give the same computation: bit-identical outputs.
    for ((_, expected), reloaded) in cases.iter().zip(reload(&read)) {
        assert_eq!(
            &reloaded, expected,
            "{backend} {name}: reloaded model's outputs"
        );
    }

    if let Some(python) = python() {
        let cases_file = dir.path().join(format!("{name}.cases.safetensors"));
        write_cases(&cases_file, cases);
        onnx_runtime_check(python, &path, &cases_file, cases.len());
    }
}

/// Load `state` strictly into `fresh` (a model of the same configuration, other weights).
fn load<M: PytorchModel>(fresh: M, state: &StateDict) -> M {
    let (model, report) = load_pytorch_state_dict(fresh, state, LoadMode::Strict).unwrap();
    assert!(report.is_clean(), "{report}");
    model
}

fn uniform(rng: &mut SeededRng, shape: &[usize], device: &Device) -> Tensor<1> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn uniform2(rng: &mut SeededRng, shape: [usize; 2], device: &Device) -> Tensor<2> {
    uniform(rng, &shape, device).reshape(shape)
}

fn uniform3(rng: &mut SeededRng, shape: [usize; 3], device: &Device) -> Tensor<3> {
    uniform(rng, &shape, device).reshape(shape)
}

fn uniform4(rng: &mut SeededRng, shape: [usize; 4], device: &Device) -> Tensor<4> {
    uniform(rng, &shape, device).reshape(shape)
}

// ---- the five models -------------------------------------------------------------------------

fn mlp(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 1);
    let config = MlpConfig::new()
        .with_input_size(12)
        .with_hidden_sizes(vec![16, 8])
        .with_num_classes(4);
    let model = config.init(&device).unwrap();
    let x = uniform2(&mut SeededRng::new(11), [3, 12], &device);
    let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
    export_check(backend, "mlp", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        vec![fresh.forward(x.clone()).into_data()]
    });
}

fn cnn(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 2);
    // 16x16 -> 8 -> 4 -> 2 after the pools: fc1 reads 8 * 2 * 2 features.
    let config = CnnConfig::new()
        .with_in_channels(3)
        .with_image_size(16)
        .with_conv_channels([4, 6, 8])
        .with_hidden_size(16)
        .with_num_classes(5);
    let model = config.init(&device).unwrap();
    let x = uniform4(&mut SeededRng::new(12), [3, 3, 16, 16], &device);
    let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
    export_check(backend, "cnn", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        vec![fresh.forward(x.clone()).into_data()]
    });
}

fn lstm(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 3);
    let config = LstmClassifierConfig::new()
        .with_input_size(5)
        .with_hidden_size(8)
        .with_num_layers(2)
        .with_num_classes(3);
    let model = config.init(&device).unwrap();
    let mut rng = SeededRng::new(13);
    // Two sequence lengths: the `sequence` dimension is dynamic too.
    let inputs = [
        uniform3(&mut rng, [3, 7, 5], &device),
        uniform3(&mut rng, [3, 2, 5], &device),
    ];
    let cases: Vec<_> = inputs
        .iter()
        .map(|x| (x.to_data(), model.forward(x.clone()).into_data()))
        .collect();
    export_check(backend, "lstm", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        inputs
            .iter()
            .map(|x| fresh.forward(x.clone()).into_data())
            .collect()
    });
}

fn lstm_forecaster(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 4);
    let config = LstmForecasterConfig::new()
        .with_hidden_size(6)
        .with_num_layers(2)
        .with_horizon(2);
    let model = config.init(&device).unwrap();
    let mut rng = SeededRng::new(14);
    // Two window lengths: the `sequence` dimension is symbolic, so one file serves any window.
    let inputs = [
        uniform3(&mut rng, [3, 9, 1], &device),
        uniform3(&mut rng, [3, 4, 1], &device),
    ];
    let cases: Vec<_> = inputs
        .iter()
        .map(|x| (x.to_data(), model.forward(x.clone()).into_data()))
        .collect();
    export_check(backend, "lstm_forecaster", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        inputs
            .iter()
            .map(|x| fresh.forward(x.clone()).into_data())
            .collect()
    });
}

fn transformer_config() -> TransformerClassifierConfig {
    TransformerClassifierConfig::new()
        .with_vocab_size(20)
        .with_d_model(16)
        .with_n_heads(4)
        .with_n_layers(2)
        .with_d_ff(32)
        .with_max_seq_length(12)
        .with_num_classes(3)
}

fn transformer_tokens(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 4);
    let config = transformer_config();
    let model = config.init(&device).unwrap();
    let mut rng = SeededRng::new(14);
    let inputs: Vec<Tensor<2, Int>> = [[3, 10], [3, 4]]
        .into_iter()
        .map(|shape| {
            let ids: Vec<i64> = (0..shape[0] * shape[1])
                .map(|_| rng.below(20) as i64)
                .collect();
            Tensor::from_data(TensorData::new(ids, shape), &device)
        })
        .collect();
    let run = |m: &dl_models::TransformerClassifier, x: &Tensor<2, Int>| {
        m.try_forward(TransformerInput::Tokens(x.clone()))
            .unwrap()
            .into_data()
    };
    let cases: Vec<_> = inputs
        .iter()
        .map(|x| (x.to_data().convert::<i64>(), run(&model, x)))
        .collect();
    export_check(backend, "transformer_tokens", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        inputs.iter().map(|x| run(&fresh, x)).collect()
    });
}

fn transformer_patches(backend: BackendKind) {
    let device = backend.device().unwrap();
    seed_device(&device, 5);
    // 7x7 patches, pre-norm blocks: the other embedding and the other block order.
    let config = transformer_config()
        .with_patch_size(Some(7))
        .with_norm_first(true);
    let model = config.init(&device).unwrap();
    let mut rng = SeededRng::new(15);
    let inputs = [
        uniform3(&mut rng, [3, 12, 7], &device),
        uniform3(&mut rng, [3, 5, 7], &device),
    ];
    let run = |m: &dl_models::TransformerClassifier, x: &Tensor<3>| {
        m.try_forward(TransformerInput::Patches(x.clone()))
            .unwrap()
            .into_data()
    };
    let cases: Vec<_> = inputs
        .iter()
        .map(|x| (x.to_data(), run(&model, x)))
        .collect();
    export_check(backend, "transformer_patches", &model, &cases, |state| {
        let fresh = load(config.init(&device).unwrap(), state);
        inputs.iter().map(|x| run(&fresh, x)).collect()
    });
}

fn scratch(backend: BackendKind) {
    let device = backend.device().unwrap();
    for (seed, activation, output) in [
        (6, ScratchActivation::Tanh, ScratchOutput::Softmax),
        (7, ScratchActivation::Relu, ScratchOutput::Sigmoid),
        (8, ScratchActivation::Identity, ScratchOutput::Softmax),
    ] {
        seed_device(&device, seed);
        let config = ScratchMlpConfig::new(vec![6, 10, 7, 4])
            .with_activation(activation)
            .with_output(output)
            .with_init_scale(0.5);
        let model = config.init(&device).unwrap();
        let x = uniform2(&mut SeededRng::new(seed + 10), [3, 6], &device);
        // The network's forward gives probabilities, and so does the graph.
        let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
        export_check(
            backend,
            &format!("scratch_{activation}_{output:?}"),
            &model,
            &cases,
            |state| {
                let fresh = load(config.init(&device).unwrap(), state);
                vec![fresh.forward(x.clone()).into_data()]
            },
        );
    }
}

#[test]
fn mlp_exports_to_onnx() {
    BACKENDS.into_iter().for_each(mlp);
}

#[test]
fn cnn_exports_to_onnx() {
    BACKENDS.into_iter().for_each(cnn);
}

#[test]
fn lstm_classifier_exports_to_onnx() {
    BACKENDS.into_iter().for_each(lstm);
}

#[test]
fn lstm_forecaster_exports_to_onnx() {
    BACKENDS.into_iter().for_each(lstm_forecaster);
}

#[test]
fn transformer_with_tokens_exports_to_onnx() {
    BACKENDS.into_iter().for_each(transformer_tokens);
}

#[test]
fn transformer_with_patches_exports_to_onnx() {
    BACKENDS.into_iter().for_each(transformer_patches);
}

#[test]
fn scratch_mlp_exports_to_onnx() {
    BACKENDS.into_iter().for_each(scratch);
}

/// The chapter's full-size networks (their default configurations, the image case's 4.3
/// million parameters included) export and run too. Flex only: the backends are covered
/// above, this is about size.
#[test]
fn chapter_sized_models_export_to_onnx() {
    let backend = BackendKind::Flex;
    let device = backend.device().unwrap();
    let mut rng = SeededRng::new(21);
    seed_device(&device, 21);

    let config = MlpConfig::new();
    let model = config.init(&device).unwrap();
    let x = uniform2(&mut rng, [3, 784], &device);
    let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
    export_check(backend, "chapter_mlp", &model, &cases, |state| {
        vec![
            load(config.init(&device).unwrap(), state)
                .forward(x.clone())
                .into_data(),
        ]
    });

    for (name, config, shape) in [
        ("chapter_cnn", CnnConfig::new(), [3, 1, 28, 28]),
        ("chapter_image_cnn", CnnConfig::image_cnn(), [3, 3, 64, 64]),
    ] {
        let model = config.init(&device).unwrap();
        let x = uniform4(&mut rng, shape, &device);
        let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
        export_check(backend, name, &model, &cases, |state| {
            vec![
                load(config.init(&device).unwrap(), state)
                    .forward(x.clone())
                    .into_data(),
            ]
        });
    }

    let config = LstmClassifierConfig::new();
    let model = config.init(&device).unwrap();
    let x = uniform3(&mut rng, [3, 20, 10], &device);
    let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
    export_check(backend, "chapter_lstm", &model, &cases, |state| {
        vec![
            load(config.init(&device).unwrap(), state)
                .forward(x.clone())
                .into_data(),
        ]
    });

    let config = TransformerClassifierConfig::new();
    let model = config.init(&device).unwrap();
    let ids: Vec<i64> = (0..3 * 100).map(|_| rng.below(1000) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [3, 100]), &device);
    let run = |m: &dl_models::TransformerClassifier| {
        m.try_forward(TransformerInput::Tokens(tokens.clone()))
            .unwrap()
            .into_data()
    };
    let cases = vec![(tokens.to_data().convert::<i64>(), run(&model))];
    export_check(backend, "chapter_transformer", &model, &cases, |state| {
        vec![run(&load(config.init(&device).unwrap(), state))]
    });

    let config = ScratchMlpConfig::new(vec![784, 128, 10]).with_output(ScratchOutput::Softmax);
    let model = config.init(&device).unwrap();
    let x = uniform2(&mut rng, [3, 784], &device);
    let cases = vec![(x.to_data(), model.forward(x.clone()).into_data())];
    export_check(backend, "chapter_scratch", &model, &cases, |state| {
        vec![
            load(config.init(&device).unwrap(), state)
                .forward(x.clone())
                .into_data(),
        ]
    });
}

#[test]
fn export_errors_name_the_file() {
    let device = BackendKind::Flex.device().unwrap();
    let model = MlpConfig::new()
        .with_input_size(2)
        .with_hidden_sizes(vec![])
        .init(&device)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/m.onnx");
    let err = export_onnx(&model, &path, &OnnxExportOptions::default()).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    // A failed export leaves an existing file as it was.
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, b"old").unwrap();
    let options = OnnxExportOptions::new().with_batch_size(0);
    assert!(export_onnx(&model, &path, &options).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    // The crate's error type takes it with `?`.
    let as_crate: dl_io::Error = export_onnx(&model, dir.path(), &OnnxExportOptions::default())
        .unwrap_err()
        .into();
    assert!(matches!(as_crate, dl_io::Error::Io { .. }), "{as_crate}");
}
