//! `dl demo`: the chapter end to end on committed real data: trains the MLP, CNN, image CNN,
//! LSTM, Transformer and the from-scratch network on the digits and the LSTM forecaster on the
//! CO2 series, draws the Transformer's attention and the forecast, compares the runs in one plot
//! and prints a summary table.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use dl_core::BackendKind;
use plotters::style::RGBColor;

use crate::cli::DemoArgs;
use crate::config::{DEFAULT_WINDOW, ModelKind, OptimizerKind, RunConfig, ScheduleChoice};
use crate::data::{DEFAULT_VAL_FRACTION, Digits, Split, default_data_dir, default_series_path};
use crate::model::DigitModel;
use crate::output::{Existing, RunFolder};
use crate::progress::{LogMode, Reporter};
use crate::training_loop::{TrainOutcome, train};
use crate::{commands, plot};

/// Digits of each split that `dl demo --quick` uses (the first ones of the committed set).
pub const QUICK_DIGITS: usize = 800;

/// How the demo trains one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DemoSetting {
    /// Most epochs; each run keeps the checkpoint of its best validation accuracy (10% of the
    /// training digits), and the test digits are read once, for that checkpoint.
    epochs: usize,
    batch_size: usize,
    /// Digits of each split it uses, when not all of them.
    limit: Option<usize>,
}

/// Each model's demo setting, chosen so that the whole demo takes about five minutes on a
/// 2-core CPU in release mode on the 8,000 committed training digits, and each model reaches
/// its target accuracy on the 2,000 test digits (docs/cli.md has the run). The image CNN (4.3 M
/// parameters on 3x64x64 upscaled digits, the chapter's image-classification case) trains on
/// the first 2,000 digits, one epoch, to stay within that time.
fn demo_setting(model: ModelKind) -> DemoSetting {
    let (epochs, batch_size, limit) = match model {
        ModelKind::Mlp => (15, 32, None),
        ModelKind::Cnn => (8, 32, None),
        ModelKind::ImageCnn => (1, 32, Some(2_000)),
        ModelKind::Lstm => (25, 32, None),
        ModelKind::Transformer => (20, 32, None),
        ModelKind::Scratch => (40, 32, None),
        ModelKind::Forecast => (crate::config::FORECAST_EPOCHS, 64, None),
    };
    DemoSetting {
        epochs,
        batch_size,
        limit,
    }
}

/// The digits of each split a model uses: the smallest of its setting, `--quick` and `--limit`.
fn digits_limit(setting: DemoSetting, quick: bool, limit: Option<usize>) -> Option<usize> {
    [setting.limit, quick.then_some(QUICK_DIGITS), limit]
        .into_iter()
        .flatten()
        .min()
}

/// Run `dl demo`; returns whether Ctrl-C stopped it.
pub fn run(args: &DemoArgs, stop: &Arc<AtomicBool>) -> Result<bool> {
    let data = args.data.clone().unwrap_or_else(default_data_dir);
    let started = Instant::now();
    let mode = if args.quiet {
        LogMode::Quiet
    } else {
        LogMode::Text
    };
    let mut rows: Vec<(ModelKind, TrainOutcome)> = Vec::new();
    for &model in &args.models {
        let setting = demo_setting(model);
        // The forecast trains as `dl train forecast` does by default, on the whole committed
        // series (it takes seconds); the digit models on the demo's digits, cosine schedule.
        let forecast = model.is_forecast();
        let limit = if forecast {
            None
        } else {
            digits_limit(setting, args.quick, args.limit)
        };
        let config = RunConfig {
            model,
            backend: args.backend.clone(),
            epochs: args.epochs.unwrap_or(setting.epochs),
            batch_size: setting.batch_size,
            lr: crate::config::default_lr(model, OptimizerKind::Adam),
            optimizer: OptimizerKind::Adam,
            schedule: ScheduleChoice::Named(if forecast { "fixed" } else { "cosine" }.into()),
            clip_grad_norm: None,
            seed: 42,
            data: if forecast {
                default_series_path()
            } else {
                data.clone()
            },
            out: args.out.join(model.name()),
            limit,
            val_fraction: if forecast {
                DEFAULT_VAL_FRACTION
            } else {
                crate::config::default_val_fraction()
            },
            window: forecast.then_some(DEFAULT_WINDOW),
        };
        let mut reporter = Reporter::new(mode, model.name());
        let outcome = train(&config, Existing::Overwrite, &mut reporter, stop)?;
        let interrupted = outcome.interrupted;
        if model == ModelKind::Transformer && !interrupted {
            let device = config.backend.parse::<BackendKind>()?.device()?;
            let (net, _, _) = DigitModel::load(&outcome.folder.best(), &device, None)?;
            let test = Digits::load(&data, Split::Test, limit)?;
            commands::attention::write(
                &net.valid(),
                &test,
                Split::Test,
                None,
                &outcome.folder.file("attention.png"),
                &device,
            )?;
        }
        rows.push((model, outcome));
        if interrupted {
            return Ok(true);
        }
    }
    let table = summary_table(&rows, started.elapsed().as_secs_f64(), &data);
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    dl_io::write_atomically(&args.out.join("summary.md"), table.as_bytes())?;
    comparison_plot(&args.out, &rows)?;
    if !args.quiet {
        println!(
            "plots: {0}/*/loss.png, {0}/*/accuracy.png, {0}/transformer/attention.png, {0}/forecast/forecast.png, {0}/val_accuracy.png",
            args.out.display()
        );
    }
    Ok(false)
}

