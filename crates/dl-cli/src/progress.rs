//! What a run prints: a progress bar with epoch summaries, one JSON object per line, or
//! nothing.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::EpochMetrics;

/// How a run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    /// Progress bar on stderr (when it is a terminal) and a line per epoch on stdout.
    Text,
    /// One JSON object per epoch and event on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// The running score of an epoch, as printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    /// Fraction classified correctly.
    Accuracy(f64),
    /// Mean absolute error in ppm.
    Mae(f64),
    /// Not measured.
    None,
}

impl Score {
    /// The accuracy when there is one, else the MAE.
    pub fn of(accuracy: Option<f64>, mae: Option<f64>) -> Self {
        match (accuracy, mae) {
            (Some(a), _) => Self::Accuracy(a),
            (None, Some(m)) => Self::Mae(m),
            (None, None) => Self::None,
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accuracy(a) => write!(f, "acc {:.2}%", a * 100.0),
            Self::Mae(m) => write!(f, "mae {m:.3} ppm"),
            Self::None => Ok(()),
        }
    }
}

/// Progress of a training run.
pub struct Reporter {
    mode: LogMode,
    bar: Option<ProgressBar>,
    label: String,
}

impl Reporter {
    /// A reporter for the run of `label` (the model name).
    pub fn new(mode: LogMode, label: &str) -> Self {
        Self {
            mode,
            bar: None,
            label: label.to_string(),
        }
    }

    /// An epoch of `batches` steps begins.
    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if self.mode != LogMode::Text {
            return;
        }
        let bar = ProgressBar::new(batches as u64);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} epoch {epoch}/{epochs}", self.label));
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    /// A step finished with the running mean loss and the epoch's running score (accuracy,
    /// or the forecast's MAE).
    pub fn step(&self, loss: f64, score: Score, samples_per_second: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {loss:.4} {score} {samples_per_second:.0} samples/s"
            ));
            bar.inc(1);
        }
    }

    /// An epoch finished.
    pub fn end_epoch(&mut self, metrics: &EpochMetrics, best: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match self.mode {
            LogMode::Text => println!(
                "{} epoch {}: train loss {:.4} {} | val loss {:.4} {}{} | {:.1}s, {:.0} samples/s",
                self.label,
                metrics.epoch,
                metrics.train_loss,
                Score::of(metrics.train_accuracy, metrics.train_mae),
                metrics.val_loss,
                Score::of(metrics.val_accuracy, metrics.val_mae),
                if best { " (best)" } else { "" },
                metrics.seconds,
                metrics.samples_per_second
            ),
            LogMode::Json => {
                let mut value = serde_json::to_value(metrics).unwrap_or_default();
                value["event"] = "epoch".into();
                value["model"] = self.label.clone().into();
                println!("{value}");
            }
            LogMode::Quiet => {}
        }
    }

    /// A notable event (resume, interruption, end of run): text in text mode, else JSON.
    pub fn event(&mut self, event: &str, text: &str, fields: serde_json::Value) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match self.mode {
            LogMode::Text => println!("{text}"),
            LogMode::Json => {
                let mut value = fields;
                if !value.is_object() {
                    value = serde_json::json!({});
                }
                value["event"] = event.into();
                value["model"] = self.label.clone().into();
                value["message"] = text.into();
                println!("{value}");
            }
            LogMode::Quiet => {}
        }
    }
}
