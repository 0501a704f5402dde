//! PNG figures: loss and accuracy (or MAE) curves, the forecast against the truth, and
//! attention heat maps. Drawn with plotters into a
//! pixel buffer, labelled with the committed DejaVu Sans Mono font (no system fonts needed),
//! encoded with `png` and written atomically.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::metrics::EpochMetrics;
use crate::output::RunFolder;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is committed and known to parse; a failure would only lose the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draw a `width x height` figure with `draw` and write it to `path` as PNG.
fn render(
    path: &Path,
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| anyhow!("encoding {}: {e}", path.display()))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| anyhow!("encoding {}: {e}", path.display()))?;
    }
    Ok(dl_io::write_atomically(path, &png_bytes)?)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// `loss.png` and `accuracy.png` of a run: training and validation values per epoch; a
/// forecast run draws `mae.png` (ppm) instead of `accuracy.png`.
pub fn curves(folder: &RunFolder, history: &[EpochMetrics], label: &str) -> Result<()> {
    let epochs = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let forecast = history.iter().any(|m| m.val_mae.is_some());
    line_chart(
        &folder.file("loss.png"),
        &if forecast {
            format!("{label}: mean squared error (scaled)")
        } else {
            format!("{label}: cross-entropy loss")
        },
        "loss",
        &[
            ("train", epochs(|m| m.train_loss), BLUE),
            ("validation", epochs(|m| m.val_loss), RED),
        ],
    )?;
    if forecast {
        return line_chart(
            &folder.file("mae.png"),
            &format!("{label}: mean absolute error"),
            "MAE (ppm)",
            &[
                ("train", epochs(|m| m.train_mae.unwrap_or(f64::NAN)), BLUE),
                ("validation", epochs(|m| m.val_mae.unwrap_or(f64::NAN)), RED),
            ],
        );
    }
    line_chart(
        &folder.file("accuracy.png"),
        &format!("{label}: accuracy"),
        "accuracy (%)",
        &[
            (
                "train",
                epochs(|m| m.train_accuracy.unwrap_or(f64::NAN) * 100.0),
                BLUE,
            ),
            (
                "validation",
                epochs(|m| m.val_accuracy.unwrap_or(f64::NAN) * 100.0),
                RED,
            ),
        ],
    )
}

