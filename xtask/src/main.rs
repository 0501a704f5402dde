//! `cargo xtask <command>`: the project's automation, as an ordinary Rust program.
//!
//! Commands:
//! - `fixtures [--only NAME]`: make the PyTorch reference data in `fixtures/` (creates the
//!   git-ignored `.venv` with `torch==2.9.0` on first use).
//! - `parity [--backend ...] [--model ...]`: every model on every backend against PyTorch.

mod fixtures;
mod parity;
mod python;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "fixtures" => fixtures::run(&rest),
        "parity" => parity::run(&rest),
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

const USAGE: &str = "usage: cargo xtask <command>

commands:
  fixtures [--only NAME]   make PyTorch reference data under fixtures/ (NAME: losses, optim, layers, models, pt_files)
  parity [--backend LIST] [--model LIST]
                           compare every model on every backend with PyTorch; table in target/parity/";
