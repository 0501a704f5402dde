//! `cargo xtask parity`: every model on every backend against PyTorch, as a table.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dl_core::{BackendKind, Fixture, fixtures_dir};
use dl_parity::{ParityModel, run_parity};

use crate::args::flag_values;
use crate::python::workspace_root;

pub const USAGE: &str =
    "cargo xtask parity [--backend flex,ndarray,tch,...|all] [--model mlp,cnn,...|all]
                   [--fixtures DIR] [--out DIR]
  `tch` (LibTorch on the CPU) needs no set-up: when xtask was built without the `tch` feature,
  it installs LibTorch (`cargo xtask libtorch`) and reruns itself with `--features tch`.
  Other backends not compiled into xtask are listed as skipped with the cargo feature that
  enables them (e.g. `cargo run -p xtask --features wgpu -- parity --backend wgpu`); compiled
  ones that cannot start here (no GPU) are listed as not checked and fail the run.
  --fixtures: the folder holding models.safetensors (default: the workspace's fixtures/).
  --out: where parity.md and parity.json go (default: target/parity/). Both let a binary
  built here run on another machine (see `cargo xtask gpu-bundle`).";

/// What `parity` was asked to do.
#[derive(Debug, PartialEq)]
struct Options {
    backends: Vec<BackendKind>,
    models: Vec<ParityModel>,
    fixtures: PathBuf,
    out: PathBuf,
}

fn parse(all_args: &[String]) -> Result<Options> {
    let mut options = Options {
        backends: vec![BackendKind::Flex, BackendKind::NdArray],
        models: ParityModel::ALL.to_vec(),
        fixtures: fixtures_dir(),
        out: workspace_root().join("target/parity"),
    };
    for (flag, value) in flag_values(all_args, USAGE)? {
        match flag {
            "--backend" => options.backends = BackendKind::parse_list(value)?,
            "--model" => options.models = ParityModel::parse_list(value)?,
            "--fixtures" => options.fixtures = PathBuf::from(value),
            "--out" => options.out = PathBuf::from(value),
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    Ok(options)
}

pub fn run(all_args: &[String]) -> Result<()> {
    let options = parse(all_args)?;
    let wants_tch = options
        .backends
        .iter()
        .any(|b| matches!(b, BackendKind::Tch | BackendKind::TchCuda));
    if wants_tch
        && !BackendKind::Tch.is_compiled()
        && crate::libtorch::rerun_with_tch("parity", all_args)?.is_some()
    {
        return Ok(());
    }
    let fixture = Fixture::open(options.fixtures.join("models.safetensors"))?;
    let report = run_parity(&fixture, &options.models, &options.backends, None);
    let markdown = report.to_markdown();
    println!("{markdown}");

    let out = &options.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    dl_io::write_atomically(&out.join("parity.md"), markdown.as_bytes())?;
    dl_io::write_atomically(
        &out.join("parity.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!("wrote {}/parity.md and parity.json", out.display());

    let failures = report.failures().count();
    if failures > 0 {
        bail!("{failures} parity check(s) failed");
    }
    if !report.unavailable.is_empty() {
        let names: Vec<&str> = report
            .unavailable
            .iter()
            .map(|u| u.backend.as_str())
            .collect();
        bail!(
            "asked for {} but could not start it here (reason above); nothing about it was checked",
            names.join(", ")
        );
    }
    if report.rows.is_empty() {
        bail!("no backend to check: none of the requested backends is compiled in");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::strings as args;

    #[test]
    fn defaults_are_flex_ndarray_every_model_and_the_workspace_folders() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            options.backends,
            vec![BackendKind::Flex, BackendKind::NdArray]
        );
        assert_eq!(options.models, ParityModel::ALL.to_vec());
        assert_eq!(options.fixtures, fixtures_dir());
        assert!(options.out.ends_with("target/parity"));
    }

    #[test]
    fn folders_and_filters_can_be_given() {
        let options = parse(&args(&[
            "--backend",
            "flex,tch-cuda",
            "--model",
            "mlp",
            "--fixtures",
            "/carried/fixtures",
            "--out",
            "/tmp/out",
        ]))
        .unwrap();
        assert_eq!(
            options.backends,
            vec![BackendKind::Flex, BackendKind::TchCuda]
        );
        assert_eq!(options.models, vec![ParityModel::Mlp]);
        assert_eq!(options.fixtures, PathBuf::from("/carried/fixtures"));
        assert_eq!(options.out, PathBuf::from("/tmp/out"));
    }

    #[test]
    fn a_flag_without_value_or_an_unknown_flag_is_an_error() {
        let err = parse(&args(&["--out"])).unwrap_err().to_string();
        assert!(err.contains("--out needs a value"), "{err}");
        let err = parse(&args(&["--fast", "yes"])).unwrap_err().to_string();
        assert!(err.contains("unknown option --fast"), "{err}");
    }
}
