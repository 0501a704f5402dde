//! The benchmark runner behind `cargo xtask bench`: times every case of the plan on every
//! compiled backend and writes the plan and the results as JSON.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p dl-bench -- [--quick] [--backends flex,ndarray] \
//!     [--filter mlp/] [--case mlp/infer/b1] --plan target/bench/plan.json --out target/bench/burn.json
//! ```
//!
//! The thread count recorded (and given to PyTorch) is `RAYON_NUM_THREADS`, which the Rust
//! CPU backends' thread pools read, or every logical CPU when it is unset. LibTorch (the `tch`
//! backend) sizes its own OpenMP pool from `OMP_NUM_THREADS`: the runner refuses to time `tch`
//! when that differs, since the ratio to PyTorch would compare different thread counts
//! (`cargo xtask bench` sets both).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dl_bench::report::format_ms;
use dl_bench::schema::SCHEMA_VERSION;
use dl_bench::{Mode, Plan, Record, SideResults, measure, prepare};
use dl_core::BackendKind;

/// mimalloc instead of glibc's malloc: Burn allocates a fresh buffer for every tensor, and
/// glibc hands large freed buffers back to the kernel (trimming the heap or unmapping them), so
/// every step faulted its activations back in page by page (a third of an LSTM forward pass
/// under perf). mimalloc keeps them for reuse. Its `override` feature (set in the workspace's
/// Cargo.toml) also makes it the C `malloc` of the whole process, so LibTorch's buffers (the
/// `tch` backend) come from it too: the same effect there, an MLP training step on LibTorch
/// 4.4-4.9 → 3.1-3.2 ms. docs/performance.md has the measurements.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Times every case of the benchmark plan on every compiled backend; writes the plan and the
/// results as JSON (the Rust side of `cargo xtask bench`).
#[derive(Debug, Parser)]
#[command(name = "dl-bench")]
struct Options {
    /// Small batches and sequences, 1 + 3 iterations (the CI smoke run).
    #[arg(long)]
    quick: bool,
    /// Backends, comma-separated, or `all` (default: every compiled one but tch-cuda, which
    /// needs a GPU and runs only when named).
    #[arg(long, value_name = "LIST", value_parser = backend_list)]
    backends: Option<std::vec::Vec<BackendKind>>,
    /// Only the cases whose id contains TEXT (repeatable).
    #[arg(long = "filter", value_name = "TEXT")]
    filters: Vec<String>,
    /// Only the case with this exact id (repeatable; after the filters).
    #[arg(long = "case", value_name = "ID")]
    cases: Vec<String>,
    /// Write the plan (cases, sizes, counts) here as JSON, for the PyTorch side.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Write the results here as JSON (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// `cargo bench` passes `--bench` to every target; this binary is not one of them.
    #[arg(long, hide = true)]
    bench: bool,
}

// `std::vec::Vec` above: clap takes a plain `Vec<T>` for a repeatable option of single values;
// this parses one comma-separated list into the whole vector.
fn backend_list(list: &str) -> Result<Vec<BackendKind>, String> {
    BackendKind::parse_list(list).map_err(|e| e.to_string())
}

impl Options {
    fn mode(&self) -> Mode {
        if self.quick { Mode::Quick } else { Mode::Full }
    }

    fn backends(&self) -> Vec<BackendKind> {
        self.backends.clone().unwrap_or_else(|| {
            BackendKind::compiled()
                .into_iter()
                .filter(|k| *k != BackendKind::TchCuda)
                .collect()
        })
    }
}

/// LibTorch's intra-op pool ignores `RAYON_NUM_THREADS` and uses every core unless
/// `OMP_NUM_THREADS` says otherwise.
fn check_libtorch_threads(
    backends: &[BackendKind],
    threads: usize,
    omp: Option<&str>,
) -> Result<(), String> {
    let libtorch = backends
        .iter()
        .any(|b| matches!(b, BackendKind::Tch | BackendKind::TchCuda));
    if libtorch && omp.and_then(|v| v.trim().parse().ok()) != Some(threads) {
        return Err(format!(
            "the tch backend would use LibTorch's own thread count (OMP_NUM_THREADS is {}), not \
             the {threads} intra-op thread(s) of this run: set OMP_NUM_THREADS={threads}",
            omp.unwrap_or("unset")
        ));
    }
    Ok(())
}

