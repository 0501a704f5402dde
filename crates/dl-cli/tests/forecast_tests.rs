//! `dl train forecast` on the committed weekly CO2 series, and the other commands on its
//! checkpoint: the model beats the naive baseline on the test weeks, the files hold the
//! metrics, and a malformed series is an error that names the file and line.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn forecast_trains_beats_the_naive_baseline_and_serves_every_command() {
    let dir = tempdir();
    let out = dir.path().join("forecast");
    let out_s = out.to_str().unwrap();
    // A shorter run than the default (debug build): 8 epochs, window 26.
    ok(&[
        "train", "forecast", "--epochs", "8", "--window", "26", "--out", out_s, "--quiet",
    ]);
    let metrics = read_json(&out.join("metrics.json"));
    let epochs = metrics.as_array().unwrap();
    assert_eq!(epochs.len(), 8);
    for m in epochs {
        for key in ["train_loss", "train_mae", "val_loss", "val_mae"] {
            let value = m[key].as_f64().unwrap_or_else(|| panic!("{key} in {m}"));
            assert!(value.is_finite() && value >= 0.0, "{key} = {value}");
        }
        // No classification fields in a regression run.
        assert!(m.get("val_accuracy").is_none(), "{m}");
        // The weekly CO2 moves by well under 10 ppm: an MAE above that is a broken scale.
        assert!(m["val_mae"].as_f64().unwrap() < 10.0, "{m}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with(
            "epoch,step,train_loss,train_mae,val_loss,val_mae,lr,seconds,samples_per_second\n"
        ),
        "{csv}"
    );
    let summary = read_json(&out.join("summary.json"));
    let test_mae = summary["test_mae"].as_f64().unwrap();
    let naive = summary["naive_mae"].as_f64().unwrap();
    let seasonal = summary["seasonal_naive_mae"].as_f64().unwrap();
    // The test part is the last 15% of 2,284 weeks: 343 windows.
    assert_eq!(summary["test_count"], 343);
    assert!(test_mae < naive, "model {test_mae} vs naive {naive}");
    assert!(
        naive < seasonal,
        "naive {naive} vs seasonal naive {seasonal}"
    );
    // The chosen epoch is the one of lowest validation MAE.
    let best = summary["best_epoch"].as_u64().unwrap() as usize;
    let lowest = epochs
        .iter()
        .map(|m| m["val_mae"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(epochs[best - 1]["val_mae"].as_f64().unwrap(), lowest);
    // The pictures hold their series: the forecast (red) and the seasonal-naive line (grey)
    // across 343 test weeks, the training (blue) and validation (red) curves over the epochs
    // (measured: 5,554 and 5,401 pixels, curves 1,216 to 1,661; a legend sample alone is
    // well under the bounds).
    let (forecast, width, height) = png_rgb(&out.join("forecast.png"));
    assert_eq!((width, height), (800, 500));
    for (colour, what) in [
        ([255, 0, 0], "forecast"),
        ([150, 150, 150], "seasonal naive"),
    ] {
        let n = pixels_of(&forecast, colour);
        assert!(n > 2000, "forecast.png: {n} pixels of the {what} line");
    }
    for name in ["loss.png", "mae.png"] {
        let (curves, ..) = png_rgb(&out.join(name));
        for colour in [[0, 0, 255], [255, 0, 0]] {
            let n = pixels_of(&curves, colour);
            assert!(n > 600, "{name}: {n} pixels of {colour:?}");
        }
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("window = 26"), "{config}");

    // `dl eval` measures the same test MAE and baselines from the checkpoint.
    let best_ckpt = out.join("best.safetensors");
    let best_s = best_ckpt.to_str().unwrap();
    let eval: serde_json::Value = serde_json::from_str(&ok(&["eval", best_s, "--json"])).unwrap();
    assert!(
        (eval["mae"].as_f64().unwrap() - test_mae).abs() < 1e-9,
        "{eval}"
    );
    assert_eq!(eval["naive_mae"].as_f64().unwrap(), naive);
    assert_eq!(eval["count"], 343);
    // `dl predict`: the week after the series, and a week of the test part with its truth.
    let next = ok(&["predict", best_s]);
    assert!(
        next.contains("the week after 20011229") && next.contains("ppm"),
        "{next}"
    );
    let value: f64 = next
        .split("forecast ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((360.0..385.0).contains(&value), "{next}");
    let week = ok(&["predict", best_s, "--index", "2000"]);
    assert!(week.contains("observed"), "{week}");
    fails(
        &["predict", best_s, "--index", "3"],
        1,
        &["--index 3", "expected a week from 26"],
    );
    // `dl info` and `dl convert` (PyTorch names, ONNX).
    let info = ok(&["info", best_s]);
    assert!(
        info.contains("model: forecast") && info.contains("head") && info.contains("4513"),
        "{info}"
    );
    let st = path(dir.path(), "forecast.safetensors");
    ok(&["convert", best_s, &st]);
    let onnx = path(dir.path(), "forecast.onnx");
    ok(&["convert", best_s, &onnx]);
    // The ONNX file holds the forecaster's weights under PyTorch's names.
    let onnx_info = ok(&["info", &onnx]);
    assert!(
        onnx_info.contains("lstm.weight_ih_l0")
            && onnx_info.contains("head.weight")
            && onnx_info.contains("4513"),
        "{onnx_info}"
    );
    // The exported state dict loads back as a forecast model.
    let ckpt = path(dir.path(), "back.ckpt.safetensors");
    ok(&["convert", &st, &ckpt, "--model", "forecast"]);
    // A digit checkpoint is not a forecaster and the reverse.
    fails(
        &["eval", best_s, "--model", "lstm"],
        1,
        &["holds a `forecast` model, not `lstm`"],
    );
}

#[test]
fn a_malformed_series_names_the_file_and_line() {
    let dir = tempdir();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "date,co2\n19580329,316.1\n19580405,n/a\n").unwrap();
    let out = path(dir.path(), "out");
    fails(
        &[
            "train",
            "forecast",
            "--data",
            csv.to_str().unwrap(),
            "--out",
            &out,
            "--quiet",
        ],
        1,
        &["bad.csv", "line 3", "`n/a`"],
    );
    // Too short a series for the window and the split.
    std::fs::write(&csv, "date,co2\n19580329,316.1\n19580405,316.2\n").unwrap();
    fails(
        &[
            "train",
            "forecast",
            "--data",
            csv.to_str().unwrap(),
            "--out",
            &out,
            "--quiet",
        ],
        1,
        &["bad.csv", "a series of 2 weeks"],
    );
    // --window is the forecast's alone.
    fails(
        &["train", "mlp", "--window", "4", "--out", &out, "--quiet"],
        1,
        &["window applies to `forecast` only"],
    );
}
