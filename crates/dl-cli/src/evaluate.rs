//! Accuracy, mean loss and confusion matrix of a model on a split.

use anyhow::Result;
use burn::tensor::Device;
use dl_loss::CrossEntropyLoss;
use serde::Serialize;

use crate::data::{Batcher, Digits};
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
            .forward(logits.clone(), label_tensor(&batch.labels, device))?
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
