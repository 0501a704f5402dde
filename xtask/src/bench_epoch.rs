//! The epoch cases of `cargo xtask bench`: one training epoch of `dl train`, the number a user
//! who times a run sees, against the same loop in PyTorch (`benches/pytorch/epoch.py`).
//!
//! Each case runs the real `dl` program (`dl train MODEL --backend flex --batch-size 64 --limit
//! N --epochs E`) with `RAYON_NUM_THREADS` set to the run's thread count, and reads the training
//! throughput of every epoch but the first (warm-up) from its `metrics.json`; the PyTorch script
//! trains the same model on the same digits with `torch.set_num_threads` and reports the same.
//! Both are recorded as the time of one epoch of `N` digits (`N / samples_per_second`), so that a
//! validation split held out by `dl train` does not change the comparison.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use dl_bench::schema::{PYTORCH, Record};

/// The models `dl train` trains through autodiff, by their `dl` names.
pub const MODELS: [&str; 4] = ["mlp", "cnn", "lstm", "transformer"];

/// Batch size of every epoch case (`dl train`'s default and the step benchmarks').
const BATCH: usize = 64;

/// Sizes of an epoch run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochPlan {
    /// Epochs trained; the first is warm-up, the others are timed.
    pub epochs: usize,
    /// Training digits per epoch (`--limit`).
    pub digits: usize,
}

impl EpochPlan {
    /// The full run: the 800 committed training digits, one warm-up and three timed epochs.
    pub const FULL: Self = Self {
        epochs: 4,
        digits: 800,
    };
    /// CI's smoke run: two batches, one warm-up and one timed epoch.
    pub const QUICK: Self = Self {
        epochs: 2,
        digits: 2 * BATCH,
    };
}

/// The case id of `model`'s epoch: `epoch/lstm/b64`.
pub fn case_id(model: &str) -> String {
    format!("epoch/{model}/b{BATCH}")
}

/// Time `model`'s epochs in `dl` (the program at `dl`) on flex.
pub fn run_dl(
    root: &Path,
    dl: &Path,
    plan: EpochPlan,
    model: &str,
    threads: usize,
) -> Result<Record> {
    let out = root.join("target/bench/epoch").join(model);
    let status = Command::new(dl)
        .current_dir(root)
        .args([
            "train",
            model,
            "--backend",
            "flex",
            "--overwrite",
            "--quiet",
        ])
        .args(["--batch-size", &BATCH.to_string()])
        .args(["--epochs", &plan.epochs.to_string()])
        .args(["--limit", &plan.digits.to_string()])
        .arg("--out")
        .arg(&out)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .status()
        .with_context(|| format!("starting {}", dl.display()))?;
    if !status.success() {
        bail!("`dl train {model}` for the epoch benchmark failed with {status}");
    }
    let metrics = out.join("metrics.json");
    let text =
        fs::read_to_string(&metrics).with_context(|| format!("reading {}", metrics.display()))?;
    let rates = samples_per_second(&text)
        .with_context(|| format!("reading the epochs of {}", metrics.display()))?;
    record(model, "flex", plan, &rates)
}

/// Time `model`'s epochs in PyTorch with `python`.
pub fn run_pytorch(
    root: &Path,
    python: &Path,
    plan: EpochPlan,
    model: &str,
    threads: usize,
) -> Result<Record> {
    let output = Command::new(python)
        .current_dir(root)
        .arg(root.join("benches/pytorch/epoch.py"))
        .args(["--model", model, "--threads", &threads.to_string()])
        .args(["--batch-size", &BATCH.to_string()])
        .args(["--epochs", &plan.epochs.to_string()])
        .args(["--limit", &plan.digits.to_string()])
        .output()
        .with_context(|| format!("starting {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "benches/pytorch/epoch.py --model {model} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("benches/pytorch/epoch.py printed no JSON")?;
    let rates: Vec<f64> = value["samples_per_second"]
        .as_array()
        .context("benches/pytorch/epoch.py printed no samples_per_second")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    record(model, PYTORCH, plan, &rates)
}

/// `samples_per_second` of every epoch in a `dl train` `metrics.json` (an array of epochs, or
/// an object holding them under `epochs`).
pub fn samples_per_second(metrics_json: &str) -> Result<Vec<f64>> {
    let value: serde_json::Value = serde_json::from_str(metrics_json).context("not JSON")?;
    let epochs = value
        .as_array()
        .or_else(|| value["epochs"].as_array())
        .context("no list of epochs")?;
    epochs
        .iter()
        .map(|e| {
            e["samples_per_second"]
                .as_f64()
                .filter(|r| *r > 0.0)
                .context("an epoch without a positive samples_per_second")
        })
        .collect()
}

/// The record of the timed epochs (all but the first) as nanoseconds per epoch of
/// `plan.digits` digits.
fn record(model: &str, backend: &str, plan: EpochPlan, rates: &[f64]) -> Result<Record> {
    if rates.len() != plan.epochs {
        bail!(
            "{backend} reported {} epochs of {model}, expected {}",
            rates.len(),
            plan.epochs
        );
    }
    let samples: Vec<f64> = rates[1..]
        .iter()
        .map(|rate| plan.digits as f64 / rate * 1e9)
        .collect();
    Record::from_samples(&case_id(model), backend, &samples)
        .with_context(|| format!("no timed epoch of {model} (at least 2 epochs are needed)"))
}

/// Build `dl-bench` and `dl` (release, or the dev profile in quick mode) in one cargo call
/// over the whole workspace and return the folder holding them.
///
/// `--workspace` resolves Burn's features as `cargo test --workspace` does, so CI's quick run
/// reuses the test build instead of compiling Burn again for `-p dl-bench`'s and `-p dl-cli`'s
/// own feature sets (two extra builds of several minutes each), and a full run builds Burn in
/// release once for both programs.
pub fn build_binaries(root: &Path, quick: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "--quiet",
        "--workspace",
        "--bin",
        "dl-bench",
        "--bin",
        "dl",
    ]);
    if !quick {
        command.arg("--release");
    }
    crate::python::run(&mut command).context("building `dl-bench` and `dl`")?;
    let profile = if quick { "debug" } else { "release" };
    Ok(target_dir(root, std::env::var_os("CARGO_TARGET_DIR")).join(profile))
}

