//! `dl demo`: the chapter end to end on the committed digits: trains the MLP, CNN, LSTM and
//! Transformer, draws the Transformer's attention, compares the runs in one plot and prints a
//! summary table.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use dl_core::BackendKind;
use plotters::style::RGBColor;

use crate::cli::DemoArgs;
use crate::config::{ModelKind, OptimizerKind, RunConfig, ScheduleChoice};
use crate::data::{Digits, Split, default_data_dir};
use crate::model::DigitModel;
use crate::output::{Existing, RunFolder};
use crate::progress::{LogMode, Reporter};
use crate::train::{TrainOutcome, train};
use crate::{commands, plot};

/// Epochs and batch size of each model in the demo, chosen so that the runs take a few
/// minutes on a 2-core CPU in release mode on the 800 committed training digits. The epoch
/// counts are only an upper bound: each run keeps the checkpoint of its best validation
/// accuracy (10% of the training digits), and the test digits are read once, for that
/// checkpoint.
fn demo_settings(model: ModelKind) -> (usize, usize) {
    match model {
        ModelKind::Mlp => (15, 32),
        ModelKind::Cnn => (8, 32),
        ModelKind::ImageCnn => (3, 32),
        ModelKind::Lstm => (25, 32),
        ModelKind::Transformer => (25, 32),
        ModelKind::Scratch => (40, 32),
        ModelKind::Forecast => (crate::config::FORECAST_EPOCHS, 64),
    }
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
        let (epochs, batch_size) = demo_settings(model);
        let config = RunConfig {
            model,
            backend: args.backend.clone(),
            epochs: args.epochs.unwrap_or(epochs),
            batch_size,
            lr: crate::config::default_lr(model, OptimizerKind::Adam),
            optimizer: OptimizerKind::Adam,
            schedule: ScheduleChoice::Named("cosine".into()),
            clip_grad_norm: None,
            seed: 42,
            data: data.clone(),
            out: args.out.join(model.name()),
            limit: args.limit,
            val_fraction: crate::config::default_val_fraction(),
            window: None,
        };
        let mut reporter = Reporter::new(mode, model.name());
        let outcome = train(&config, Existing::Overwrite, &mut reporter, stop)?;
        let interrupted = outcome.interrupted;
        if model == ModelKind::Transformer && !interrupted {
            let device = config.backend.parse::<BackendKind>()?.device()?;
            let (net, _, _) = DigitModel::load(&outcome.folder.best(), &device, None)?;
            let test = Digits::load(&data, Split::Test, args.limit)?;
            commands::attention::write(
                &net.valid(),
                &test,
                Split::Test,
                0,
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
            "plots: {0}/*/loss.png, {0}/*/accuracy.png, {0}/transformer/attention.png, {0}/val_accuracy.png",
            args.out.display()
        );
    }
    Ok(false)
}

fn summary_table(rows: &[(ModelKind, TrainOutcome)], total: f64, data: &std::path::Path) -> String {
    let mut out = String::from(
        "| model | parameters | epochs | best epoch (validation) | validation accuracy | test accuracy | train time |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (model, outcome) in rows {
        let Some(summary) = &outcome.summary else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}% | {:.2}% | {:.1}s |\n",
            model.name(),
            outcome.parameters,
            outcome.history.len(),
            summary.best_epoch,
            summary.val_accuracy.unwrap_or(f64::NAN) * 100.0,
            summary.test_accuracy.unwrap_or(f64::NAN) * 100.0,
            outcome.seconds
        ));
    }
    let counts = rows
        .iter()
        .find_map(|(_, o)| o.summary.as_ref())
        .map_or(String::new(), |s| {
            format!(
                "\nvalidation: {} digits held out of the training split, chooses the epoch; test: {} digits, evaluated once for the chosen checkpoint\n",
                s.val_count, s.test_count
            )
        });
    out.push_str(&counts);
    out.push_str(&format!(
        "\ntotal {total:.1}s, data {}\n",
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

/// Validation accuracy per epoch of every model in one chart.
fn comparison_plot(out: &std::path::Path, rows: &[(ModelKind, TrainOutcome)]) -> Result<()> {
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
    ];
    let series: Vec<_> = rows
        .iter()
        .zip(colours.iter().cycle())
        .map(|((model, outcome), colour)| {
            (
                model.name(),
                outcome
                    .history
                    .iter()
                    .map(|m| (m.epoch as f64, m.val_accuracy.unwrap_or(f64::NAN) * 100.0))
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
