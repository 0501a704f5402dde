//! `dl train`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};

use crate::cli::TrainArgs;
use crate::config::{self, RunConfig};
use crate::output::Existing;
use crate::progress::{LogMode, Reporter};
use crate::training_loop::{TrainOutcome, train};

/// Run `dl train`; returns how the run ended.
pub fn run(args: &TrainArgs, stop: &Arc<AtomicBool>) -> Result<TrainOutcome> {
    let config = if args.resume {
        resumed_config(args)?
    } else {
        config::resolve(args)?
    };
    let existing = match (args.resume, args.overwrite) {
        (true, _) => Existing::Resume,
        (false, true) => Existing::Overwrite,
        (false, false) => Existing::Refuse,
    };
    let mode = if args.quiet {
        LogMode::Quiet
    } else if args.log_json {
        LogMode::Json
    } else {
        LogMode::Text
    };
    let mut reporter = Reporter::new(mode, config.model.name());
    let outcome = train(&config, existing, &mut reporter, stop)?;
    if let Some(summary) = &outcome.summary {
        let text = match (summary.val_mae, summary.test_mae) {
            (Some(val_mae), Some(test_mae)) => format!(
                "{}: best validation MAE {val_mae:.3} ppm at epoch {} of {}; that checkpoint's test MAE {test_mae:.3} ppm ({} weeks; naive {:.3}, seasonal naive {:.3}); {:.1}s; outputs in {}",
                config.model.name(),
                summary.best_epoch,
                outcome.history.len(),
                summary.test_count,
                summary.naive_mae.unwrap_or(f64::NAN),
                summary.seasonal_naive_mae.unwrap_or(f64::NAN),
                outcome.seconds,
                outcome.folder.dir.display()
            ),
            _ => format!(
                "{}: best validation accuracy {:.2}% at epoch {} of {}; that checkpoint's test accuracy {:.2}% ({} digits); {:.1}s; outputs in {}",
                config.model.name(),
                summary.val_accuracy.unwrap_or(f64::NAN) * 100.0,
                summary.best_epoch,
                outcome.history.len(),
                summary.test_accuracy.unwrap_or(f64::NAN) * 100.0,
                summary.test_count,
                outcome.seconds,
                outcome.folder.dir.display()
            ),
        };
        reporter.event(
            "done",
            &text,
            serde_json::json!({"summary": summary, "seconds": outcome.seconds}),
        );
    }
    Ok(outcome)
}

/// A resumed run keeps the configuration it started with; only `--epochs` (a new total) and
/// `--backend` may change.
fn resumed_config(args: &TrainArgs) -> Result<RunConfig> {
    let resolved = config::resolve(args)?;
    let last = resolved.out.join("last.safetensors");
    let meta = dl_io::read_checkpoint_meta(&last).with_context(|| {
        format!(
            "--resume: cannot read the run's checkpoint {}",
            last.display()
        )
    })?;
    let mut saved: RunConfig =
        serde_json::from_value(meta.training_config.clone()).with_context(|| {
            format!(
                "--resume: {} holds no dl training configuration",
                last.display()
            )
        })?;
    if let Some(model) = args.model
        && model.name() != meta.model
    {
        bail!(
            "--resume: the run in {} trains `{}`, not `{}`",
            resolved.out.display(),
            meta.model,
            model.name()
        );
    }
    if let Some(epochs) = args.epochs {
        saved.epochs = epochs;
    }
    if let Some(backend) = &args.backend {
        saved.backend = backend.clone();
    }
    saved.out = resolved.out;
    config::check(&saved)?;
    Ok(saved)
}
