//! `dl attention`: heat maps of a Transformer's attention weights for one digit.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use burn::tensor::activation::softmax;

use crate::cli::AttentionArgs;
use crate::commands::eval::load_model;
use crate::data::{Batcher, Digits, Split, default_data_dir};
use crate::model::DigitModel;
use crate::plot;

/// Run `dl attention`.
pub fn run(args: &AttentionArgs) -> Result<()> {
    let (model, device) = load_model(&args.checkpoint, &args.data)?;
    let dir = args.data.data.clone().unwrap_or_else(default_data_dir);
    let digits = Digits::load(&dir, args.data.split, None)?;
    let caption = write(
        &model,
        &digits,
        args.data.split,
        args.index,
        &args.out,
        &device,
    )?;
    println!("{caption}: wrote {}", args.out.display());
    Ok(())
}

/// Draw the attention maps of digit `index` of `digits` to `out`; returns the caption.
pub fn write(
    model: &DigitModel,
    digits: &Digits,
    split: Split,
    index: usize,
    out: &Path,
    device: &burn::tensor::Device,
) -> Result<String> {
    if index >= digits.len() {
        bail!(
            "--index {index}: the {split:?} split holds {} digits",
            digits.len()
        );
    }
    let batch = Batcher::batch(digits, &[index]);
    let (logits, weights) = model.attention(&batch.images, 1, device)?;
    let probabilities: Vec<f32> = softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("reading probabilities: {e:?}"))?;
    let predicted = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(c, _)| c);
    let mut maps = Vec::new();
    let mut tokens = 0;
    for layer in weights {
        let [_, heads, queries, keys] = layer.dims();
        tokens = keys;
        let values: Vec<f32> = layer
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("reading attention weights: {e:?}"))?;
        maps.push(
            (0..heads)
                .map(|h| values[h * queries * keys..(h + 1) * queries * keys].to_vec())
                .collect(),
        );
    }
    let caption = format!(
        "Transformer attention, {split:?} digit {index}: label {}, predicted {predicted} (p = {:.3})",
        digits.labels[index], probabilities[predicted]
    )
    .replace("Test", "test")
    .replace("Train", "train");
    plot::attention(out, digits.image(index), &caption, &maps, tokens)?;
    Ok(caption)
}
