//! What a training run learns, behind one type so that every model shares the training loop:
//! the digit classes (cross-entropy, accuracy) or next week's CO2 (MSE of the scaled series,
//! mean absolute error in ppm). The loop asks a task for its training samples, the loss and
//! score of a batch, the validation of an epoch and the test of the best checkpoint.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use dl_loss::{CrossEntropyLoss, CrossEntropyLossConfig, MseLoss, MseLossConfig};

use crate::config::RunConfig;
use crate::data::{Batcher, Digits, ForecastData, SEASON, Split};
use crate::metrics::{EpochMetrics, Summary};
use crate::model::{DigitModel, label_tensor};
use crate::output::RunFolder;
use crate::plot;
use crate::scoring::{evaluate, evaluate_forecast};

/// Samples per evaluation batch.
const EVAL_BATCH: usize = 256;

/// The data and loss of a run.
#[allow(clippy::large_enum_variant)]
pub enum Task {
    /// Digit classification.
    Digits {
        /// The training digits.
        train: Digits,
        /// The validation digits (held out of the training split).
        val: Digits,
        /// Cross-entropy.
        criterion: CrossEntropyLoss,
    },
    /// Next-week forecast of the weekly series.
    Forecast {
        /// The series, split and scaled.
        data: ForecastData,
        /// The target weeks of the training part.
        train: Vec<usize>,
        /// The target weeks of the validation part.
        val: Vec<usize>,
        /// Mean squared error.
        criterion: MseLoss,
    },
}

/// A batch's loss (on the autodiff graph) and its score summed over the batch: the count of
/// right predictions, or the sum of absolute errors in scaled units.
pub struct BatchLoss {
    /// Mean loss of the batch, `[1]`.
    pub loss: Tensor<1>,
    /// Score summed over the batch, `[1]`.
    pub score: Tensor<1>,
}

/// The validation of one epoch.
pub struct Validation {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy (digits).
    pub accuracy: Option<f64>,
    /// MAE in ppm (forecast).
    pub mae: Option<f64>,
}

impl Task {
    /// The data of `config`'s model: the training split with its validation digits held out,
    /// or the series split in time.
    pub fn load(config: &RunConfig) -> Result<Self> {
        if config.model.is_forecast() {
            let data = ForecastData::load(&config.data, config.window(), config.val_fraction)?;
            let train = data.targets(&data.split.train, config.limit);
            let val = data.targets(&data.split.val, config.limit);
            return Ok(Self::Forecast {
                data,
                train,
                val,
                criterion: MseLossConfig::new().init()?,
            });
        }
        let (train, val) = Digits::load(&config.data, Split::Train, config.limit)?
            .split_validation(config.val_fraction, config.seed)?;
        Ok(Self::Digits {
            train,
            val,
            criterion: CrossEntropyLossConfig::new().init()?,
        })
    }

    /// Training samples per epoch.
    pub fn train_len(&self) -> usize {
        match self {
            Self::Digits { train, .. } => train.len(),
            Self::Forecast { train, .. } => train.len(),
        }
    }

    /// Validation samples.
    pub fn val_len(&self) -> usize {
        match self {
            Self::Digits { val, .. } => val.len(),
            Self::Forecast { val, .. } => val.len(),
        }
    }

    /// The loss and score of the training samples at `indices` (positions in the epoch's
    /// sample list).
    pub fn batch_loss(
        &self,
        model: &DigitModel,
        indices: &[usize],
        device: &Device,
    ) -> Result<BatchLoss> {
        match self {
            Self::Digits {
                train, criterion, ..
            } => {
                let batch = Batcher::batch(train, indices);
                let logits = model.logits(&batch.images, batch.len(), device)?;
                let labels = label_tensor(&batch.labels, device);
                let score = logits
                    .clone()
                    .argmax(1)
                    .squeeze_dim::<1>(1)
                    .equal(labels.clone())
                    .int()
                    .sum()
                    .float();
                let loss = criterion.try_forward(logits, labels)?;
                Ok(BatchLoss { loss, score })
            }
            Self::Forecast {
                data,
                train,
                criterion,
                ..
            } => {
                let targets: Vec<usize> = indices.iter().map(|&i| train[i]).collect();
                let (inputs, truth) = data.batch(&targets);
                let n = targets.len();
                let predicted = model.forecast(&inputs, n, data.window, device)?;
                let truth = Tensor::<2>::from_data(TensorData::new(truth, [n, 1]), device);
                let score = predicted.clone().sub(truth.clone()).abs().sum().detach();
                let loss = criterion.try_forward(predicted, truth)?;
                Ok(BatchLoss { loss, score })
            }
        }
    }

    /// A batch's summed score as the units of the epoch's metric: right predictions, or the
    /// absolute error in ppm.
    pub fn score_units(&self, score: f64) -> f64 {
        match self {
            Self::Digits { .. } => score,
            Self::Forecast { data, .. } => score * data.scaler.std,
        }
    }

