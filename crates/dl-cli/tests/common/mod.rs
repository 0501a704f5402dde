//! Running the real `dl` binary on the committed digits.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `dl` with `args`; returns its output.
pub fn dl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dl"))
        .args(args)
        .output()
        .expect("the dl binary runs")
}

/// stdout and stderr together, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Assert success and return the stdout.
pub fn ok(args: &[&str]) -> String {
    let output = dl(args);
    assert!(
        output.status.success(),
        "dl {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Assert a failure with exit status `code` whose stderr contains every one of `needles`.
pub fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let output = dl(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "dl {args:?}:\n{}",
        text(&output)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "dl {args:?}: stderr lacks `{needle}`:\n{}",
            text(&output)
        );
    }
    stderr
}

/// Train `model` for one epoch on 64 digits into `out`, with extra arguments.
pub fn train_tiny(model: &str, out: &Path, extra: &[&str]) -> String {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "train",
        model,
        "--epochs",
        "1",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--out",
        out,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name` as a string.
pub fn path(dir: &Path, name: &str) -> String {
    let p: PathBuf = dir.join(name);
    p.to_str().unwrap().to_string()
}

/// The pixels of an 8-bit RGB PNG file, with its width and height.
pub fn png_rgb(path: &Path) -> (Vec<[u8; 3]>, u32, u32) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (pixels, info.width, info.height)
}

/// How many pixels of a chart have exactly `colour`. A series drawn across the plot area
/// leaves hundreds; its legend sample alone leaves a few dozen.
pub fn pixels_of(pixels: &[[u8; 3]], colour: [u8; 3]) -> usize {
    pixels.iter().filter(|&&p| p == colour).count()
}
