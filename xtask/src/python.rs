//! The git-ignored Python environment that holds PyTorch for making reference data.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// PyTorch version the fixtures are made with; burn-tch 0.22.1 also expects 2.9.0.
pub const TORCH_VERSION: &str = "2.9.0";

/// The packages the fixture scripts import, pinned.
const PACKAGES: &[&str] = &[
    "torch==2.9.0",
    "safetensors==0.7.0",
    "numpy==2.4.6",
    "packaging==26.4",
    // torch.onnx.export (the TorchScript exporter, fixtures/gen/onnx_codegen.py) needs it.
    "onnx==1.23.2",
];

/// The workspace root (the folder above `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

/// `cargo xtask venv`: make sure `.venv` holds the pinned packages and print its interpreter
/// (CI runs this before the tests, so that the PyTorch-side checks run instead of failing).
pub fn run_command() -> Result<()> {
    let python = ensure_venv()?;
    println!("{}", python.display());
    Ok(())
}

/// Path to the virtual environment's interpreter, creating the environment and installing
/// the packages when they are missing. Idempotent: a second call only checks versions.
pub fn ensure_venv() -> Result<PathBuf> {
    let root = workspace_root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("creating {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating the virtual environment (is python3 with venv installed?)")?;
    }
    let check = format!(
        "import torch, safetensors.torch, numpy; assert torch.__version__.split('+')[0] == '{TORCH_VERSION}', torch.__version__"
    );
    let ok = Command::new(&python)
        .arg("-c")
        .arg(&check)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "installing {} (a CUDA build of about 6.7 GB; it runs on CPU)",
            PACKAGES.join(" ")
        );
        pip_install(&python, &[], PACKAGES).context("installing PyTorch into .venv")?;
    }
    Ok(python)
}

/// `python -m pip install --quiet --disable-pip-version-check <options> <packages>`.
pub fn pip_install(python: &Path, options: &[&str], packages: &[&str]) -> Result<()> {
    pip(python, "install", options, packages)
}

/// `python -m pip <verb> --quiet --disable-pip-version-check <options> <packages>`.
pub fn pip(python: &Path, verb: &str, options: &[&str], packages: &[&str]) -> Result<()> {
    run(Command::new(python)
        .args(["-m", "pip", verb, "--quiet", "--disable-pip-version-check"])
        .args(options)
        .args(packages))
}

/// Run a command, failing with its command line when it exits non-zero.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