    /// The epoch's training accuracy or MAE from the summed score of `seen` samples.
    pub fn train_scores(&self, score_sum: f64, seen: usize) -> (Option<f64>, Option<f64>) {
        let mean = score_sum / seen.max(1) as f64;
        match self {
            Self::Digits { .. } => (Some(mean), None),
            Self::Forecast { .. } => (None, Some(mean)),
        }
    }

    /// Validate `model` (an inference network on `device`).
    pub fn validate(&self, model: &DigitModel, device: &Device) -> Result<Validation> {
        match self {
            Self::Digits { val, criterion, .. } => {
                let result = evaluate(model, val, EVAL_BATCH, device, criterion)?;
                Ok(Validation {
                    loss: result.loss,
                    accuracy: Some(result.accuracy),
                    mae: None,
                })
            }
            Self::Forecast { data, val, .. } => {
                let result = evaluate_forecast(model, data, val, EVAL_BATCH, device)?;
                Ok(Validation {
                    loss: result.loss,
                    accuracy: None,
                    mae: Some(result.mae),
                })
            }
        }
    }

    /// Evaluate the best checkpoint (`best`, of epoch `best.epoch`) once on the test data; a
    /// forecast also draws `forecast.png` and measures the two naive baselines on the same
    /// test windows.
    pub fn test(
        &self,
        config: &RunConfig,
        folder: &RunFolder,
        model: &DigitModel,
        best: &EpochMetrics,
        device: &Device,
    ) -> Result<Summary> {
        let mut summary = Summary {
            model: config.model.name().to_string(),
            best_epoch: best.epoch,
            val_count: self.val_len(),
            val_accuracy: best.val_accuracy,
            val_mae: best.val_mae,
            test_count: 0,
            test_accuracy: None,
            test_mae: None,
            naive_mae: None,
            seasonal_naive_mae: None,
            test_loss: 0.0,
        };
        match self {
            Self::Digits { criterion, .. } => {
                let test_set = Digits::load(&config.data, Split::Test, config.limit)?;
                let test = evaluate(model, &test_set, EVAL_BATCH, device, criterion)?;
                summary.test_count = test.count;
                summary.test_accuracy = Some(test.accuracy);
                summary.test_loss = test.loss;
            }
            Self::Forecast { data, .. } => {
                let targets = data.targets(&data.split.test, config.limit);
                let test = evaluate_forecast(model, data, &targets, EVAL_BATCH, device)?;
                summary.test_count = test.count;
                summary.test_mae = Some(test.mae);
                summary.test_loss = test.loss;
                summary.naive_mae = Some(data.naive_mae(&targets));
                summary.seasonal_naive_mae = Some(data.seasonal_naive_mae(&targets));
                forecast_plot(
                    &folder.file("forecast.png"),
                    data,
                    &targets,
                    &test.predictions,
                )
                .context("drawing forecast.png")?;
            }
        }
        Ok(summary)
    }
}

/// `forecast.png`: the test weeks' truth and the model's one-week-ahead forecasts, by year.
pub fn forecast_plot(
    path: &std::path::Path,
    data: &ForecastData,
    targets: &[usize],
    predictions: &[f64],
) -> Result<()> {
    if targets.len() != predictions.len() {
        bail!(
            "internal: {} forecasts for {} weeks",
            predictions.len(),
            targets.len()
        );
    }
    let year = |t: usize| decimal_year(data.series.dates[t]);
    let truth: Vec<(f64, f64)> = targets
        .iter()
        .map(|&t| (year(t), data.series.values[t]))
        .collect();
    let forecast: Vec<(f64, f64)> = targets
        .iter()
        .zip(predictions)
        .map(|(&t, &p)| (year(t), p))
        .collect();
    let seasonal: Vec<(f64, f64)> = targets
        .iter()
        .map(|&t| (year(t), data.series.values[t.saturating_sub(SEASON)]))
        .collect();
    plot::forecast(
        path,
        "weekly CO2 at Mauna Loa, test weeks: one-week-ahead forecast",
        &[
            ("truth (gaps interpolated)", truth, plotters::style::BLACK),
            ("LSTM forecast", forecast, plotters::style::RED),
            (
                "seasonal naive (52 weeks before)",
                seasonal,
                plotters::style::RGBColor(150, 150, 150),
            ),
        ],
    )
}

/// `YYYYMMDD` as a fractional year (months as twelfths), for the plot's axis.
fn decimal_year(date: u32) -> f64 {
    let (year, month, day) = (date / 10_000, date / 100 % 100, date % 100);
    f64::from(year) + (f64::from(month) - 1.0) / 12.0 + (f64::from(day) - 1.0) / 365.0
}