fn summary_table(rows: &[(ModelKind, TrainOutcome)], total: f64, data: &std::path::Path) -> String {
    let mut out = String::from(
        "| model | parameters | epochs | best epoch (validation) | validation | test | validation / test size | train time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut baselines = String::new();
    for (model, outcome) in rows {
        let Some(summary) = &outcome.summary else {
            continue;
        };
        let (val, test, unit) = match (summary.val_accuracy, summary.test_accuracy) {
            (Some(val), Some(test)) => (
                format!("{:.2}%", val * 100.0),
                format!("{:.2}%", test * 100.0),
                "digits",
            ),
            _ => (
                format!("MAE {:.3} ppm", summary.val_mae.unwrap_or(f64::NAN)),
                format!("MAE {:.3} ppm", summary.test_mae.unwrap_or(f64::NAN)),
                "weeks",
            ),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {val} | {test} | {} / {} {unit} | {:.1}s |\n",
            model.name(),
            outcome.parameters,
            outcome.history.len(),
            summary.best_epoch,
            summary.val_count,
            summary.test_count,
            outcome.seconds
        ));
        if let (Some(naive), Some(seasonal)) = (summary.naive_mae, summary.seasonal_naive_mae) {
            baselines.push_str(&format!(
                "\n{}: on the same test weeks the naive forecast (last week) has MAE {naive:.3} ppm, the seasonal-naive one (52 weeks before) {seasonal:.3} ppm\n",
                model.name()
            ));
        }
    }
    out.push_str(
        "\nvalidation: held out of the training part, chooses the epoch; test: evaluated once, for the chosen checkpoint\n",
    );
    out.push_str(&baselines);
    out.push_str(&format!(
        "\ntotal {total:.1}s, digits {}\n",
        display_path(data)
    ));
    out
}

fn display_path(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| PathBuf::from(path))
        .display()
        .to_string()
}

/// Validation accuracy per epoch of every digit model in one chart.
fn comparison_plot(out: &std::path::Path, rows: &[(ModelKind, TrainOutcome)]) -> Result<()> {
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
    ];
    let series: Vec<_> = rows
        .iter()
        .filter(|(model, _)| !model.is_forecast())
        .zip(colours.iter().cycle())
        .map(|((model, outcome), colour)| {
            (
                model.name(),
                outcome
                    .history
                    .iter()
                    .filter_map(|m| Some((m.epoch as f64, m.val_accuracy? * 100.0)))
                    .collect::<Vec<_>>(),
                *colour,
            )
        })
        .collect();
    let folder = RunFolder {
        dir: out.to_path_buf(),
    };
    plot::line_chart(
        &folder.file("val_accuracy.png"),
        "validation accuracy per epoch",
        "validation accuracy (%)",
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_limit_wins() {
        let image = demo_setting(ModelKind::ImageCnn);
        let mlp = demo_setting(ModelKind::Mlp);
        assert_eq!(digits_limit(mlp, false, None), None);
        assert_eq!(digits_limit(mlp, true, None), Some(QUICK_DIGITS));
        assert_eq!(digits_limit(mlp, true, Some(64)), Some(64));
        assert_eq!(digits_limit(image, false, None), Some(2_000));
        assert_eq!(digits_limit(image, true, None), Some(QUICK_DIGITS));
        assert_eq!(digits_limit(image, false, Some(5_000)), Some(2_000));
    }
}
