//! `dl info`: what a weights file holds. A dl checkpoint: its configuration, progress and
//! parameter counts per layer. Any other (PyTorch `.pt`/`.pth`, safetensors, ONNX): every
//! tensor with its shape and dtype, the parameter count, and the network the shapes are with
//! its inferred sizes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use safetensors::SafeTensors;

use crate::cli::InfoArgs;
use crate::weights;

/// Run `dl info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    if dl_io::read_checkpoint_meta(&args.checkpoint).is_ok() {
        checkpoint(args)
    } else {
        weights_file(args)
    }
}

/// A dl checkpoint.
fn checkpoint(args: &InfoArgs) -> Result<()> {
    let path = &args.checkpoint;
    let meta = dl_io::read_checkpoint_meta(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    // Layer = PyTorch key without its last part (`fc1.weight` -> `fc1`), sorted by name.
    let mut layers: BTreeMap<String, usize> = BTreeMap::new();
    let mut optimizer_bytes = 0;
    for (name, view) in file.tensors() {
        if name == "optimizer" {
            optimizer_bytes = view.data().len();
        } else if let Some(key) = name.strip_prefix("model.") {
            let layer = key.rsplit_once('.').map_or(key, |(l, _)| l).to_string();
            *layers.entry(layer).or_default() += view.shape().iter().product::<usize>();
        }
    }
    let total: usize = layers.values().sum();
    if args.json {
        let value = serde_json::json!({
            "model": meta.model,
            "model_config": meta.model_config,
            "training_config": meta.training_config,
            "epoch": meta.epoch,
            "step": meta.step,
            "parameters": total,
            "layers": layers,
            "optimizer_state_bytes": optimizer_bytes,
        });
        println!("{value}");
        return Ok(());
    }
    println!("checkpoint: {}", path.display());
    println!("model: {}", meta.model);
    println!("model config: {}", meta.model_config);
    println!("training config: {}", meta.training_config);
    println!("progress: epoch {}, step {}", meta.epoch, meta.step);
    println!("optimizer state: {optimizer_bytes} bytes");
    println!("parameters per layer:");
    let width = layers.keys().map(String::len).max().unwrap_or(5).max(5);
    for (layer, count) in &layers {
        println!("  {layer:<width$} {count:>10}");
    }
    println!("  {:<width$} {total:>10}", "total");
    Ok(())
}

/// A PyTorch, safetensors or ONNX file.
fn weights_file(args: &InfoArgs) -> Result<()> {
    let path: &Path = &args.checkpoint;
    let read = weights::read(path, &args.infer)?;
    let state = &read.state;
    let shapes = state.shapes();
    let parameters: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    let inferred = state.infer_architecture(&weights::infer_options(&args.infer));
    if args.json {
        let tensors: Vec<serde_json::Value> = shapes
            .iter()
            .map(|(key, shape)| {
                serde_json::json!({"key": key, "shape": shape, "dtype": state.file_dtype(key)})
            })
            .collect();
        let (architecture, error) = match &inferred {
            Ok(found) => {
                let sizes: serde_json::Map<String, serde_json::Value> = found
                    .sizes
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                let value = serde_json::json!({
                    "name": found.architecture.type_name(),
                    "model": found.architecture.name(),
                    "layout": found.layout,
                    "summary": found.summary(),
                    "sizes": sizes,
                    "config": found.config.to_json(),
                    "assumed": found.assumed,
                });
                (value, serde_json::Value::Null)
            }
            Err(e) => (serde_json::Value::Null, e.to_string().into()),
        };
        let value = serde_json::json!({
            "file": path.display().to_string(),
            "format": read.format,
            "tensors": tensors,
            "parameters": parameters,
            "architecture": architecture,
            "architecture_error": error,
            "notes": state.notes(),
        });
        println!("{value}");
        return Ok(());
    }
    println!("file: {} ({})", path.display(), read.format);
    println!("tensors: {}", shapes.len());
    let width = shapes.keys().map(String::len).max().unwrap_or(3).max(3);
    for (key, shape) in &shapes {
        let shape = format!("{shape:?}");
        println!("  {key:<width$} {shape:<16} {}", state.file_dtype(key));
    }
    println!("parameters: {parameters}");
    match &inferred {
        Ok(found) => {
            println!("architecture: {}", found.summary());
            println!(
                "  layout: {} keys; `dl` model: {}",
                found.layout,
                found.architecture.name()
            );
            for assumed in &found.assumed {
                println!("  assumed: {assumed}");
            }
        }
        Err(e) => println!("architecture: not recognised: {e}"),
    }
    for note in state.notes() {
        println!("note: {note}");
    }
    Ok(())
}
