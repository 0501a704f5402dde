//! The benchmark runner behind `cargo xtask bench`: times every case of the plan on every
//! compiled backend and writes the plan and the results as JSON.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p dl-bench -- [--quick] [--backends flex,ndarray] \
//!     [--filter mlp/] --plan target/bench/plan.json --out target/bench/burn.json
//! ```
//!
//! The thread count recorded (and given to PyTorch) is `RAYON_NUM_THREADS`, which the Rust
//! CPU backends' thread pools read, or every logical CPU when it is unset. LibTorch (the `tch`
//! backend) sizes its own OpenMP pool from `OMP_NUM_THREADS`: the runner refuses to time `tch`
//! when that differs, since the ratio to PyTorch would compare different thread counts
//! (`cargo xtask bench` sets both).

use std::path::PathBuf;
use std::process::ExitCode;

use dl_bench::report::format_ms;
use dl_bench::schema::SCHEMA_VERSION;
use dl_bench::{Mode, Plan, Record, SideResults, measure, prepare};
use dl_core::BackendKind;

/// mimalloc instead of glibc's malloc: Burn allocates a fresh buffer for every tensor, and
/// glibc hands large freed buffers back to the kernel (trimming the heap or unmapping them), so
/// every step faulted its activations back in page by page (a third of an LSTM forward pass
/// under perf). mimalloc keeps them for reuse. docs/performance.md has the measurements.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    mode: Mode,
    backends: Vec<BackendKind>,
    filters: Vec<String>,
    plan: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        mode: Mode::Full,
        // LibTorch on CUDA needs a GPU; it runs only when asked for by name.
        backends: BackendKind::compiled()
            .into_iter()
            .filter(|k| *k != BackendKind::TchCuda)
            .collect(),
        filters: Vec::new(),
        plan: None,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--quick" {
            options.mode = Mode::Quick;
            continue;
        }
        // `cargo bench` passes `--bench` to every target; this binary is not one of them.
        if flag == "--bench" {
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backends" => {
                options.backends = BackendKind::parse_list(&value).map_err(|e| e.to_string())?;
            }
            "--filter" => options.filters.push(value),
            "--plan" => options.plan = Some(value.into()),
            "--out" => options.out = Some(value.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// The intra-op thread count the CPU backends will use.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let plan = Plan::new(options.mode, threads()).filtered(&options.filters);
    let omp = std::env::var("OMP_NUM_THREADS").ok();
    check_libtorch_threads(&options.backends, plan.threads, omp.as_deref())?;
    if let Some(path) = &options.plan {
        write_json(path, &plan)?;
    }
    let mut records = Vec::new();
    for case in &plan.cases {
        for &backend in &options.backends {
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
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dl-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
