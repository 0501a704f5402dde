//! `cargo xtask parity`: every model on every backend against PyTorch, as a table.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dl_core::{BackendKind, Fixture, fixtures_dir};
use dl_parity::{ModelKind, parse_models, run_parity};

use crate::python::workspace_root;

/// Options of `cargo xtask parity`.
#[derive(Debug, PartialEq, clap::Args)]
#[command(
    after_help = "`tch` (LibTorch on the CPU) needs no set-up: when xtask was built without \
the `tch` feature, it installs LibTorch (`cargo xtask libtorch`) and reruns itself with \
`--features tch`. Other backends not compiled into xtask are listed as skipped with the cargo \
feature that enables them (e.g. `cargo run -p xtask --features wgpu -- parity --backend wgpu`); \
compiled ones that cannot start here (no GPU) are listed as not checked and fail the run. \
--fixtures and --out let a binary built here run on another machine (see `cargo xtask gpu-bundle`)."
)]
pub struct ParityArgs {
    /// Backends, comma-separated, or `all`: flex, ndarray, tch, tch-cuda, wgpu, wgpu-vulkan,
    /// cuda.
    #[arg(long = "backend", value_name = "LIST", default_value = "flex,ndarray", value_parser = backend_list)]
    backends: std::vec::Vec<BackendKind>,
    /// Models, comma-separated, or `all`.
    #[arg(long = "model", value_name = "LIST", default_value = "all", value_parser = model_list)]
    models: std::vec::Vec<ModelKind>,
    /// The folder holding models.safetensors (default: the workspace's fixtures/).
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Where parity.md and parity.json go (default: target/parity/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

// `std::vec::Vec` above: clap takes a plain `Vec<T>` for a repeatable option of single
// values; these parse one comma-separated list into the whole vector.
fn backend_list(list: &str) -> Result<Vec<BackendKind>, String> {
    BackendKind::parse_list(list).map_err(|e| e.to_string())
}

fn model_list(list: &str) -> Result<Vec<ModelKind>, String> {
    parse_models(list).map_err(|e| e.to_string())
}

impl ParityArgs {
    fn fixtures(&self) -> PathBuf {
        self.fixtures.clone().unwrap_or_else(fixtures_dir)
    }

    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| workspace_root().join("target/parity"))
    }

    /// The same options as a command line, for the rerun with `--features tch`.
    fn to_args(&self) -> Vec<OsString> {
        let names = |list: Vec<&str>| OsString::from(list.join(","));
        let mut args = vec![
            "--backend".into(),
            names(self.backends.iter().map(|b| b.name()).collect()),
            "--model".into(),
            names(self.models.iter().map(|m| m.case_name()).collect()),
        ];
        for (flag, value) in [("--fixtures", &self.fixtures), ("--out", &self.out)] {
            if let Some(path) = value {
                args.push(flag.into());
                args.push(path.into());
            }
        }
        args
    }
}

pub fn run(options: &ParityArgs) -> Result<()> {
    let wants_tch = options
        .backends
        .iter()
        .any(|b| matches!(b, BackendKind::Tch | BackendKind::TchCuda));
    if wants_tch
        && !BackendKind::Tch.is_compiled()
        && crate::libtorch::rerun_with_tch("parity", &options.to_args())?.is_some()
    {
        return Ok(());
    }
    let fixture = Fixture::open(options.fixtures().join("models.safetensors"))?;
    let report = run_parity(&fixture, &options.models, &options.backends, None);
    let markdown = report.to_markdown();
    println!("{markdown}");

    let out = &options.out();
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

    fn parse(args: &[&str]) -> Result<ParityArgs, clap::Error> {
        crate::parse_args(args)
    }

    #[test]
    fn defaults_are_flex_ndarray_every_model_and_the_workspace_folders() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            options.backends,
            vec![BackendKind::Flex, BackendKind::NdArray]
        );
        assert_eq!(options.models, dl_parity::PARITY_MODELS.to_vec());
        assert_eq!(options.fixtures(), fixtures_dir());
        assert!(options.out().ends_with("target/parity"));
    }

    #[test]
    fn folders_and_filters_can_be_given() {
        let options = parse(&[
            "--backend",
            "flex,tch-cuda",
            "--model",
            "mlp",
            "--fixtures",
            "/carried/fixtures",
            "--out",
            "/tmp/out",
        ])
        .unwrap();
        assert_eq!(
            options.backends,
            vec![BackendKind::Flex, BackendKind::TchCuda]
        );
        assert_eq!(options.models, vec![ModelKind::Mlp]);
        assert_eq!(options.fixtures(), PathBuf::from("/carried/fixtures"));
        assert_eq!(options.out(), PathBuf::from("/tmp/out"));
        assert_eq!(
            parse(&["--backend", "all"]).unwrap().backends,
            BackendKind::ALL
        );
    }

    #[test]
    fn the_tch_rerun_gets_the_same_options() {
        for args in [
            &[][..],
            &["--backend", "tch", "--model", "mlp,lstm", "--out", "/tmp/o"],
            &["--backend", "all", "--fixtures", "/f"],
        ] {
            let options = parse(args).unwrap();
            let again: Vec<String> = options
                .to_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let again: Vec<&str> = again.iter().map(String::as_str).collect();
            assert_eq!(parse(&again).unwrap(), options, "{args:?} -> {again:?}");
        }
    }

    #[test]
    fn a_flag_without_value_an_unknown_flag_or_name_is_a_usage_error() {
        let err = parse(&["--out"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue, "{err}");
        assert!(err.to_string().contains("--out"), "{err}");
        let err = parse(&["--fast", "yes"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument, "{err}");
        assert!(err.to_string().contains("--fast"), "{err}");
        let err = parse(&["--backend", "flex,tpu"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
        assert!(err.to_string().contains("tpu"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
