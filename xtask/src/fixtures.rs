//! `cargo xtask fixtures`: run every generator script in `fixtures/gen/` with PyTorch.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::python::{self, ensure_venv, workspace_root};

pub fn run_all(only: Option<&str>) -> Result<()> {
    let root = workspace_root();
    let gen_dir = root.join("fixtures/gen");
    let mut scripts: Vec<_> = std::fs::read_dir(&gen_dir)
        .with_context(|| format!("reading {}", gen_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "common"))
        .collect();
    scripts.sort();
    if let Some(name) = only {
        scripts.retain(|p| p.file_stem().is_some_and(|s| s == name));
        if scripts.is_empty() {
            bail!("no generator fixtures/gen/{name}.py");
        }
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
