//! What a checkpoint's model configuration must satisfy before `dl` builds the model: it fits
//! the digits (input size, image size and channels, sequence shape, ten classes) or, for
//! `forecast`, the weekly series (one value in, one out), and it
//! describes no more values than the file's weights hold. A configuration is read from a file
//! a user may have written with `dl_io::save_checkpoint` for other data, or edited by hand: it
//! must neither make a model fail inside Burn on a digit nor ask for petabytes.

use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::SafeTensors;

use dl_models::ModelConfig;

use crate::config::ModelKind;
use dl_models::{DIGIT_CLASSES, DIGIT_PATCHES};

/// Check `config` (the configuration in checkpoint `path`, of model `kind`) against the
/// digits and against the file's weights. The errors name the setting, its value and what was
/// expected; the caller adds the file's name.
pub fn check_checkpoint(path: &Path, kind: ModelKind, config: &ModelConfig) -> Result<()> {
    check_fits_digits(kind, config)?;
    let held = weights_held(path)?;
    let described = config.num_params()?;
    if described > held {
        bail!(
            "its `{}` configuration describes {described} parameters but the file's weights hold {held}: expected a configuration that matches the weights",
            kind.name()
        );
    }
    if let ModelConfig::Transformer(c) = config {
        // The positional table is a constant, not a weight; bound it by the weights too.
        let table = c.max_seq_length.checked_mul(c.d_model);
        if table.is_none_or(|t| t > held) {
            bail!(
                "its `transformer` configuration asks for a positional table of max_seq_length {} x d_model {} values, more than the {held} values the file's weights hold: expected a max_seq_length near the {} patches of a digit",
                c.max_seq_length,
                c.d_model,
                DIGIT_PATCHES
            );
        }
    }
    Ok(())
}

/// Values in the file's model tensors (`model.*`), from the safetensors header.
fn weights_held(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("not a safetensors file: {e}"))?;
    let mut held = 0usize;
    for (name, info) in metadata.tensors() {
        if name.starts_with("model.") {
            let count = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .with_context(|| format!("tensor `{name}` has an overflowing shape"))?;
            held = held.saturating_add(count);
        }
    }
    Ok(held)
}

/// The digits are 28x28 grey images of ten classes; each model reads one in the shape
/// [`ModelKind::example_shape`] gives (`forecast`: one value per week).
fn check_fits_digits(kind: ModelKind, config: &ModelConfig) -> Result<()> {
    let shape = kind.example_shape(1);
    let input = format!("its input of shape {shape:?} per example");
    let mut problems: Vec<String> = Vec::new();
    let mut expect = |what: &str, actual: usize, expected: usize, why: &str| {
        if actual != expected {
            problems.push(format!("{what} is {actual}, expected {expected} ({why})"));
        }
    };
    let last = shape.last().copied().unwrap_or(0);
    let mut extra = Vec::new();
    match config {
        ModelConfig::Mlp(c) => {
            expect("input_size", c.input_size, last, &input);
            expect("num_classes", c.num_classes, DIGIT_CLASSES, "digits 0-9");
        }
        ModelConfig::Cnn(c) => {
            expect("in_channels", c.in_channels, shape[0], &input);
            expect("image_size", c.image_size, last, &input);
            expect("num_classes", c.num_classes, DIGIT_CLASSES, "digits 0-9");
        }
        ModelConfig::Lstm(c) => {
            expect("input_size", c.input_size, last, &input);
            expect("num_classes", c.num_classes, DIGIT_CLASSES, "digits 0-9");
        }
        ModelConfig::Transformer(c) => {
            match c.patch_size {
                Some(size) => expect("patch_size", size, last, &input),
                None => extra.push(format!(
                    "patch_size is null (a token-id model), expected {last} ({input})"
                )),
            }
            if c.max_seq_length < shape[0] {
                extra.push(format!(
                    "max_seq_length is {}, expected at least {} ({input})",
                    c.max_seq_length, shape[0]
                ));
            }
            expect("num_classes", c.num_classes, DIGIT_CLASSES, "digits 0-9");
        }
        ModelConfig::Forecast(c) => {
            expect("input_size", c.input_size, last, "one CO2 value per week");
            expect("horizon", c.horizon, 1, "next week's value");
        }
        ModelConfig::Scratch(c) => {
            let first = c.layer_sizes.first().copied().unwrap_or(0);
            let out = c.layer_sizes.last().copied().unwrap_or(0);
            expect("layer_sizes[0]", first, last, &input);
            expect("the last layer size", out, DIGIT_CLASSES, "digits 0-9");
        }
    }
    problems.extend(extra);
    if !problems.is_empty() && kind.is_forecast() {
        bail!(
            "its `forecast` configuration does not fit the weekly CO2 series: {}",
            problems.join("; ")
        );
    }
    if !problems.is_empty() {
        bail!(
            "its `{}` configuration does not fit the 28x28 digits of ten classes: {}",
            kind.name(),
            problems.join("; ")
        );
    }
    Ok(())
}
