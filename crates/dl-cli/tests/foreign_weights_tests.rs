//! `dl info` and `dl convert` (no `--model`) on state dicts that PyTorch saved for the
//! chapter's networks at sizes `dl train` does not use (`fixtures/foreign/`, written by
//! `fixtures/gen/foreign.py`).
//!
//! For every fixture `NAME.pt` with its `NAME.io.safetensors` (a fixed input, PyTorch's
//! eval-mode logits, and in the metadata the architecture, the sizes and the options the
//! weights cannot tell):
//! - `dl info --json` names the architecture and reports exactly the generator's sizes;
//! - `dl convert` with no `--model` writes `.onnx` and `.safetensors`; ONNX Runtime runs the
//!   ONNX file on the fixed input to PyTorch's logits within 1e-4 (absolute, `check_onnx.py`
//!   with `--rtol 0 --atol 1e-4`: f32 sums in another order), and the safetensors file loads
//!   back into the dl-models network through Burn to the same logits within 1e-4.
//!
//! The ONNX Runtime step needs a Python with onnx and onnxruntime (found as in dl-io's
//! `onnx_export` test); without one it is skipped with a note, except under `CI` where that is
//! a failure.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "../../dl-io/tests/support/onnx_python.rs"]
mod onnx_python;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{fails, ok, tempdir};
use dl_core::{BackendKind, fixtures_dir};
use dl_models::{
    CnnConfig, LstmClassifierConfig, MlpConfig, TransformerClassifierConfig, TransformerInput,
};
use safetensors::SafeTensors;
use serde_json::Value;

/// One fixture: its weights, its input/logits file and what the generator recorded.
struct Foreign {
    name: String,
    weights: PathBuf,
    io: PathBuf,
    architecture: String,
    sizes: Value,
    /// The options the weights cannot tell (`--heads 2`), plus `--strip-prefix module.` for
    /// the `nn.DataParallel` checkpoint.
    options: Vec<String>,
}

fn foreign() -> Vec<Foreign> {
    let dir = fixtures_dir().join("foreign");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let io = entry.unwrap().path();
        let Some(name) = io
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".io.safetensors"))
        else {
            continue;
        };
        let bytes = std::fs::read(&io).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        let mut options: Vec<String> = serde_json::from_str(&meta["options"]).unwrap();
        if name.ends_with("dataparallel") {
            options.extend(["--strip-prefix".into(), "module.".into()]);
        }
        out.push(Foreign {
            name: name.to_string(),
            weights: dir.join(&meta["file"]),
            io: io.clone(),
            architecture: meta["architecture"].clone(),
            sizes: serde_json::from_str(&meta["sizes"]).unwrap(),
            options,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    // The five networks of the chapter, the CNN in both of its forms.
    let names: Vec<&str> = out.iter().map(|f| f.architecture.as_str()).collect();
    assert_eq!(
        names,
        [
            "Cnn",
            "ImageCnn",
            "LstmClassifier",
            "Mlp",
            "TransformerClassifier"
        ]
    );
    out
}

fn with_options<'a>(args: &[&'a str], f: &'a Foreign) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(f.options.iter().map(String::as_str));
    all
}

fn info_json(path: &str, f: &Foreign) -> Value {
    serde_json::from_str(&ok(&with_options(&["info", path, "--json"], f))).unwrap()
}