/// Cargo's build folder: `CARGO_TARGET_DIR` (relative to the workspace root when relative),
/// else `target` in the workspace root.
fn target_dir(root: &Path, configured: Option<std::ffi::OsString>) -> PathBuf {
    match configured {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_folder_follows_cargo_target_dir() {
        let root = Path::new("/repo");
        assert_eq!(target_dir(root, None), Path::new("/repo/target"));
        assert_eq!(target_dir(root, Some("".into())), Path::new("/repo/target"));
        assert_eq!(target_dir(root, Some("out".into())), Path::new("/repo/out"));
        assert_eq!(target_dir(root, Some("/tmp/t".into())), Path::new("/tmp/t"));
    }

    #[test]
    fn epochs_are_read_from_either_metrics_layout() {
        let list = r#"[{"epoch": 1, "samples_per_second": 100.0},
                       {"epoch": 2, "samples_per_second": 400.0}]"#;
        assert_eq!(samples_per_second(list).ok(), Some(vec![100.0, 400.0]));
        let object = r#"{"epochs": [{"samples_per_second": 50.0}], "test": {}}"#;
        assert_eq!(samples_per_second(object).ok(), Some(vec![50.0]));
        let err = |text: &str| format!("{:#}", samples_per_second(text).unwrap_err());
        assert_eq!(
            err(r#"[{"epoch": 1}]"#),
            "an epoch without a positive samples_per_second"
        );
        assert_eq!(
            err(r#"[{"samples_per_second": 0.0}]"#),
            "an epoch without a positive samples_per_second"
        );
        assert_eq!(err(r#"{"test": {}}"#), "no list of epochs");
        assert!(
            err("not json").starts_with("not JSON: "),
            "{}",
            err("not json")
        );
    }

    #[test]
    fn a_failing_program_is_an_error_that_names_the_model() {
        let root = std::env::temp_dir();
        let err = run_dl(&root, Path::new("false"), EpochPlan::QUICK, "lstm", 1)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref()
                .map(|e| e.starts_with("`dl train lstm` for the epoch benchmark failed")),
            Some(true),
            "{err:?}"
        );
        let missing = run_dl(
            &root,
            Path::new("/nonexistent/dl"),
            EpochPlan::QUICK,
            "mlp",
            1,
        );
        let missing = format!("{:#}", missing.unwrap_err());
        assert!(
            missing.starts_with("starting /nonexistent/dl: "),
            "{missing}"
        );
    }

    #[test]
    fn the_warm_up_epoch_is_left_out_and_times_are_per_epoch() {
        let plan = EpochPlan {
            epochs: 3,
            digits: 800,
        };
        // 400 digits/s is 2 s per epoch of 800; 800 digits/s is 1 s.
        let r = record("lstm", "flex", plan, &[1.0, 400.0, 800.0]).ok();
        let r = r.as_ref();
        assert_eq!(r.map(|r| r.id.as_str()), Some("epoch/lstm/b64"));
        assert_eq!(r.map(|r| r.repetitions), Some(2));
        assert_eq!(r.map(|r| r.median_ns), Some(1.5e9));
        let err = record("lstm", "flex", plan, &[1.0, 2.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flex reported 2 epochs of lstm, expected 3"
        );
    }
}
