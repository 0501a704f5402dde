//! `dl train`: artefacts, resumption, configuration files, NaN losses and refused inputs.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn train_writes_every_artefact() {
    let dir = tempdir();
    let out = dir.path().join("mlp");
    train_tiny("mlp", &out, &[]);
    for name in [
        "config.toml",
        "metrics.csv",
        "metrics.json",
        "loss.png",
        "accuracy.png",
        "last.safetensors",
        "best.safetensors",
    ] {
        let file = out.join(name);
        assert!(
            file.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "missing {}",
            file.display()
        );
    }
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("epoch,step,train_loss"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json[0]["epoch"], 1);
    assert_eq!(json[0]["step"], 2); // 64 digits in batches of 32
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("model = \"mlp\"") && config.contains("limit = 64"),
        "{config}"
    );
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn resume_continues_and_existing_folder_is_refused() {
    let dir = tempdir();
    let out = dir.path().join("run");
    train_tiny("mlp", &out, &["--seed", "3"]);
    let out_s = out.to_str().unwrap();
    fails(
        &[
            "train", "mlp", "--out", out_s, "--epochs", "1", "--limit", "64",
        ],
        1,
        &["already exists", "--resume", "--overwrite"],
    );
    fails(
        &["train", "cnn", "--out", out_s, "--epochs", "2", "--resume"],
        1,
        &["`mlp`, not `cnn`"],
    );
    let stdout = ok(&[
        "train",
        "mlp",
        "--out",
        out_s,
        "--epochs",
        "2",
        "--resume",
        "--log-json",
    ]);
    assert!(stdout.contains("\"event\":\"resume\""), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let epochs: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, vec![1, 2]);
    assert_eq!(json[1]["step"], 4);
    let info = ok(&["info", &path(&out, "last.safetensors"), "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["epoch"], 2);
    assert_eq!(info["training_config"]["seed"], 3);
    // --overwrite starts again.
    train_tiny("mlp", &out, &["--overwrite"]);
}

#[test]
fn config_file_sets_options_and_unknown_keys_are_named() {
    let dir = tempdir();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"scratch\"\nepochs = 1\nbatch_size = 16\nlimit = 32\nout = \"{}\"\nschedule = \"cosine\"\n",
            path(dir.path(), "scratch")
        ),
    )
    .unwrap();
    ok(&["train", "--config", config.to_str().unwrap(), "--quiet"]);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("scratch/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json[0]["step"], 2);
    std::fs::write(&config, "model = \"mlp\"\nbatch_sise = 8\n").unwrap();
    fails(
        &["train", "--config", config.to_str().unwrap()],
        1,
        &["unknown key `batch_sise`", "did you mean `batch_size`"],
    );
}

#[test]
fn nan_loss_stops_with_the_step_and_checkpoint() {
    let dir = tempdir();
    let out = dir.path().join("nan");
    let out_s = out.to_str().unwrap();
    // SGD with lr 1e30 overflows the weights to infinity within a couple of steps.
    fails(
        &[
            "train",
            "mlp",
            "--out",
            out_s,
            "--epochs",
            "1",
            "--limit",
            "64",
            "--batch-size",
            "16",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--quiet",
        ],
        1,
        &["loss became", "step", "no checkpoint was written", "--lr"],
    );
}

#[test]
fn bad_names_are_refused() {
    let dir = tempdir();
    let out = path(dir.path(), "x");
    fails(
        &["train", "mlp", "--backend", "metal", "--out", &out],
        1,
        &["`metal`", "flex"],
    );
    fails(&["train", "resnet", "--out", &out], 2, &["resnet", "mlp"]);
    fails(
        &["train", "mlp", "--optimizer", "adagrad", "--out", &out],
        2,
        &["adagrad"],
    );
    fails(
        &["train", "mlp", "--schedule", "cosin", "--out", &out],
        1,
        &["did you mean `cosine`"],
    );
    fails(
        &[
            "train",
            "mlp",
            "--data",
            &path(dir.path(), "nowhere"),
            "--out",
            &out,
        ],
        1,
        &["nowhere", "train.bin"],
    );
    if !cfg!(feature = "tch") {
        fails(
            &["train", "mlp", "--backend", "tch", "--out", &out],
            1,
            &["tch"],
        );
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    use std::process::{Command, Stdio};
    let dir = tempdir();
    let out = dir.path().join("interrupted");
    let child = Command::new(env!("CARGO_BIN_EXE_dl"))
        .args([
            "train",
            "mlp",
            "--epochs",
            "100000",
            "--batch-size",
            "8",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first epoch has been checkpointed, so the run is surely inside the loop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join("metrics.json").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("interrupted at epoch"), "{}", text(&output));
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", &path(&out, "last.safetensors"), "--json"])).unwrap();
    let step = info["step"].as_u64().unwrap();
    let epoch = info["epoch"].as_u64().unwrap();
    assert!(step > 0 && epoch >= 1, "{info}");
    // Resuming finishes the interrupted epoch without replaying its first batches: the run
    // ends on exactly the step an uninterrupted run of as many epochs ends on.
    let steps_per_epoch = 800 / 8; // the committed train split, batches of 8
    let epochs = (epoch + 1).to_string();
    ok(&[
        "train",
        "mlp",
        "--epochs",
        &epochs,
        "--batch-size",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", &path(&out, "last.safetensors"), "--json"])).unwrap();
    assert_eq!(info["step"].as_u64(), Some((epoch + 1) * steps_per_epoch));
}

#[test]
fn every_model_trains() {
    let dir = tempdir();
    for model in ["cnn", "image-cnn", "lstm"] {
        let out = dir.path().join(model);
        ok(&[
            "train",
            model,
            "--epochs",
            "1",
            "--limit",
            "16",
            "--batch-size",
            "8",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        let info: serde_json::Value =
            serde_json::from_str(&ok(&["info", &path(&out, "best.safetensors"), "--json"]))
                .unwrap();
        assert_eq!(info["model"], model);
        assert_eq!(info["step"], 2);
    }
}
