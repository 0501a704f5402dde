//! Accuracy, mean loss and confusion matrix of a digit model on a split; mean absolute error
//! of a forecast model on a part of the series.

use anyhow::{Result, bail};
use burn::tensor::Device;
use dl_loss::CrossEntropyLoss;
use serde::Serialize;

use crate::data::{Batcher, Digits, ForecastData};
use crate::model::{DigitModel, label_tensor};

/// The result of evaluating a model on a split.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Digits evaluated.
    pub count: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluate `model` (an inference network on `device`) on every digit of `digits`.
pub fn evaluate(
    model: &DigitModel,
    digits: &Digits,
    batch_size: usize,
    device: &Device,
    criterion: &CrossEntropyLoss,
) -> Result<Evaluation> {
    let order: Vec<usize> = (0..digits.len()).collect();
    let mut confusion = vec![vec![0u64; 10]; 10];
    let mut loss_sum = 0.0;
    for batch in (Batcher { batch_size }).batches(digits, &order) {
        let n = batch.len();
        if batch.is_empty() {
            continue;
        }
        let logits = model.logits(&batch.images, n, device)?;
        let loss = criterion
            .try_forward(logits.clone(), label_tensor(&batch.labels, device))?
            .into_scalar::<f32>();
        loss_sum += f64::from(loss) * n as f64;
        for (&label, predicted) in batch.labels.iter().zip(predictions(logits)) {
            confusion[label as usize][predicted.min(9)] += 1;
        }
    }
    let correct: u64 = (0..10).map(|i| confusion[i][i]).sum();
    Ok(Evaluation {
        count: digits.len(),
        accuracy: correct as f64 / digits.len() as f64,
        loss: loss_sum / digits.len() as f64,
        confusion,
    })
}

/// The class of highest logit of each row.
pub fn predictions(logits: burn::tensor::Tensor<2>) -> Vec<usize> {
    logits
        .argmax(1)
        .into_data()
        .iter::<i64>()
        .map(|p| p.max(0) as usize)
        .collect()
}

/// The confusion matrix as an aligned table, true class per row.
pub fn confusion_table(confusion: &[Vec<u64>]) -> String {
    let mut out = String::from("true\\pred");
    for p in 0..confusion.len() {
        out.push_str(&format!("{p:>6}"));
    }
    out.push('\n');
    for (t, row) in confusion.iter().enumerate() {
        out.push_str(&format!("{t:>9}"));
        for count in row {
            out.push_str(&format!("{count:>6}"));
        }
        out.push('\n');
    }
    out
}

/// The result of a forecast model on a set of target weeks.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastEvaluation {
    /// Windows evaluated.
    pub count: usize,
    /// Mean squared error of the scaled values (the training loss).
    pub loss: f64,
    /// Mean absolute error in ppm.
    pub mae: f64,
    /// The prediction of each target week, in ppm.
    pub predictions: Vec<f64>,
}

/// Evaluate a `forecast` model (an inference network on `device`) on the windows that end
/// before each of `targets` (week indices of `data`).
pub fn evaluate_forecast(
    model: &DigitModel,
    data: &ForecastData,
    targets: &[usize],
    batch_size: usize,
    device: &Device,
) -> Result<ForecastEvaluation> {
    if targets.is_empty() {
        bail!("no windows to evaluate: expected at least one target week");
    }
    let mut predictions = Vec::with_capacity(targets.len());
    let (mut squared, mut absolute) = (0.0f64, 0.0f64);
    for chunk in targets.chunks(batch_size.max(1)) {
        let (inputs, truth) = data.batch(chunk);
        let output = model.forecast(&inputs, chunk.len(), data.window, device)?;
        let values: Vec<f32> = output
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the forecasts: {e:?}"))?;
        for ((&p, &y), &t) in values.iter().zip(&truth).zip(chunk) {
            let error = f64::from(p) - f64::from(y);
            squared += error * error;
            absolute += error.abs() * data.scaler.std;
            predictions.push(data.forecast_ppm(t, p));
        }
    }
    let n = targets.len() as f64;
    Ok(ForecastEvaluation {
        count: targets.len(),
        loss: squared / n,
        mae: absolute / n,
        predictions,
    })
}
