//! `dl eval`: accuracy, loss and confusion matrix of a checkpoint (a forecast checkpoint:
//! `forecast.rs`).

use anyhow::Result;
use dl_core::BackendKind;
use dl_loss::CrossEntropyLossConfig;

use crate::cli::{DataArgs, EvalArgs};
use crate::data::{Digits, default_data_dir};
use crate::model::DigitModel;
use crate::scoring::{confusion_table, evaluate};

/// Load the checkpoint named in `data`'s command on its backend, refusing another model.
pub fn load_model(
    checkpoint: &std::path::Path,
    data: &DataArgs,
) -> Result<(DigitModel, burn::tensor::Device)> {
    let backend: BackendKind = data.backend.parse()?;
    let device = backend.device()?;
    let (model, _, _) = DigitModel::load(checkpoint, &device, None)?;
    if let Some(expected) = data.model
        && expected != model.kind
    {
        anyhow::bail!(
            "{} holds a `{}` model, not `{}`",
            checkpoint.display(),
            model.kind.name(),
            expected.name()
        );
    }
    Ok((model.valid(), device))
}

/// Run `dl eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let (model, device) = load_model(&args.checkpoint, &args.data)?;
    if model.kind.is_forecast() {
        return crate::commands::forecast::eval(args, &model, &device);
    }
    let dir = args.data.data.clone().unwrap_or_else(default_data_dir);
    let digits = Digits::load(&dir, args.data.split, args.limit)?;
    let criterion = CrossEntropyLossConfig::new().init()?;
    let result = evaluate(&model, &digits, args.batch_size.max(1), &device, &criterion)?;
    if args.json {
        let mut value = serde_json::to_value(&result)?;
        value["model"] = model.kind.name().into();
        println!("{value}");
    } else {
        println!(
            "{} on {} {:?} digits: accuracy {:.2}%, loss {:.4}\nconfusion matrix (rows: true class, columns: predicted):\n{}",
            model.kind.name(),
            result.count,
            args.data.split,
            result.accuracy * 100.0,
            result.loss,
            confusion_table(&result.confusion)
        );
    }
    Ok(())
}
