//! Metrics of each epoch, written as CSV and JSON after every epoch.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::output::RunFolder;

/// What one epoch measured. Digit models carry the accuracies, `forecast` the mean absolute
/// errors (in ppm); the fields of the other kind are absent from the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Optimizer steps taken by the end of the epoch.
    pub step: u64,
    /// Mean training loss over the epoch's batches (cross-entropy; forecast: MSE of the
    /// scaled values).
    pub train_loss: f64,
    /// Training accuracy over the epoch (with dropout on, as measured during training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Forecast: mean absolute error (ppm) of the training windows, as measured during
    /// training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_mae: Option<f64>,
    /// Mean loss on the validation set.
    pub val_loss: f64,
    /// Accuracy on the validation set (held out from the training digits); the best
    /// checkpoint is the epoch where it is highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Forecast: mean absolute error (ppm) on the validation weeks; the best checkpoint is the
    /// epoch where it is lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_mae: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
}

impl EpochMetrics {
    /// The validation score the best checkpoint is chosen on, higher is better: the accuracy,
    /// or minus the MAE.
    pub fn score(&self) -> f64 {
        match (self.val_accuracy, self.val_mae) {
            (Some(accuracy), _) => accuracy,
            (None, Some(mae)) => -mae,
            (None, None) => f64::NEG_INFINITY,
        }
    }
}

/// Write `metrics.csv` and `metrics.json`.
pub fn write(folder: &RunFolder, history: &[EpochMetrics]) -> Result<()> {
    let forecast = history.iter().any(|m| m.val_mae.is_some());
    let mut csv = if forecast {
        String::from(
            "epoch,step,train_loss,train_mae,val_loss,val_mae,lr,seconds,samples_per_second\n",
        )
    } else {
        String::from(
            "epoch,step,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,samples_per_second\n",
        )
    };
    for m in history {
        let (train, val) = if forecast {
            (m.train_mae, m.val_mae)
        } else {
            (m.train_accuracy, m.val_accuracy)
        };
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.1}",
            m.epoch,
            m.step,
            m.train_loss,
            train.unwrap_or(f64::NAN),
            m.val_loss,
            val.unwrap_or(f64::NAN),
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
/// validation set and that checkpoint's result on the test split, which took no part in
/// training or in the choice. Digit models carry accuracies, `forecast` mean absolute errors
/// in ppm with the two baselines on the same test windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The model.
    pub model: String,
    /// The epoch of `best.safetensors` (highest validation accuracy or lowest validation MAE;
    /// the first on ties).
    pub best_epoch: usize,
    /// Validation digits (forecast: windows).
    pub val_count: usize,
    /// Validation accuracy of the best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Forecast: validation MAE (ppm) of the best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_mae: Option<f64>,
    /// Test digits (forecast: windows).
    pub test_count: usize,
    /// Test accuracy of `best.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Forecast: test MAE (ppm) of `best.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_mae: Option<f64>,
    /// Forecast: test MAE (ppm) of the naive forecast (the week before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naive_mae: Option<f64>,
    /// Forecast: test MAE (ppm) of the seasonal-naive forecast (52 weeks before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seasonal_naive_mae: Option<f64>,
    /// Mean test loss of `best.safetensors` (cross-entropy; forecast: MSE of scaled values).
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
