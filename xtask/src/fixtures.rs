//! `cargo xtask fixtures`: run every generator script in `fixtures/gen/` with PyTorch.

use std::process::Command;

use anyhow::{Result, bail};

use crate::python::{self, ensure_venv, workspace_root};

/// The generator scripts in `fixtures/gen/`, in the order they must run (`pt_files` reads
/// what `models` wrote). Other scripts there are checkers that tests call with arguments.
const GENERATORS: &[&str] = &[
    "losses",
    "optim",
    "layers",
    "models",
    "forecaster",
    "onnx_codegen",
    "onnx_models",
    "pt_files",
    "foreign",
];

pub fn run_all(only: Option<&str>) -> Result<()> {
    let root = workspace_root();
    let gen_dir = root.join("fixtures/gen");
    let names: Vec<&str> = match only {
        Some(name) if GENERATORS.contains(&name) => vec![name],
        Some(name) => bail!(
            "no generator `{name}`: expected one of {}",
            GENERATORS.join(", ")
        ),
        None => GENERATORS.to_vec(),
    };
    let mut scripts = Vec::new();
    for name in names {
        let script = gen_dir.join(format!("{name}.py"));
        if !script.exists() {
            bail!("missing generator {}", script.display());
        }
        scripts.push(script);
    }
    let python = ensure_venv()?;
    for script in scripts {
        eprintln!("running {}", script.display());
        python::run(
            Command::new(&python)
                .arg(&script)
                .current_dir(&root)
                .env("PYTHONHASHSEED", "0"),
        )?;
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let only = match args {
        [] => None,
        [flag, name] if flag == "--only" => Some(name.as_str()),
        _ => bail!("usage: cargo xtask fixtures [--only NAME]"),
    };
    run_all(only)
}
