//! `dl predict`: class and probabilities of digits from a split or PNG files (a forecast
//! checkpoint: `forecast.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::activation::softmax;

use crate::cli::PredictArgs;
use crate::commands::eval::load_model;
use crate::data::{Batcher, Digits, default_data_dir};

/// Run `dl predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    let (model, device) = load_model(&args.checkpoint, &args.data)?;
    if model.kind.is_forecast() {
        return crate::commands::forecast::predict(args, &model, &device);
    }
    if args.images.is_empty() && args.index.is_empty() {
        bail!("nothing to predict: give PNG files or --index N");
    }
    let mut names = Vec::new();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    if !args.index.is_empty() {
        let dir = args.data.data.clone().unwrap_or_else(default_data_dir);
        let digits = Digits::load(&dir, args.data.split, None)?;
        for &i in &args.index {
            if i >= digits.len() {
                bail!(
                    "--index {i}: the {:?} split holds {} digits (0..{})",
                    args.data.split,
                    digits.len(),
                    digits.len()
                );
            }
            names.push(format!("{:?}[{i}]", args.data.split).to_lowercase());
            pixels.extend_from_slice(digits.image(i));
            labels.push(Some(digits.labels[i]));
        }
    }
    for path in &args.images {
        names.push(path.display().to_string());
        pixels.extend(read_png_digit(path)?);
        labels.push(None);
    }
    let n = names.len();
    let digits = Digits {
        rows: 28,
        cols: 28,
        labels: vec![0; n],
        pixels,
    };
    let batch = Batcher::batch(&digits, &(0..n).collect::<Vec<_>>());
    let probabilities: Vec<f32> = softmax(model.logits(&batch.images, n, &device)?, 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading probabilities: {e:?}"))?;
    let mut results = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let row = &probabilities[i * 10..(i + 1) * 10];
        let class = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(c, _)| c);
        if args.json {
            results.push(serde_json::json!({"input": name, "class": class, "label": labels[i], "probabilities": row}));
        } else {
            let label = labels[i]
                .map(|l| format!(" (label {l})"))
                .unwrap_or_default();
            let probs: Vec<String> = row.iter().map(|p| format!("{p:.3}")).collect();
            println!(
                "{name}: class {class}{label}, probability {:.3}; all: [{}]",
                row[class],
                probs.join(", ")
            );
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(())
}

/// A 28x28 8-bit PNG (grey, grey+alpha, RGB or RGBA) as grey values, white ink on black.
fn read_png_digit(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a PNG file", path.display()))?;
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}: cannot decode the image", path.display()))?;
    if (info.width, info.height) != (28, 28) || info.bit_depth != png::BitDepth::Eight {
        bail!(
            "{}: {}x{} at {:?} bits, expected a 28x28 8-bit image",
            path.display(),
            info.width,
            info.height,
            info.bit_depth
        );
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => bail!(
            "{}: colour type {other:?}, expected grey or RGB",
            path.display()
        ),
    };
    Ok(buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| {
            let colours = if channels >= 3 { &px[..3] } else { &px[..1] };
            (colours.iter().map(|&c| u32::from(c)).sum::<u32>() / colours.len() as u32) as u8
        })
        .collect())
}