#[test]
fn info_names_the_architecture_and_the_sizes() {
    for f in foreign() {
        let weights = f.weights.to_str().unwrap();
        let info = info_json(weights, &f);
        let arch = &info["architecture"];
        assert_eq!(arch["name"], f.architecture.as_str(), "{}: {info}", f.name);
        for (key, expected) in f.sizes.as_object().unwrap() {
            assert_eq!(&arch["sizes"][key], expected, "{} {key}: {info}", f.name);
        }
        assert_eq!(info["format"], "PyTorch torch.save checkpoint");
        // Every tensor with shape and dtype; the parameter count is their sum.
        let tensors = info["tensors"].as_array().unwrap();
        let total: u64 = tensors
            .iter()
            .map(|t| {
                assert_eq!(t["dtype"], "F32", "{t}");
                t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(info["parameters"], total);
        // The text form says the same in one line.
        let text = ok(&with_options(&["info", weights], &f));
        assert!(
            text.contains(&format!(
                "architecture: {}",
                arch["summary"].as_str().unwrap()
            )),
            "{text}"
        );
    }
}

#[test]
fn info_says_what_it_assumed() {
    let transformer = fixtures_dir().join("foreign/transformer.pt");
    let text = ok(&["info", transformer.to_str().unwrap()]);
    assert!(
        text.contains(
            "architecture: TransformerClassifier: vocab_size 30, d_model 16, n_layers 2, d_ff 24, num_classes 4, max_seq_length 100, n_heads 8"
        ),
        "{text}"
    );
    assert!(
        text.contains("assumed: n_heads 8 (the chapter's; not in the weights, --heads)"),
        "{text}"
    );
    let lstm = fixtures_dir().join("foreign/lstm.pt");
    let text = ok(&["info", lstm.to_str().unwrap()]);
    assert!(
        text.contains(
            "architecture: LstmClassifier: input_size 28, hidden_size 12, num_layers 3, num_classes 10"
        ),
        "{text}"
    );
    assert!(text.contains("lstm.weight_ih_l2"), "{text}");
}

/// Logits of `config` (a dl-models configuration as JSON) with the weights in `path`, on the
/// fixture's input.
fn burn_logits(architecture: &str, config: &Value, path: &Path, input: TensorData) -> Vec<f32> {
    let device: Device = BackendKind::Flex.device().unwrap();
    let parse = |c: &Value| c.clone();
    let logits: Tensor<2> = match architecture {
        "Mlp" => {
            let config: MlpConfig = serde_json::from_value(parse(config)).unwrap();
            let (m, _) = dl_io::load_pytorch_file(config.init(&device).unwrap(), path).unwrap();
            m.try_forward(Tensor::from_data(input, &device)).unwrap()
        }
        "Cnn" | "ImageCnn" => {
            let config: CnnConfig = serde_json::from_value(parse(config)).unwrap();
            let (m, _) = dl_io::load_pytorch_file(config.init(&device).unwrap(), path).unwrap();
            m.try_forward(Tensor::from_data(input, &device)).unwrap()
        }
        "LstmClassifier" => {
            let config: LstmClassifierConfig = serde_json::from_value(parse(config)).unwrap();
            let (m, _) = dl_io::load_pytorch_file(config.init(&device).unwrap(), path).unwrap();
            m.try_forward(Tensor::from_data(input, &device)).unwrap()
        }
        "TransformerClassifier" => {
            let config: TransformerClassifierConfig =
                serde_json::from_value(parse(config)).unwrap();
            let (m, _) = dl_io::load_pytorch_file(config.init(&device).unwrap(), path).unwrap();
            let tokens = Tensor::<2, Int>::from_data(input, &device);
            m.try_forward(TransformerInput::Tokens(tokens)).unwrap()
        }
        other => panic!("no forward pass for {other}"),
    };
    logits.into_data().try_to_vec::<f32>().unwrap()
}

/// `input` and `expected` of a fixture's io file.
fn io_tensors(path: &Path) -> (TensorData, Vec<f32>) {
    let fixture = dl_core::Fixture::open(path).unwrap();
    let input = fixture.tensor("input").unwrap();
    let expected = fixture.tensor("expected").unwrap().iter::<f32>().collect();
    (input, expected)
}

#[test]
fn convert_without_model_gives_pytorchs_logits_in_onnx_runtime_and_burn() {
    let dir = tempdir();
    for f in foreign() {
        let weights = f.weights.to_str().unwrap();
        let onnx = dir.path().join(format!("{}.onnx", f.name));
        let st = dir.path().join(format!("{}.safetensors", f.name));
        for out in [&onnx, &st] {
            let text = ok(&with_options(
                &["convert", weights, out.to_str().unwrap()],
                &f,
            ));
            assert!(
                text.contains(&format!("{}: {}:", weights, f.architecture)),
                "{text}"
            );
        }
        // The safetensors state dict, back through Burn into the configuration `dl info`
        // infers from it: PyTorch's logits within 1e-4.
        let info = info_json(st.to_str().unwrap(), &f);
        let (input, expected) = io_tensors(&f.io);
        let got = burn_logits(&f.architecture, &info["architecture"]["config"], &st, input);
        assert_eq!(got.len(), expected.len(), "{}", f.name);
        let max = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max <= 1e-4, "{}: Burn logits differ by {max}", f.name);
        if let Some(python) = onnx_python::python() {
            onnx_runtime_check(python, &onnx, &f.io);
        }
    }
}

/// `check_onnx.py MODEL IO --rtol 0 --atol 1e-4`: onnx.checker, then ONNX Runtime at batch 1
/// and the full batch against PyTorch's logits.
fn onnx_runtime_check(python: &Path, model: &Path, io: &Path) {
    let script = fixtures_dir().join("gen/check_onnx.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(io)
        .args(["--rtol", "0", "--atol", "1e-4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} {} failed:\n{stdout}\n{}",
        script.display(),
        model.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["ok"], true, "{stdout}");
    assert_eq!(summary["runs"].as_array().unwrap().len(), 2, "{stdout}");
}

#[test]
fn converted_checkpoints_evaluate_when_the_digits_fit() {
    let dir = tempdir();
    let lstm = fixtures_dir().join("foreign/lstm.pt");
    let ckpt = dir.path().join("lstm.ckpt.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    ok(&["convert", lstm.to_str().unwrap(), ckpt]);
    // 28 features per step and 10 classes: a digit fits the 3-layer, 12-wide LSTM.
    let eval: Value =
        serde_json::from_str(&ok(&["eval", ckpt, "--limit", "16", "--json"])).unwrap();
    assert!(eval["accuracy"].as_f64().is_some(), "{eval}");
    ok(&["predict", ckpt, "--index", "0,1"]);
    let info: Value = serde_json::from_str(&ok(&["info", ckpt, "--json"])).unwrap();
    assert_eq!(info["model"], "lstm");
    assert_eq!(info["model_config"]["hidden_size"], 12);
    assert_eq!(info["model_config"]["num_layers"], 3);
    // The MLP takes 12 inputs and gives 3 classes: `dl eval` says why it cannot run.
    let mlp = fixtures_dir().join("foreign/mlp.pt");
    let mlp_ckpt = dir.path().join("mlp.ckpt.safetensors");
    let mlp_ckpt = mlp_ckpt.to_str().unwrap();
    ok(&["convert", mlp.to_str().unwrap(), mlp_ckpt]);
    fails(
        &["eval", mlp_ckpt, "--limit", "8"],
        1,
        &[
            mlp_ckpt,
            "input_size is 12, expected 784",
            "num_classes is 3, expected 10",
        ],
    );
    fails(
        &["predict", mlp_ckpt, "--index", "0"],
        1,
        &["input_size is 12, expected 784"],
    );
}

#[test]
fn prefixes_are_stripped_or_remapped_before_inference() {
    let dir = tempdir();
    let cnn = fixtures_dir().join("foreign/cnn_dataparallel.pt");
    let cnn = cnn.to_str().unwrap();
    let out = dir.path().join("cnn.safetensors");
    let out = out.to_str().unwrap();
    // As saved by nn.DataParallel: every key starts with `module.`, which no network has.
    fails(
        &["convert", cnn, out],
        1,
        &[
            "cnn_dataparallel.pt: not a recognised network",
            "`module.conv1.bias`",
            "not Cnn/ImageCnn: expected `conv1.weight`",
        ],
    );
    assert!(!Path::new(out).exists(), "a failed conversion wrote {out}");
    let stripped = ok(&["convert", cnn, out, "--strip-prefix", "module."]);
    assert!(
        stripped.contains("Cnn: in_channels 1, image_size 16, conv_channels [4, 6, 8]"),
        "{stripped}"
    );
    assert!(stripped.contains("renamed 10 of 10 keys"), "{stripped}");
    let remapped = ok(&["convert", cnn, out, "--remap", r"^module\.="]);
    assert!(
        remapped.contains("in_channels 1, image_size 16"),
        "{remapped}"
    );
    // Regex groups: `module.conv1.weight` -> `conv1.weight` through a capture.
    ok(&["convert", cnn, out, "--remap", r"^module\.(.*)$=$1"]);
    fails(
        &["convert", cnn, out, "--remap", "(unclosed=x"],
        1,
        &["invalid key-remapping pattern `(unclosed`"],
    );
    fails(
        &["convert", cnn, out, "--remap", "no-equals-sign"],
        1,
        &["expected REGEX=REPLACEMENT"],
    );
    // --model is checked against the weights.
    fails(
        &[
            "convert",
            cnn,
            out,
            "--strip-prefix",
            "module.",
            "--model",
            "lstm",
        ],
        1,
        &["holds a `cnn` model by its weights", "not `lstm`"],
    );
    ok(&[
        "convert",
        cnn,
        out,
        "--strip-prefix",
        "module.",
        "--model",
        "cnn",
    ]);
}

#[test]
fn unrecognisable_and_damaged_files_are_clear_errors() {
    let dir = tempdir();
    let odd = dir.path().join("odd.safetensors");
    let values = [0u8; 4 * 12];
    let views = [(
        "encoder.weight",
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], &values).unwrap(),
    )];
    std::fs::write(&odd, safetensors::serialize(views, None).unwrap()).unwrap();
    let odd = odd.to_str().unwrap();
    let out = dir.path().join("odd.onnx");
    let out = out.to_str().unwrap();
    fails(
        &["convert", odd, out],
        1,
        &[
            "odd.safetensors: not a recognised network",
            "`encoder.weight`",
            "not Mlp: expected `0.weight` (nn.Sequential) or `layers.0.weight`",
            "not LstmClassifier: expected `lstm.weight_ih_l0`",
        ],
    );
    assert!(!Path::new(out).exists());
    // `dl info` still lists what the file holds and says why no network fits.
    let info: Value = serde_json::from_str(&ok(&["info", odd, "--json"])).unwrap();
    assert_eq!(info["architecture"], Value::Null);
    assert!(
        info["architecture_error"]
            .as_str()
            .unwrap()
            .contains("`encoder.weight`"),
        "{info}"
    );
    assert_eq!(info["tensors"][0]["shape"], serde_json::json!([3, 4]));
    assert_eq!(info["format"], "safetensors");
    // A truncated PyTorch file and a file of no known format.
    let bytes = std::fs::read(fixtures_dir().join("foreign/lstm.pt")).unwrap();
    let cut = dir.path().join("cut.pt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(
        &["info", cut.to_str().unwrap()],
        1,
        &["cut.pt: not a readable PyTorch checkpoint"],
    );
    fails(
        &["convert", cut.to_str().unwrap(), out],
        1,
        &["cut.pt: not a readable PyTorch checkpoint"],
    );
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"hello, world").unwrap();
    fails(
        &["info", junk.to_str().unwrap()],
        1,
        &["junk.pth: not a safetensors file or PyTorch checkpoint"],
    );
    let bad_onnx = dir.path().join("bad.onnx");
    std::fs::write(&bad_onnx, b"\x08").unwrap();
    fails(
        &["info", bad_onnx.to_str().unwrap()],
        1,
        &["bad.onnx: not a valid ONNX model"],
    );
    fails(
        &["info", &format!("{}/missing.pt", dir.path().display())],
        1,
        &["missing.pt", "does not exist"],
    );
}

#[test]
fn info_reads_onnx_initializers() {
    let dir = tempdir();
    let lstm = fixtures_dir().join("foreign/lstm.pt");
    let onnx = dir.path().join("lstm.onnx");
    ok(&["convert", lstm.to_str().unwrap(), onnx.to_str().unwrap()]);
    let info: Value =
        serde_json::from_str(&ok(&["info", onnx.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(info["format"], "ONNX model (initializers)");
    assert_eq!(info["architecture"]["name"], "LstmClassifier");
    assert_eq!(info["architecture"]["sizes"]["num_layers"], 3);
    assert_eq!(info["architecture"]["sizes"]["hidden_size"], 12);
}