fn write_json(path: &PathBuf, value: &impl serde::Serialize) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn run(options: &Options) -> Result<(), String> {
    let backends = options.backends();
    let plan = Plan::new(options.mode(), dl_core::compute_threads())
        .filtered(&options.filters)
        .only(&options.cases);
    let omp = std::env::var("OMP_NUM_THREADS").ok();
    check_libtorch_threads(&backends, plan.threads, omp.as_deref())?;
    if let Some(path) = &options.plan {
        write_json(path, &plan)?;
    }
    let mut records = Vec::new();
    for case in &plan.cases {
        for &backend in &backends {
            let mut iteration =
                prepare(case, backend).map_err(|e| format!("{} on {backend}: {e}", case.id))?;
            let samples = measure(&mut iteration, plan.warmup, plan.repetitions)
                .map_err(|e| format!("{} on {backend}: {e}", case.id))?;
            if let Some(record) = Record::from_samples(&case.id, backend.name(), &samples) {
                eprintln!(
                    "{:<36} {:<8} {:>9} ms (median of {})",
                    case.id,
                    backend.name(),
                    format_ms(record.median_ns),
                    record.repetitions
                );
                records.push(record);
            }
        }
    }
    let results = SideResults {
        schema: SCHEMA_VERSION,
        framework: "burn 0.22.1".to_string(),
        mode: plan.mode,
        threads: plan.threads,
        warmup: plan.warmup,
        repetitions: plan.repetitions,
        records,
    };
    match &options.out {
        Some(path) => write_json(path, &results),
        None => serde_json::to_string_pretty(&results)
            .map(|json| println!("{json}"))
            .map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    // Usage errors and --help exit here, with clap's message and status (2 for an error).
    let options = Options::parse();
    // The cases run on the CPU backends' pool, as `dl` does (see `dl_core::on_compute_threads`).
    match dl_core::on_compute_threads(dl_core::compute_threads(), || run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dl-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("dl-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Options::command().debug_assert();
    }

    #[test]
    fn defaults_are_full_mode_and_every_compiled_backend_but_tch_cuda() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.mode(), Mode::Full);
        let expected: Vec<BackendKind> = BackendKind::compiled()
            .into_iter()
            .filter(|k| *k != BackendKind::TchCuda)
            .collect();
        assert_eq!(options.backends(), expected);
        assert!(options.filters.is_empty() && options.plan.is_none() && options.out.is_none());
        assert!(options.cases.is_empty());
    }

    #[test]
    fn the_flags_xtask_passes_are_read_and_cargo_bench_s_is_ignored() {
        let options = parse(&[
            "--quick",
            "--backends",
            "flex,tch-cuda",
            "--filter",
            "mlp/",
            "--bench",
            "--filter",
            "lstm",
            "--plan",
            "p.json",
            "--out",
            "o.json",
            "--case",
            "mlp/infer/b1",
        ])
        .unwrap();
        assert_eq!(options.mode(), Mode::Quick);
        assert_eq!(
            options.backends(),
            [BackendKind::Flex, BackendKind::TchCuda]
        );
        assert_eq!(options.filters, ["mlp/", "lstm"]);
        assert_eq!(options.plan, Some(PathBuf::from("p.json")));
        assert_eq!(options.out, Some(PathBuf::from("o.json")));
        assert_eq!(options.cases, ["mlp/infer/b1"]);
        assert!(parse(&["--bench"]).is_ok());
    }

    #[test]
    fn unknown_flags_and_bad_values_are_usage_errors() {
        for (args, kind) in [
            (&["--fast"][..], ErrorKind::UnknownArgument),
            (&["--backends", "flex,tpu"], ErrorKind::ValueValidation),
            (&["--out"], ErrorKind::InvalidValue),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let help = parse(&["--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--filter <TEXT>"), "{help}");
        assert!(!help.to_string().contains("--bench"), "{help}");
    }

    #[test]
    fn libtorch_must_use_the_run_s_thread_count() {
        let cpu = [BackendKind::Flex, BackendKind::NdArray];
        assert!(check_libtorch_threads(&cpu, 1, None).is_ok());
        let tch = [BackendKind::Flex, BackendKind::Tch];
        assert!(check_libtorch_threads(&tch, 2, Some("2")).is_ok());
        let err = check_libtorch_threads(&tch, 1, None).unwrap_err();
        assert!(err.contains("OMP_NUM_THREADS is unset"), "{err}");
        assert!(err.ends_with("set OMP_NUM_THREADS=1"), "{err}");
        let err = check_libtorch_threads(&[BackendKind::TchCuda], 1, Some("4")).unwrap_err();
        assert!(err.contains("OMP_NUM_THREADS is 4"), "{err}");
    }
}
