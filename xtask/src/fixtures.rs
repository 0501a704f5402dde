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

/// Options of `cargo xtask fixtures`.
#[derive(Debug, clap::Args)]
pub struct FixturesArgs {
    /// Run only this generator (fixtures/gen/NAME.py).
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(GENERATORS))]
    only: Option<String>,
}

pub fn run(args: &FixturesArgs) -> Result<()> {
    run_all(args.only.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_a_generator() {
        let parse = crate::parse_args::<FixturesArgs>;
        assert_eq!(parse(&[]).unwrap().only, None);
        assert_eq!(
            parse(&["--only", "pt_files"]).unwrap().only.as_deref(),
            Some("pt_files")
        );
        let err = parse(&["--only", "model"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(
            err.to_string().contains("onnx_codegen"),
            "lists the names: {err}"
        );
        // Every generator the option offers exists.
        for name in GENERATORS {
            let script = workspace_root().join(format!("fixtures/gen/{name}.py"));
            assert!(script.is_file(), "{}", script.display());
        }
    }
}
