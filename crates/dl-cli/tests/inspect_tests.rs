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
    // The accuracy agrees with `dl predict`'s classes for the same 50 digits (a second,
    // independent path through the model), and the confusion matrix with its rows.
    let indices: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let predicted: serde_json::Value = serde_json::from_str(&ok(&[
        "predict",
        mlp.to_str().unwrap(),
        "--index",
        &indices.join(","),
        "--json",
    ]))
    .unwrap();
    let mut expected = vec![vec![0u64; 10]; 10];
    for row in predicted.as_array().unwrap() {
        let label = row["label"].as_u64().unwrap() as usize;
        expected[label][row["class"].as_u64().unwrap() as usize] += 1;
    }
    let right: u64 = (0..10).map(|i| expected[i][i]).sum();
    assert_eq!(accuracy, right as f64 / 50.0);
    assert_eq!(value["confusion"], serde_json::json!(expected));
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
    // No --model: the network and its sizes come from the weights.
    let inferred = ok(&["convert", &st, &back]);
    assert!(
        inferred.contains("Mlp: input_size 784, hidden_sizes [512, 256], num_classes 10"),
        "{inferred}"
    );
    ok(&["convert", &st, &back, "--model", "mlp"]);
    ok(&["convert", &onnx, &from_onnx]);
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
    // Weights of another model are refused, naming both.
    fails(
        &[
            "convert",
            &st,
            &path(dir.path(), "x.ckpt.safetensors"),
            "--model",
            "cnn",
        ],
        1,
        &["holds a `mlp` model by its weights", "not `cnn`"],
    );
    fails(
        &["convert", mlp.to_str().unwrap(), &path(dir.path(), "x.bin")],
        1,
        &["unknown output type", ".pt"],
    );
}

/// Digit `index` of the committed test split, normalised as `dl` normalises it, and its
/// label (read here from the file with the safetensors crate, independently of `dl`).
fn committed_test_digit(index: usize) -> (Vec<f32>, u8) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/mnist/test.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let pixels = &file.tensor("images").unwrap().data()[index * 784..][..784];
    let normalised = pixels
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - 0.1307) / 0.3081)
        .collect();
    (normalised, file.tensor("labels").unwrap().data()[index])
}

/// The plot's colour for a weight `v` scaled to the largest weight drawn (plot.rs `heat`).
fn heat(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f32, b: f32, t: f32| (a + (b - a) * t).round() as u8;
    if v < 0.5 {
        let t = v * 2.0;
        [255, lerp(255.0, 165.0, t), lerp(255.0, 0.0, t)]
    } else {
        let t = (v - 0.5) * 2.0;
        [lerp(255.0, 128.0, t), lerp(165.0, 0.0, t), 0]
    }
}

