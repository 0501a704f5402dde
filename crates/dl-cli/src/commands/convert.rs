//! `dl convert`: weights between dl checkpoints, PyTorch state dicts (.pt/.pth/.safetensors)
//! and ONNX, through dl-io.

use std::path::Path;

use anyhow::{Result, bail};
use dl_core::BackendKind;
use dl_io::CheckpointMeta;

use crate::cli::ConvertArgs;
use crate::model::{DigitModel, default_config};

/// Run `dl convert`.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let device = BackendKind::Flex.device()?;
    let model = if is_checkpoint(&args.input) {
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
        if !args.input.exists() {
            bail!("input file {} does not exist", args.input.display());
        }
        let Some(kind) = args.model else {
            bail!(
                "{} is not a dl checkpoint: name the model of its weights with --model (mlp, cnn, image-cnn, lstm, transformer, scratch, forecast)",
                args.input.display()
            );
        };
        DigitModel::build(kind, default_config(kind), &device)?.load_weights(&args.input)?
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

/// Whether `path` is a checkpoint written by dl (safetensors with dl-rs metadata).
fn is_checkpoint(path: &Path) -> bool {
    dl_io::read_checkpoint_meta(path).is_ok()
}