/// A named series of `(x, y)` points drawn in one colour.
pub type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// A line chart of named series over epochs.
pub fn line_chart(path: &Path, title: &str, y_label: &str, series: &[Series<'_>]) -> Result<()> {
    xy_chart(path, title, ("epoch", y_label), None, true, series)
}

/// The forecast of the test weeks against the truth: `forecast.png`. `x` is the year.
pub fn forecast(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let x = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (lo, hi) = x.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let range = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    xy_chart(
        path,
        title,
        ("year", "CO2 (ppm)"),
        Some(range),
        false,
        series,
    )
}

/// A chart of named series; `x_range` defaults to 0 up to the largest x; `markers` draws a
/// dot at each point.
fn xy_chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    x_range: Option<(f64, f64)>,
    markers: bool,
    series: &[Series<'_>],
) -> Result<()> {
    let points = series.iter().flat_map(|s| s.1.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        if y.is_finite() {
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.08).max(1e-3);
    render(path, 800, 500, |root| {
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                match x_range {
                    Some((lo, hi)) => lo..hi.max(lo + 1e-9),
                    None => 0.0..x_max + 0.5,
                },
                (y_min - pad)..(y_max + pad),
            )
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for (name, values, colour) in series {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(
                    values.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            if markers {
                chart
                    .draw_series(values.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

/// Attention maps of one digit: `maps[layer][head]` is a `tokens x tokens` row-major matrix
/// (query rows, key columns), drawn as a grid of heat maps (one row per layer), the digit
/// beside them.
pub fn attention(
    path: &Path,
    digit: &[u8],
    caption: &str,
    maps: &[Vec<Vec<f32>>],
    tokens: usize,
) -> Result<()> {
    let layers = maps.len().max(1);
    let heads = maps.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let cell = 150u32;
    let label_h = 22u32;
    let left = 190u32;
    let top = 50u32;
    let width = left + heads as u32 * cell + COLOUR_BAR_WIDTH;
    let height = top + layers as u32 * (cell + label_h) + 30;
    // One colour scale for every map, so that maps compare: 0 to the largest weight drawn.
    let max = maps
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(f32::MIN_POSITIVE, f32::max);
    render(path, width, height, |root| {
        root.fill(&WHITE).map_err(plot_err)?;
        let font = ("sans-serif", 18).into_font();
        root.draw(&Text::new(caption.to_string(), (10, 12), font.clone()))
            .map_err(plot_err)?;
        // The digit, 5x.
        let scale = 5i32;
        let (dx, dy) = (10i32, top as i32 + label_h as i32);
        root.draw(&Text::new(
            "input digit".to_string(),
            (dx, top as i32),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(plot_err)?;
        for (i, &p) in digit.iter().enumerate() {
            let (r, c) = ((i / 28) as i32, (i % 28) as i32);
            let grey = 255 - p;
            root.draw(&Rectangle::new(
                [
                    (dx + c * scale, dy + r * scale),
                    (dx + (c + 1) * scale, dy + (r + 1) * scale),
                ],
                RGBColor(grey, grey, grey).filled(),
            ))
            .map_err(plot_err)?;
        }
        // Patch grid lines: the transformer's tokens are the 7x7 patches, numbered row-major.
        for k in 0..=4 {
            let o = k * 7 * scale;
            let style = RED.mix(0.5).stroke_width(1);
            root.draw(&PathElement::new(
                vec![(dx + o, dy), (dx + o, dy + 28 * scale)],
                style,
            ))
            .map_err(plot_err)?;
            root.draw(&PathElement::new(
                vec![(dx, dy + o), (dx + 28 * scale, dy + o)],
                style,
            ))
            .map_err(plot_err)?;
        }
        let px = ((cell - 14) as usize / tokens.max(1)) as i32;
        for (l, layer) in maps.iter().enumerate() {
            for (h, map) in layer.iter().enumerate() {
                let x0 = (left + h as u32 * cell) as i32;
                let y0 = (top + l as u32 * (cell + label_h)) as i32;
                root.draw(&Text::new(
                    format!("layer {} head {}", l + 1, h + 1),
                    (x0, y0),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(plot_err)?;
                for (i, &w) in map.iter().enumerate() {
                    let (q, k) = ((i / tokens) as i32, (i % tokens) as i32);
                    let (x, y) = (x0 + k * px, y0 + label_h as i32 + q * px);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + px, y + px)],
                        heat(w / max).filled(),
                    ))
                    .map_err(plot_err)?;
                }
            }
        }
        colour_bar(
            root,
            (left + heads as u32 * cell + 14) as i32,
            top as i32 + label_h as i32,
            max,
        )?;
        root.draw(&Text::new(
            "rows: query patch, columns: key patch (0..15, row-major); colour: attention weight, one scale for all maps".to_string(),
            (10, height as i32 - 22),
            ("sans-serif", 12).into_font(),
        ))
        .map_err(plot_err)?;
        Ok(())
    })
}

/// Room right of the attention maps for the colour bar and its labels.
const COLOUR_BAR_WIDTH: u32 = 110;
/// Height of the colour bar in pixels (one per step of the scale).
const COLOUR_BAR_HEIGHT: i32 = 136;

/// A vertical colour bar at `(x, y)`: [`heat`] from `max` (top) to 0 (bottom), labelled at
/// both ends and the middle.
fn colour_bar(root: &Area<'_>, x: i32, y: i32, max: f32) -> Result<()> {
    let width = 18;
    for row in 0..COLOUR_BAR_HEIGHT {
        let v = 1.0 - row as f32 / (COLOUR_BAR_HEIGHT - 1) as f32;
        root.draw(&Rectangle::new(
            [(x, y + row), (x + width, y + row + 1)],
            heat(v).filled(),
        ))
        .map_err(plot_err)?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + width, y + COLOUR_BAR_HEIGHT)],
        BLACK.stroke_width(1),
    ))
    .map_err(plot_err)?;
    let font = ("sans-serif", 12).into_font();
    for (label, dy) in [
        (max, 0),
        (max / 2.0, COLOUR_BAR_HEIGHT / 2),
        (0.0, COLOUR_BAR_HEIGHT),
    ] {
        root.draw(&Text::new(
            format!("{label:.2}"),
            (x + width + 5, y + dy - 6),
            font.clone(),
        ))
        .map_err(plot_err)?;
    }
    root.draw(&Text::new("weight".to_string(), (x, y - 16), font))
        .map_err(plot_err)?;
    Ok(())
}

/// White (0) through orange to dark red (1).
fn heat(v: f32) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f32, b: f32, t: f32| (a + (b - a) * t).round() as u8;
    if v < 0.5 {
        let t = v * 2.0;
        RGBColor(255, lerp(255.0, 165.0, t), lerp(255.0, 0.0, t))
    } else {
        let t = (v - 0.5) * 2.0;
        RGBColor(lerp(255.0, 128.0, t), lerp(165.0, 0.0, t), 0)
    }
}
