//! `cargo xtask data --co2`: fetch the weekly Mauna Loa CO2 record that ships inside the
//! statsmodels wheel (`statsmodels/datasets/co2/co2.csv`, public domain), check the wheel's and
//! the csv's sha256, and write the csv for `dl train forecast`.
//!
//! Options:
//! - `--out FILE` (default `fixtures/co2/co2.csv`, the committed copy).
//! - `--wheel PATH`: use an already downloaded wheel instead of `pip download`.
//!
//! The download is `python -m pip download --no-deps statsmodels==0.14.5` for CPython 3.11 on
//! manylinux x86_64 (any wheel of the release holds the same csv). `fixtures/co2/README.md`
//! gives the provenance.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::python::workspace_root;

/// The statsmodels release the csv comes from.
const VERSION: &str = "0.14.5";
/// The wheel `pip download` fetches for [`VERSION`].
const WHEEL: &str = "statsmodels-0.14.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl";
/// sha256 of [`WHEEL`] as PyPI served it when this was written.
const WHEEL_SHA256: &str = "f402fc793458dd6d96e099acb44cd1de1428565bf7ef3030878a8daff091f08a";
/// The csv's path inside the wheel.
const MEMBER: &str = "statsmodels/datasets/co2/co2.csv";
/// sha256 of the csv (the committed `fixtures/co2/co2.csv`).
const CSV_SHA256: &str = "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f";

/// Entry point of `cargo xtask data --co2 [--out FILE] [--wheel PATH]` (its options are parsed
/// with the other `data` options, `data.rs`).
pub fn run(out: Option<PathBuf>, wheel: Option<PathBuf>) -> Result<()> {
    let root = workspace_root();
    let out = out.unwrap_or_else(|| root.join("fixtures/co2/co2.csv"));
    let wheel = match wheel {
        Some(path) => path,
        None => pip_download(&root.join("target/co2-download"))?,
    };
    let bytes = std::fs::read(&wheel).with_context(|| format!("reading {}", wheel.display()))?;
    check_sha256(&bytes, WHEEL_SHA256, WHEEL)?;
    let csv = extract(&bytes)?;
    check_sha256(&csv, CSV_SHA256, MEMBER)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    dl_io::write_atomically(&out, &csv)?;
    println!(
        "wrote {} ({} lines) from statsmodels {VERSION} to {}",
        MEMBER,
        csv.iter().filter(|&&b| b == b'\n').count(),
        out.display()
    );
    Ok(())
}

/// `pip download --no-deps statsmodels==VERSION` (the cp311 manylinux wheel) into `dir`
/// with the workspace's `.venv` python when there is one, else `python3`; returns the wheel's
/// path.
fn pip_download(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let venv = workspace_root().join(".venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let package = format!("statsmodels=={VERSION}");
    let dest = dir.to_string_lossy().into_owned();
    let options = [
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--platform",
        "manylinux2014_x86_64",
        "-d",
        dest.as_str(),
    ];
    crate::python::pip(&python, "download", &options, &[package.as_str()])
        .with_context(|| format!("downloading the statsmodels {VERSION} wheel with pip"))?;
    Ok(dir.join(WHEEL))
}

fn check_sha256(bytes: &[u8], expected: &str, what: &str) -> Result<()> {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if hex != expected {
        bail!("{what} has sha256 {hex}, expected {expected}: refusing a changed file");
    }
    Ok(())
}

/// The bytes of [`MEMBER`] in the wheel (a zip archive).
fn extract(wheel: &[u8]) -> Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel))
        .context("the wheel is not a zip archive")?;
    let mut file = archive
        .by_name(MEMBER)
        .with_context(|| format!("the wheel lacks {MEMBER}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("unpacking {MEMBER}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_committed_csv_has_the_pinned_sha256() {
        let path = workspace_root().join("fixtures/co2/co2.csv");
        let bytes = std::fs::read(&path).unwrap();
        check_sha256(&bytes, CSV_SHA256, MEMBER).unwrap();
        let err = check_sha256(b"changed", CSV_SHA256, MEMBER).unwrap_err();
        assert!(err.to_string().contains("refusing a changed file"), "{err}");
    }
}
