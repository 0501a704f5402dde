//! `dl info`: a checkpoint's configuration, progress and parameter counts per layer.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use safetensors::SafeTensors;

use crate::cli::InfoArgs;

/// Run `dl info`.
pub fn run(args: &InfoArgs) -> Result<()> {
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
