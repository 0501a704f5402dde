//! `dl eval`, `predict`, `info`, `convert` and `attention` on checkpoints trained once per test
//! binary, and their errors on bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::*;

/// A tiny MLP and Transformer run, trained once and shared by the tests of this file (the
/// temporary folder lives as long as the test process).
fn runs() -> (&'static PathBuf, &'static PathBuf) {
    static RUNS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, mlp, transformer) = RUNS.get_or_init(|| {
        let dir = tempdir();
        let mlp = dir.path().join("mlp");
        let transformer = dir.path().join("transformer");
        train_tiny("mlp", &mlp, &[]);
        train_tiny("transformer", &transformer, &[]);
        (
            dir,
            mlp.join("best.safetensors"),
            transformer.join("best.safetensors"),
        )
    });
    (mlp, transformer)
}

#[test]
fn eval_reports_accuracy_loss_and_confusion() {
    let (mlp, _) = runs();
    let json = ok(&["eval", mlp.to_str().unwrap(), "--limit", "50", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["count"], 50);
    let accuracy = value["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    let confusion = value["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, 50);
    let diagonal: u64 = (0..10).map(|i| confusion[i][i].as_u64().unwrap()).sum();
    assert!((diagonal as f64 / 50.0 - accuracy).abs() < 1e-9);
    let text = ok(&[
        "eval",
        mlp.to_str().unwrap(),
        "--limit",
        "50",
        "--split",
        "train",
    ]);
    assert!(
        text.contains("accuracy") && text.contains("confusion matrix"),
        "{text}"
    );
}

#[test]
fn predict_gives_a_class_and_probabilities() {
    let (mlp, _) = runs();
    let json = ok(&["predict", mlp.to_str().unwrap(), "--index", "0,3", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = value.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let p: Vec<f64> = row["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(p.len(), 10);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let class = row["class"].as_u64().unwrap() as usize;
        assert!(p.iter().all(|&q| q <= p[class]));
    }
    fails(
        &["predict", mlp.to_str().unwrap(), "--index", "100000"],
        1,
        &["--index 100000", "holds"],
    );
}

#[test]
fn info_lists_parameters_per_layer() {
    let (mlp, _) = runs();
    let text = ok(&["info", mlp.to_str().unwrap()]);
    assert!(text.contains("model: mlp"), "{text}");
    // 784*512+512 + 512*256+256 + 256*10+10
    assert!(text.contains("535818"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["info", mlp.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(json["parameters"], 535_818);
    assert_eq!(json["layers"]["0"], 784 * 512 + 512);
}

#[test]
fn convert_round_trips_through_safetensors_pt_and_onnx() {
    let (mlp, _) = runs();
    let dir = tempdir();
    let st = path(dir.path(), "mlp.safetensors");
    let onnx = path(dir.path(), "mlp.onnx");
    let back = path(dir.path(), "back.ckpt.safetensors");
    let from_onnx = path(dir.path(), "from_onnx.ckpt.safetensors");
    ok(&["convert", mlp.to_str().unwrap(), &st]);
    ok(&["convert", mlp.to_str().unwrap(), &onnx]);
    fails(&["convert", &st, &back], 1, &["--model"]);
    ok(&["convert", &st, &back, "--model", "mlp"]);
    ok(&["convert", &onnx, &from_onnx, "--model", "mlp"]);
    let pt = path(dir.path(), "mlp.pt");
    let from_pt = path(dir.path(), "from_pt.ckpt.safetensors");
    ok(&["convert", mlp.to_str().unwrap(), &pt]);
    ok(&["convert", &pt, &from_pt, "--model", "mlp"]);
    // The converted checkpoints predict exactly as the original.
    let original = ok(&["eval", mlp.to_str().unwrap(), "--limit", "40", "--json"]);
    assert_eq!(ok(&["eval", &back, "--limit", "40", "--json"]), original);
    assert_eq!(
        ok(&["eval", &from_onnx, "--limit", "40", "--json"]),
        original
    );
    assert_eq!(ok(&["eval", &from_pt, "--limit", "40", "--json"]), original);
    // Weights of another model are refused, naming keys.
    fails(
        &[
            "convert",
            &st,
            &path(dir.path(), "x.ckpt.safetensors"),
            "--model",
            "cnn",
        ],
        1,
        &["cannot load weights"],
    );
    fails(
        &["convert", mlp.to_str().unwrap(), &path(dir.path(), "x.bin")],
        1,
        &["unknown output type", ".pt"],
    );
}

#[test]
fn attention_writes_a_png() {
    let (mlp, transformer) = runs();
    let dir = tempdir();
    let png = dir.path().join("attention.png");
    let stdout = ok(&[
        "attention",
        transformer.to_str().unwrap(),
        "--index",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(stdout.contains("predicted"), "{stdout}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    fails(
        &[
            "attention",
            mlp.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ],
        1,
        &["transformer", "`mlp`"],
    );
}

#[test]
fn bad_checkpoints_are_named() {
    let (mlp, _) = runs();
    let dir = tempdir();
    fails(
        &["eval", &path(dir.path(), "missing.safetensors")],
        1,
        &["missing.safetensors"],
    );
    let corrupt = dir.path().join("corrupt.safetensors");
    let mut bytes = std::fs::read(mlp).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes).unwrap();
    fails(
        &["eval", corrupt.to_str().unwrap()],
        1,
        &["corrupt.safetensors"],
    );
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    fails(
        &["info", corrupt.to_str().unwrap()],
        1,
        &["corrupt.safetensors"],
    );
    fails(
        &["eval", mlp.to_str().unwrap(), "--model", "cnn"],
        1,
        &["`mlp` model, not `cnn`"],
    );
    let bad_data = dir.path().join("data");
    std::fs::create_dir_all(&bad_data).unwrap();
    std::fs::write(bad_data.join("test.bin"), b"DLMN\x01\x00\x00\x00").unwrap();
    fails(
        &[
            "eval",
            mlp.to_str().unwrap(),
            "--data",
            bad_data.to_str().unwrap(),
        ],
        1,
        &["test.bin", "header"],
    );
}
