//! `dl convert`: weights between dl checkpoints, PyTorch state dicts (.pt/.pth/.safetensors)
//! and ONNX, through dl-io.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Device;
use dl_core::BackendKind;
use dl_io::CheckpointMeta;

use crate::cli::ConvertArgs;
use crate::config::ModelKind;
use crate::model::DigitModel;
use crate::weights;

/// Run `dl convert`.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let device = BackendKind::Flex.device()?;
    let model = if is_checkpoint(&args.input) {
        if args.infer.strip_prefix.is_some() || !args.infer.remap.is_empty() {
            bail!(
                "{} is a dl checkpoint, whose keys are dl's: --strip-prefix and --remap apply to PyTorch state dicts and ONNX files",
                args.input.display()
            );
        }
        let (model, _, _) = DigitModel::load(&args.input, &device, None)?;
        if let Some(expected) = args.model
            && expected != model.kind
        {
            bail!(
                "{} holds a `{}` model, not `{}`",
                args.input.display(),
                model.kind.name(),
                expected.name()
            );
        }
        model
    } else {
        from_weights(args, &device)?
    };
    let name = args.output.to_string_lossy().to_lowercase();
    let what = if args.checkpoint || name.ends_with(".ckpt.safetensors") {
        let meta = CheckpointMeta {
            model: model.kind.name().to_string(),
            model_config: model.config.clone(),
            ..Default::default()
        };
        model.save(&args.output, None, &meta)?;
        "dl checkpoint"
    } else if name.ends_with(".onnx") {
        model.export_onnx(&args.output)?;
        "ONNX model"
    } else if name.ends_with(".safetensors") {
        model.export_safetensors(&args.output)?;
        "PyTorch state dict (safetensors)"
    } else if name.ends_with(".pt") || name.ends_with(".pth") {
        model.export_pytorch(&args.output)?;
        "PyTorch state dict (torch.save format)"
    } else {
        bail!(
            "{}: unknown output type, expected a name ending in .safetensors, .pt, .pth, .onnx or .ckpt.safetensors",
            args.output.display()
        );
    };
    println!(
        "wrote {} of `{}` to {}",
        what,
        model.kind.name(),
        args.output.display()
    );
    Ok(())
}

/// A plain state dict or ONNX file: keys renamed, the network and its sizes inferred from the
/// shapes (checked against `--model` when given), then the weights loaded strictly.
fn from_weights(args: &ConvertArgs, device: &Device) -> Result<DigitModel> {
    let weights = weights::read(&args.input, &args.infer)?;
    let inferred = weights
        .state
        .infer_architecture(&weights::infer_options(&args.infer))?;
    let mut kind = inferred.architecture;
    if let Some(expected) = args.model {
        // `cnn` and `image-cnn` are one network fed differently: either may be asked for.
        let same_network = matches!(
            (expected, kind),
            (
                ModelKind::Cnn | ModelKind::ImageCnn,
                ModelKind::Cnn | ModelKind::ImageCnn
            )
        );
        if expected != kind && !same_network {
            bail!(
                "{} holds a `{}` model by its weights ({}), not `{}`",
                args.input.display(),
                kind.name(),
                inferred.summary(),
                expected.name()
            );
        }
        kind = expected;
    }
    println!(
        "{}: {} ({} keys, `{}` in dl)",
        args.input.display(),
        inferred.summary(),
        inferred.layout,
        kind.name()
    );
    for assumed in &inferred.assumed {
        println!("  assumed: {assumed}");
    }
    for note in weights.state.notes() {
        println!("  note: {note}");
    }
    DigitModel::build(kind, inferred.config.to_json(), device)?.load_state_dict(&weights.state)
}

/// Whether `path` is a checkpoint written by dl (safetensors with dl-rs metadata).
fn is_checkpoint(path: &Path) -> bool {
    dl_io::read_checkpoint_meta(path).is_ok()
}