#[test]
fn attention_json_holds_the_models_own_weights_and_the_picture_draws_them() {
    use burn::tensor::{Tensor, TensorData};
    use dl_models::{TransformerClassifierConfig, TransformerInput};

    let (mlp, transformer) = runs();
    let dir = tempdir();
    let png_path = dir.path().join("attention.png");
    let index = 2;
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "attention",
        transformer.to_str().unwrap(),
        "--index",
        "2",
        "--out",
        png_path.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();

    // The model's own weights for that digit, computed here through dl-io and dl-models.
    let device = dl_core::BackendKind::Flex.device().unwrap();
    let meta = dl_io::read_checkpoint_meta(transformer).unwrap();
    let config: TransformerClassifierConfig = serde_json::from_value(meta.model_config).unwrap();
    let model = dl_io::load_checkpoint(transformer, config.init(&device).unwrap(), None)
        .unwrap()
        .model;
    let classify = |index: usize| {
        let (digit, label) = committed_test_digit(index);
        // 16 patches of 7x7, row-major patch order, each patch row-major.
        let mut patches = Vec::with_capacity(784);
        for (pr, pc) in (0..4).flat_map(|r| (0..4).map(move |c| (r, c))) {
            for y in 0..7 {
                patches.extend_from_slice(&digit[(pr * 7 + y) * 28 + pc * 7..][..7]);
            }
        }
        let input = Tensor::<3>::from_data(TensorData::new(patches, [1, 16, 49]), &device);
        let (logits, layers) = model
            .try_forward_with_attention(TransformerInput::Patches(input))
            .unwrap();
        let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
        let predicted = (0..10)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        (label, predicted, layers)
    };
    let (label, predicted, layers) = classify(index);
    assert_eq!(json["index"], index as u64);
    assert_eq!(json["label"], u64::from(label));
    assert_eq!(json["predicted"], predicted as u64);
    assert_eq!(json["tokens"], 16);
    let drawn = json["weights"].as_array().unwrap();
    assert_eq!(drawn.len(), layers.len());
    // One colour scale for all maps: 0 to the largest weight drawn.
    let max = drawn
        .iter()
        .flat_map(|l| l.as_array().unwrap())
        .flat_map(|m| m.as_array().unwrap())
        .map(|v| v.as_f64().unwrap() as f32)
        .fold(f32::MIN_POSITIVE, f32::max);
    let image = {
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&png_path).unwrap(),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (buf, info.width as usize)
    };
    let pixel = |x: usize, y: usize| -> [u8; 3] {
        let at = (y * image.1 + x) * 3;
        [image.0[at], image.0[at + 1], image.0[at + 2]]
    };
    for (l, (ours, theirs)) in layers.into_iter().zip(drawn).enumerate() {
        let [_, heads, _, _] = ours.dims();
        let ours: Vec<f32> = ours.into_data().try_to_vec::<f32>().unwrap();
        let theirs = theirs.as_array().unwrap();
        assert_eq!(theirs.len(), heads);
        for (h, map) in theirs.iter().enumerate() {
            let map: Vec<f32> = map
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(map.len(), 256);
            // Each query's weights sum to 1 (softmax rows).
            for row in map.chunks(16) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
            }
            for (i, &w) in map.iter().enumerate() {
                // Same weights as the model's (JSON keeps f32 exactly through f64).
                assert_eq!(w, ours[h * 256 + i], "layer {l} head {h} cell {i}");
                // The picture's cell, at its centre: 150-px maps from x = 190, y = 50 + 22,
                // layers 172 px apart, cells of (150 - 14) / 16 = 8 px.
                let (q, k) = (i / 16, i % 16);
                let x = 190 + h * 150 + k * 8 + 4;
                let y = 50 + l * 172 + 22 + q * 8 + 4;
                assert_eq!(
                    pixel(x, y),
                    heat(w / max),
                    "layer {l} head {h} cell ({q}, {k})"
                );
            }
        }
    }
    // The colour bar right of the maps (x = 190 + heads * 150 + 14, from y = 72, 136 px):
    // the largest weight at the top, 0 at the bottom.
    let heads = drawn[0].as_array().unwrap().len();
    let bar_x = 190 + heads * 150 + 14 + 9;
    assert_eq!(pixel(bar_x, 72 + 1), heat(1.0 - 1.0 / 135.0));
    assert_eq!(pixel(bar_x, 72 + 135), heat(0.0));
    assert_eq!(pixel(bar_x, 72 + 68), heat(1.0 - 68.0 / 135.0));

    // Without --index: the first test digit the model classifies correctly.
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "attention",
        transformer.to_str().unwrap(),
        "--out",
        png_path.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let chosen = json["index"].as_u64().unwrap() as usize;
    let (label, predicted, _) = classify(chosen);
    assert_eq!(
        (json["label"].as_u64(), json["predicted"].as_u64()),
        (Some(u64::from(label)), Some(predicted as u64))
    );
    assert_eq!(
        usize::from(label),
        predicted,
        "digit {chosen} is misclassified"
    );
    for earlier in 0..chosen {
        let (label, predicted, _) = classify(earlier);
        assert_ne!(
            usize::from(label),
            predicted,
            "digit {earlier} is correct and comes first"
        );
    }

    fails(
        &[
            "attention",
            mlp.to_str().unwrap(),
            "--out",
            png_path.to_str().unwrap(),
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
    std::fs::write(bad_data.join("test.safetensors"), b"\x08\x00\x00\x00").unwrap();
    fails(
        &[
            "eval",
            mlp.to_str().unwrap(),
            "--data",
            bad_data.to_str().unwrap(),
        ],
        1,
        &["test.safetensors", "not a valid digit file"],
    );
}
