//! `dl eval` and `dl predict` of a `forecast` checkpoint: the test MAE with its two naive
//! baselines, and next week's CO2.

use anyhow::{Result, bail};
use burn::tensor::Device;
use dl_io::CheckpointMeta;

use crate::cli::{EvalArgs, PredictArgs};
use crate::config::{DEFAULT_WINDOW, RunConfig};
use crate::data::{DEFAULT_VAL_FRACTION, ForecastData, Split, default_series_path};
use crate::model::DigitModel;
use crate::scoring::evaluate_forecast;

/// The window and validation fraction a forecast checkpoint was trained with; the defaults
/// for a checkpoint without a training configuration (one written by `dl convert`).
fn settings(meta: &CheckpointMeta) -> (usize, f64) {
    match serde_json::from_value::<RunConfig>(meta.training_config.clone()) {
        Ok(config) => (config.window(), config.val_fraction),
        Err(_) => (DEFAULT_WINDOW, DEFAULT_VAL_FRACTION),
    }
}

/// The series of `--data` (default: the committed csv), split and scaled as in training.
fn load_data(data: Option<&std::path::Path>, meta: &CheckpointMeta) -> Result<ForecastData> {
    let (window, val_fraction) = settings(meta);
    let path = data.map_or_else(default_series_path, std::path::Path::to_path_buf);
    ForecastData::load(&path, window, val_fraction)
}

/// `dl eval` of a forecast checkpoint: MAE on the test (or training) part and the baselines
/// on the same windows.
pub fn eval(args: &EvalArgs, model: &DigitModel, device: &Device) -> Result<()> {
    let meta = dl_io::read_checkpoint_meta(&args.checkpoint)?;
    let data = load_data(args.data.data.as_deref(), &meta)?;
    let part = match args.data.split {
        Split::Train => &data.split.train,
        Split::Test => &data.split.test,
    };
    let targets = data.targets(part, args.limit);
    let result = evaluate_forecast(model, &data, &targets, args.batch_size.max(1), device)?;
    let naive = data.naive_mae(&targets);
    let seasonal = data.seasonal_naive_mae(&targets);
    let split = format!("{:?}", args.data.split).to_lowercase();
    if args.json {
        let value = serde_json::json!({
            "model": model.kind.name(),
            "split": split,
            "count": result.count,
            "loss": result.loss,
            "mae": result.mae,
            "naive_mae": naive,
            "seasonal_naive_mae": seasonal,
            "window": data.window,
        });
        println!("{value}");
    } else {
        println!(
            "forecast on {} {split} weeks ({} to {}, window {}): MAE {:.3} ppm, loss {:.5}; baselines on the same weeks: naive (last week) {naive:.3} ppm, seasonal naive (52 weeks before) {seasonal:.3} ppm",
            result.count,
            targets.first().map_or(0, |&t| data.series.dates[t]),
            targets.last().map_or(0, |&t| data.series.dates[t]),
            data.window,
            result.mae,
            result.loss,
        );
    }
    Ok(())
}

/// `dl predict` of a forecast checkpoint: the forecast of each `--index` week (default: the
/// week after the series) from the `window` weeks before it, in ppm.
pub fn predict(args: &PredictArgs, model: &DigitModel, device: &Device) -> Result<()> {
    if !args.images.is_empty() {
        bail!(
            "{} holds a `forecast` model, which reads the CO2 series, not images: give --index WEEK or nothing (the week after the series)",
            args.checkpoint.display()
        );
    }
    let meta = dl_io::read_checkpoint_meta(&args.checkpoint)?;
    let data = load_data(args.data.data.as_deref(), &meta)?;
    let len = data.series.len();
    let weeks = if args.index.is_empty() {
        vec![len]
    } else {
        args.index.clone()
    };
    for &t in &weeks {
        if t < data.window || t > len {
            bail!(
                "--index {t}: expected a week from {} (the first with {} weeks before it) to {len} (the week after the series)",
                data.window,
                data.window
            );
        }
    }
    let inputs = data.windows(&weeks);
    let output = model.forecast(&inputs, weeks.len(), data.window, device)?;
    let values: Vec<f32> = output
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the forecasts: {e:?}"))?;
    let mut results = Vec::new();
    for (&t, &scaled) in weeks.iter().zip(&values) {
        let forecast = data.forecast_ppm(t, scaled);
        let observed = data.series.values.get(t).copied();
        let date = data.series.dates.get(t).copied();
        let last = data.series.dates[t - 1];
        if args.json {
            results.push(serde_json::json!({
                "week": t, "date": date, "after": last, "forecast_ppm": forecast, "observed_ppm": observed,
            }));
        } else {
            let when = date.map_or_else(
                || format!("the week after {last} (after the series)"),
                |d| format!("week {t} ({d})"),
            );
            let truth = observed
                .map(|v| format!(", observed {v:.2} ppm"))
                .unwrap_or_default();
            println!("{when}: forecast {forecast:.2} ppm{truth}");
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(())
}
