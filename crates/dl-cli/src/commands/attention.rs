//! `dl attention`: heat maps of a Transformer's attention weights for one digit.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::activation::softmax;

use crate::cli::AttentionArgs;
use crate::commands::eval::load_model;
use crate::data::{Batcher, Digits, Split, default_data_dir};
use crate::model::DigitModel;
use crate::plot;

/// Most attention maps (layers x heads) one picture holds: 150 px each, so 64 maps make a
/// picture of at most ~10,000 x 10,000 pixels.
const MAX_MAPS: usize = 64;

/// Run `dl attention`.
pub fn run(args: &AttentionArgs) -> Result<()> {
    let (model, device) = load_model(&args.checkpoint, &args.data)?;
    let dir = args.data.data.clone().unwrap_or_else(default_data_dir);
    let digits = Digits::load(&dir, args.data.split, None)?;
    let drawn = write(
        &model,
        &digits,
        args.data.split,
        args.index,
        &args.out,
        &device,
    )
    .with_context(|| format!("checkpoint {}", args.checkpoint.display()))?;
    if args.json {
        let value = serde_json::json!({
            "checkpoint": args.checkpoint,
            "split": format!("{:?}", args.data.split).to_lowercase(),
            "index": drawn.index,
            "label": drawn.label,
            "predicted": drawn.predicted,
            "probabilities": drawn.probabilities,
            "tokens": drawn.tokens,
            "weights": drawn.maps,
            "out": args.out,
        });
        println!("{value}");
    } else {
        println!("{}: wrote {}", drawn.caption, args.out.display());
    }
    Ok(())
}

/// What [`write`] drew.
pub struct Drawn {
    /// The picture's caption.
    pub caption: String,
    /// Index of the digit drawn.
    pub index: usize,
    /// The digit's label.
    pub label: u8,
    /// The predicted class.
    pub predicted: usize,
    /// The probability of every class.
    pub probabilities: Vec<f32>,
    /// Tokens (patches) per sequence.
    pub tokens: usize,
    /// `maps[layer][head]`: the `tokens x tokens` attention weights, query-major, as drawn.
    pub maps: Vec<Vec<Vec<f32>>>,
}

/// Draw the attention maps of digit `index` of `digits` to `out`; with no index, of the first
/// digit the model classifies correctly.
pub fn write(
    model: &DigitModel,
    digits: &Digits,
    split: Split,
    index: Option<usize>,
    out: &Path,
    device: &burn::tensor::Device,
) -> Result<Drawn> {
    let index = match index {
        Some(index) if index >= digits.len() => bail!(
            "--index {index}: the {split:?} split holds {} digits",
            digits.len()
        ),
        Some(index) => index,
        None => first_correct(model, digits, split, device)?,
    };
    let batch = Batcher::batch(digits, &[index]);
    let (logits, weights) = model.attention(&batch.images, 1, device)?;
    let maps_drawn: usize = weights.iter().map(|w| w.dims()[1]).sum();
    if weights.is_empty() || maps_drawn > MAX_MAPS {
        bail!(
            "the transformer has {} layers of {} heads: expected 1 to {MAX_MAPS} attention maps to draw, got {maps_drawn}",
            weights.len(),
            weights.first().map_or(0, |w| w.dims()[1])
        );
    }
    let probabilities: Vec<f32> = softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("reading probabilities: {e:?}"))?;
    let predicted = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(c, _)| c);
    let mut maps: Vec<Vec<Vec<f32>>> = Vec::new();
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
    Ok(Drawn {
        caption,
        index,
        label: digits.labels[index],
        predicted,
        probabilities,
        tokens,
        maps,
    })
}

/// Digits classified per forward pass while looking for a correct one.
const SEARCH_BATCH: usize = 64;

/// Index of the first digit of `digits` that `model` classifies correctly.
fn first_correct(
    model: &DigitModel,
    digits: &Digits,
    split: Split,
    device: &burn::tensor::Device,
) -> Result<usize> {
    let indices: Vec<usize> = (0..digits.len()).collect();
    for chunk in indices.chunks(SEARCH_BATCH) {
        let batch = Batcher::batch(digits, chunk);
        let (logits, _) = model.attention(&batch.images, chunk.len(), device)?;
        let predicted = crate::scoring::predictions(logits);
        if let Some(at) = chunk
            .iter()
            .zip(&predicted)
            .position(|(&i, &p)| usize::from(digits.labels[i]) == p)
        {
            return Ok(chunk[at]);
        }
    }
    bail!(
        "the model classifies none of the {} digits of the {split:?} split correctly: name one with --index",
        digits.len()
    )
}
