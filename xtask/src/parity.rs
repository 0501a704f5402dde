//! `cargo xtask parity`: every model on every backend against PyTorch, as a table.

use anyhow::{Context, Result, bail};
use dl_core::{BackendKind, Fixture, fixtures_dir};
use dl_parity::{ParityModel, run_parity};

use crate::python::workspace_root;

pub const USAGE: &str =
    "cargo xtask parity [--backend flex,ndarray,tch,...|all] [--model mlp,cnn,...|all]
  `tch` (LibTorch on the CPU) needs no set-up: when xtask was built without the `tch` feature,
  it installs LibTorch (`cargo xtask libtorch`) and reruns itself with `--features tch`.
  Other backends not compiled into xtask are listed as skipped with the cargo feature that
  enables them (e.g. `cargo run -p xtask --features wgpu -- parity --backend wgpu`).";

pub fn run(all_args: &[String]) -> Result<()> {
    let mut backends = vec![BackendKind::Flex, BackendKind::NdArray];
    let mut models = ParityModel::ALL.to_vec();
    let mut args = all_args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--backend" => backends = BackendKind::parse_list(value)?,
            "--model" => models = ParityModel::parse_list(value)?,
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    let wants_tch = backends
        .iter()
        .any(|b| matches!(b, BackendKind::Tch | BackendKind::TchCuda));
    if wants_tch
        && !BackendKind::Tch.is_compiled()
        && crate::libtorch::rerun_with_tch("parity", all_args)?.is_some()
    {
        return Ok(());
    }
    let fixture = Fixture::open(fixtures_dir().join("models.safetensors"))?;
    let report = run_parity(&fixture, &models, &backends, None);
    let markdown = report.to_markdown();
    println!("{markdown}");

    let out = workspace_root().join("target/parity");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("parity.md"), &markdown)?;
    std::fs::write(
        out.join("parity.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("wrote {}/parity.md and parity.json", out.display());

    let failures = report.failures().count();
    if failures > 0 {
        bail!("{failures} parity check(s) failed");
    }
    if report.rows.is_empty() {
        bail!("no backend to check: none of the requested backends is compiled in");
    }
    Ok(())
}
