//! Metrics of each epoch, written as CSV and JSON after every epoch.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::output::RunFolder;

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Optimizer steps taken by the end of the epoch.
    pub step: u64,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch (with dropout on, as measured during training).
    pub train_accuracy: f64,
    /// Mean loss on the validation set (held out from the training digits).
    pub val_loss: f64,
    /// Accuracy on the validation set; the best checkpoint is the epoch where it is highest.
    pub val_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Training images per second.
    pub samples_per_second: f64,
}

/// Write `metrics.csv` and `metrics.json`.
pub fn write(folder: &RunFolder, history: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from(
        "epoch,step,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,samples_per_second\n",
    );
    for m in history {
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.1}",
            m.epoch,
            m.step,
            m.train_loss,
            m.train_accuracy,
            m.val_loss,
            m.val_accuracy,
            m.lr,
            m.seconds,
            m.samples_per_second
        );
    }
    dl_io::write_atomically(&folder.file("metrics.csv"), csv.as_bytes())?;
    let json = serde_json::to_string_pretty(history).context("serialising metrics")?;
    Ok(dl_io::write_atomically(
        &folder.file("metrics.json"),
        json.as_bytes(),
    )?)
}

/// The result of a finished run, written once to `summary.json`: the epoch chosen on the
/// validation set and that checkpoint's accuracy on the test split, which took no part in
/// training or in the choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The model.
    pub model: String,
    /// The epoch of `best.safetensors` (highest validation accuracy; the first on ties).
    pub best_epoch: usize,
    /// Validation digits.
    pub val_count: usize,
    /// Validation accuracy of the best epoch.
    pub val_accuracy: f64,
    /// Test digits.
    pub test_count: usize,
    /// Test accuracy of `best.safetensors`.
    pub test_accuracy: f64,
    /// Mean test cross-entropy of `best.safetensors`.
    pub test_loss: f64,
}

/// Write `summary.json`.
pub fn write_summary(folder: &RunFolder, summary: &Summary) -> Result<()> {
    let json = serde_json::to_string_pretty(summary).context("serialising the summary")?;
    Ok(dl_io::write_atomically(
        &folder.file("summary.json"),
        json.as_bytes(),
    )?)
}

/// Read `metrics.json` of an earlier run (empty when it has none).
pub fn read(folder: &RunFolder) -> Result<Vec<EpochMetrics>> {
    let path = folder.file("metrics.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a metrics file", path.display()))
}
