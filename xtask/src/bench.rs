//! `cargo xtask bench [--quick]`: time every model and layer on every compiled Rust backend
//! and in PyTorch, on this machine in the same run, plus one epoch of `dl train` per model
//! against the same loop in PyTorch (`bench_epoch`); write `target/bench/results.json`, append
//! the run to the history, and render the dashboard `target/bench/dashboard.html`.
//!
//! Options:
//! - `--quick`: small batches and sequences, three repetitions, dev profile (CI: keeps the
//!   benchmarks compiling and running). Its history goes to `target/bench/history-quick.jsonl`, not the
//!   committed `benches/history.jsonl`, and PyTorch runs only when `.venv` already has it.
//! - `--backends LIST`: Rust backends (default: every compiled one but `tch-cuda`).
//! - `--features LIST`: cargo features of dl-bench, e.g. `tch` or `wgpu` (default: flex, ndarray).
//! - `--filter TEXT` (repeatable): only the cases whose id contains TEXT.
//! - `--threads N`: intra-op threads on both sides (default: every logical CPU).
//! - `--no-pytorch`: the Rust side only (no ratios).
//! - `--rounds N`: run both sides N times and keep per case the round with the median median
//!   (default 3 for a full run, 1 for `--quick`). Within a round the sides alternate case by
//!   case (one process per case and side, PyTorch first in even rounds), so the two
//!   measurements of a case are seconds apart: this machine's speed drifts by 10-40% over
//!   minutes and its two vCPUs move between host cores within seconds, and with a whole side
//!   per process such drifts moved ratios of the same code by 0.2-0.8.
//!
//! A full run with `--filter` or `--no-pytorch` is partial: its history line goes to
//! `target/bench/history-partial.jsonl`, not the committed one. `--features tch` installs
//! LibTorch on first use (as `cargo xtask parity --backend tch` does) and builds into
//! `target/tch`.
//! - `--update-docs`: also replace the table in docs/performance.md.

use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dl_bench::schema::{
    Machine, PYTORCH, Record, RunResults, SCHEMA_VERSION, SideResults, median_round,
};
use dl_bench::{Mode, Plan, dashboard, history, report};

use crate::bench_epoch::{self, EpochPlan};
use crate::python::{ensure_venv, run as run_command, workspace_root};

/// Marks around the generated table in docs/performance.md.
const TABLE_START: &str = "<!-- bench-table:start -->";
const TABLE_END: &str = "<!-- bench-table:end -->";

/// Options of `cargo xtask bench`.
#[derive(Debug, Default, clap::Args)]
#[command(
    after_help = "A full run with --filter or --no-pytorch is partial: its history line goes to \
                  target/bench/history-partial.jsonl, not the committed benches/history.jsonl."
)]
pub struct BenchArgs {
    /// Small batches and sequences, three repetitions, dev profile (the CI smoke run); history
    /// in target/bench/history-quick.jsonl, PyTorch only when .venv already has it.
    #[arg(long)]
    quick: bool,
    /// Rust backends, comma-separated (default: every compiled one but tch-cuda).
    #[arg(long, value_name = "LIST")]
    backends: Option<String>,
    /// Cargo features of dl-bench, e.g. tch or wgpu (default: flex, ndarray); tch installs
    /// LibTorch on first use and builds into target/tch.
    #[arg(long, value_name = "LIST")]
    features: Option<String>,
    /// Only the cases whose id contains TEXT (repeatable).
    #[arg(long = "filter", value_name = "TEXT")]
    filters: Vec<String>,
    /// Intra-op threads on both sides (default: every logical CPU).
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
    /// The Rust side only (no PyTorch, no ratios).
    #[arg(long)]
    no_pytorch: bool,
    /// Run both sides N times, case by case, and keep per case the round with the median
    /// median (default: 3, or 1 with --quick).
    #[arg(long, value_name = "N")]
    rounds: Option<NonZeroUsize>,
    /// Also replace the table in docs/performance.md.
    #[arg(long)]
    update_docs: bool,
}

/// Run the benchmarks on both sides and write the results, history and dashboard.
pub fn run(options: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    let out = root.join("target/bench");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let threads = options
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_before = load_average();

    let rounds = options
        .rounds
        .map_or(if options.quick { 1 } else { 3 }, NonZeroUsize::get);
    let plan = out.join("plan.json");
    let python = pytorch_python(&root, options)?;
    let mode = if options.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    // The plan of the whole run; the Rust runner computes the same one from the same options.
    let whole = Plan::new(mode, threads).filtered(&options.filters);
    let (mut burn_rounds, mut pytorch_rounds, mut epoch_rounds) = (vec![], vec![], vec![]);
    let (mut burn, mut pytorch) = (None, None);
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        let (rust_side, pytorch_side) = match &python {
            // Both sides: one case at a time, Rust then PyTorch (PyTorch first in even
            // rounds), so that the two measurements of a case are seconds apart.
            Some(python) if !whole.cases.is_empty() => {
                let paired = PairedRun {
                    root: &root,
                    options,
                    threads,
                    python,
                    out: &out,
                };
                let (rust_side, pytorch_side) = paired.run(&whole, round % 2 == 0)?;
                (rust_side, Some(pytorch_side))
            }
            _ => {
                let burn_json = out.join("burn.json");
                run_rust_side(&root, options, threads, &[], &plan, &burn_json)?;
                let rust_side = read_side(&burn_json)?;
                let pytorch_side = match &python {
                    Some(python) => Some(run_pytorch(
                        &root,
                        python,
                        &plan,
                        &out.join("pytorch.json"),
                    )?),
                    None => None,
                };
                (rust_side, pytorch_side)
            }
        };
        burn_rounds.push(rust_side.records.clone());
        burn.get_or_insert(rust_side);
        if let Some(side) = pytorch_side {
            pytorch_rounds.push(side.records.clone());
            pytorch.get_or_insert(side);
        }
        epoch_rounds.push(run_epochs(&root, options, threads, pytorch.is_some())?);
    }
    // For reference: the paired rounds wrote one case at a time.
    write_plan(&plan, &whole)?;
    let burn = burn.context("no round of the Rust side ran")?;
    let mut records = median_round(burn_rounds);
    records.extend(median_round(pytorch_rounds));
    records.extend(median_round(epoch_rounds));
    let results = RunResults {
        schema: SCHEMA_VERSION,
        unix_time,
        commit: crate::git::commit(&root),
        mode: burn.mode,
        threads: burn.threads,
        warmup: burn.warmup,
        repetitions: burn.repetitions,
        rounds,
        burn: burn.framework.clone(),
        pytorch: pytorch.as_ref().map(|p| p.framework.clone()),
        machine: Machine {
            cpu: cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: os_name(),
            load_before,
            load_after: load_average(),
        },
        records,
    };
    let results_path = out.join("results.json");
    let json = serde_json::to_string_pretty(&results)? + "\n";
    dl_io::write_atomically(&results_path, json.as_bytes())?;

    let history_path = history_path(&root, options);
    history::append(&history_path, &results)
        .with_context(|| format!("appending to {}", history_path.display()))?;
    let (runs, skipped) = history::read(&history_path)
        .with_context(|| format!("reading {}", history_path.display()))?;
    if skipped > 0 {
        eprintln!(
            "warning: {skipped} lines of {} skipped (another schema or not JSON)",
            history_path.display()
        );
    }
    let html_path = out.join("dashboard.html");
    let html = dashboard::render_html(&results, &runs);
    dl_io::write_atomically(&html_path, html.as_bytes())?;
    let table = report::markdown_table(&results);
    dl_io::write_atomically(&out.join("table.md"), table.as_bytes())?;
    if options.update_docs {
        let m = &results.machine;
        let context = format!(
            "Measured {} UTC at commit `{}`: {} on {} ({} logical CPUs), {} mode, {} \
             thread(s) on both sides, {} warm-up + {} timed iterations, median in ms, the \
             median of {} round(s), both sides case by case; load average {:.2} before and \
             {:.2} after.\n\n",
            dashboard::utc_date(results.unix_time),
            results.commit,
            m.os,
            m.cpu,
            m.logical_cpus,
            results.mode.name(),
            results.threads,
            results.warmup,
            results.repetitions,
            results.rounds,
            m.load_before,
            m.load_after,
        );
        update_docs(&root.join("docs/performance.md"), &(context + &table))?;
    }
    println!("{table}");
    println!(
        "results: {}\nhistory: {}\ndashboard: {}",
        results_path.display(),
        history_path.display(),
        html_path.display()
    );
    Ok(())
}

/// Where a run's line goes. Only complete full runs (every case, PyTorch included) are
/// published in the committed `benches/history.jsonl`; quick runs and partial ones (`--filter`,
/// `--no-pytorch`, made while working on one case) stay under `target/bench`, so they neither
/// dirty the work tree nor mix partial points into the published curves.
fn history_path(root: &Path, options: &BenchArgs) -> PathBuf {
    let out = root.join("target/bench");
    if options.quick {
        out.join("history-quick.jsonl")
    } else if !options.filters.is_empty() || options.no_pytorch {
        out.join("history-partial.jsonl")
    } else {
        root.join("benches/history.jsonl")
    }
}

/// Build and run the Rust runner in release mode, with the CPU backends' thread pools sized.
fn run_rust_side(
    root: &Path,
    options: &BenchArgs,
    threads: usize,
    cases: &[String],
    plan: &Path,
    out: &Path,
) -> Result<()> {
    // Quick runs use the dev build that CI's tests already made (dependencies, Burn's kernels
    // included, are at opt-level 3 there): a release build of Burn would cost CI minutes for
    // numbers that only need to exist.
    let mut command = match &options.features {
        None => Command::new(bench_epoch::build_binaries(root, options.quick)?.join("dl-bench")),
        Some(features) => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut command = Command::new(cargo);
            command
                .current_dir(root)
                .args(["run", "--quiet", "-p", "dl-bench", "--bin", "dl-bench"])
                .args(["--features", features]);
            if !options.quick {
                command.arg("--release");
            }
            // The tch feature builds torch-sys: LibTorch at build and run time, as for
            // `cargo xtask parity --backend tch`, in the same build folder.
            if features.split([',', ' ']).any(|f| f.trim() == "tch") {
                crate::libtorch::configure_tch_build(&mut command)?;
            }
            command.arg("--");
            command
        }
    };
    command.current_dir(root);
    if options.quick {
        command.arg("--quick");
    }
    if let Some(backends) = &options.backends {
        command.args(["--backends", backends]);
    }
    for filter in &options.filters {
        command.args(["--filter", filter]);
    }
    for case in cases {
        command.args(["--case", case]);
    }
    command.arg("--plan").arg(plan).arg("--out").arg(out);
    // Rayon sizes the flex and ndarray pools; OpenMP sizes LibTorch's (the tch backend).
    command.env("RAYON_NUM_THREADS", threads.to_string());
    command.env("OMP_NUM_THREADS", threads.to_string());
    run_command(&mut command).context("running the Rust benchmarks")
}

/// The epoch cases (`bench_epoch`): `dl train` on flex for every model the filters keep, and
/// the same epochs in PyTorch when its side ran.
fn run_epochs(
    root: &Path,
    options: &BenchArgs,
    threads: usize,
    with_pytorch: bool,
) -> Result<Vec<Record>> {
    let models: Vec<&str> = bench_epoch::MODELS
        .into_iter()
        .filter(|m| {
            options.filters.is_empty()
                || options
                    .filters
                    .iter()
                    .any(|f| bench_epoch::case_id(m).contains(f.as_str()))
        })
        .collect();
    let flex = options
        .backends
        .as_deref()
        .is_none_or(|list| list.split(',').any(|b| b.trim() == "flex"));
    if models.is_empty() || !flex {
        return Ok(Vec::new());
    }
    let plan = if options.quick {
        EpochPlan::QUICK
    } else {
        EpochPlan::FULL
    };
    let dl = bench_epoch::build_binaries(root, options.quick)?.join("dl");
    let python = root.join(".venv/bin/python");
    let mut records = Vec::new();
    for model in models {
        let ours = bench_epoch::run_dl(root, &dl, plan, model, threads)?;
        eprintln!(
            "{:<36} {:<8} {:>9.1} ms (median of {})",
            ours.id,
            "flex",
            ours.median_ns / 1e6,
            ours.repetitions
        );
        records.push(ours);
        if with_pytorch {
            let theirs = bench_epoch::run_pytorch(root, &python, plan, model, threads)?;
            eprintln!(
                "{:<36} {:<8} {:>9.1} ms (median of {})",
                theirs.id,
                PYTORCH,
                theirs.median_ns / 1e6,
                theirs.repetitions
            );
            records.push(theirs);
        }
    }
    Ok(records)
}

/// Both sides of a round, one case at a time.
struct PairedRun<'a> {
    root: &'a Path,
    options: &'a BenchArgs,
    threads: usize,
    python: &'a Path,
    out: &'a Path,
}

impl PairedRun<'_> {
    /// Time every case of `ids` on the Rust side and in PyTorch, one case after the other, the
    /// two sides of a case back to back (PyTorch first when `pytorch_first`). This machine's
    /// vCPUs move between host cores within seconds (core-to-core latency 100-130 ns, then
    /// 380-430 ns for a while), which changes two-thread cases by up to 50% on both sides; a
    /// whole side per process put half a minute between the two measurements of a case.
    fn run(&self, whole: &Plan, pytorch_first: bool) -> Result<(SideResults, SideResults)> {
        let (plan, rust_plan) = (
            self.out.join("plan-case.json"),
            self.out.join("plan-rust.json"),
        );
        let (burn_json, pytorch_json) = (self.out.join("burn.json"), self.out.join("pytorch.json"));
        let (mut rust, mut torch) = (Vec::new(), Vec::new());
        for case in &whole.cases {
            let ids = std::slice::from_ref(&case.id);
            let one = whole.clone().only(ids);
            write_plan(&plan, &one)?;
            let rust_run = || -> Result<SideResults> {
                run_rust_side(
                    self.root,
                    self.options,
                    self.threads,
                    ids,
                    &rust_plan,
                    &burn_json,
                )?;
                check_same_plan(&one, &rust_plan)?;
                read_side(&burn_json)
            };
            if pytorch_first {
                torch.push(run_pytorch(self.root, self.python, &plan, &pytorch_json)?);
                rust.push(rust_run()?);
            } else {
                rust.push(rust_run()?);
                torch.push(run_pytorch(self.root, self.python, &plan, &pytorch_json)?);
            }
        }
        Ok((concat_sides(rust)?, concat_sides(torch)?))
    }
}

fn write_plan(path: &Path, plan: &Plan) -> Result<()> {
    let json = serde_json::to_string_pretty(plan)? + "\n";
    Ok(dl_io::write_atomically(path, json.as_bytes())?)
}

/// The plan the Rust runner wrote to `written` must be `expected`, the one PyTorch is given:
/// otherwise the two sides would time different work.
fn check_same_plan(expected: &Plan, written: &Path) -> Result<()> {
    let text =
        fs::read_to_string(written).with_context(|| format!("reading {}", written.display()))?;
    let plan: Plan =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", written.display()))?;
    if plan != *expected {
        bail!(
            "the Rust runner's plan ({}) differs from the one given to PyTorch: {} case(s), \
             {} thread(s), {} repetitions there; {} case(s), {} thread(s), {} repetitions here",
            written.display(),
            plan.cases.len(),
            plan.threads,
            plan.repetitions,
            expected.cases.len(),
            expected.threads,
            expected.repetitions
        );
    }
    Ok(())
}

/// One side's results of a round from its per-case runs: the first run's framework and counts,
/// every run's records in order.
fn concat_sides(sides: Vec<SideResults>) -> Result<SideResults> {
    let mut sides = sides.into_iter();
    let mut merged = sides.next().context("no case ran")?;
    for side in sides {
        merged.records.extend(side.records);
    }
    Ok(merged)
}

/// The Python that runs the PyTorch side, or `None` when told not to or (quick mode) PyTorch
/// is not installed yet; a full run installs it.
fn pytorch_python(root: &Path, options: &BenchArgs) -> Result<Option<PathBuf>> {
    if options.no_pytorch {
        return Ok(None);
    }
    if !options.quick {
        return ensure_venv().map(Some);
    }
    let python = root.join(".venv/bin/python");
    let has_torch = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        eprintln!("note: no PyTorch in .venv, quick run without it (the full run installs it)");
        return Ok(None);
    }
    Ok(Some(python))
}

/// Run benches/pytorch/bench.py on a plan.
fn run_pytorch(root: &Path, python: &Path, plan: &Path, out: &Path) -> Result<SideResults> {
    run_command(
        Command::new(python)
            .current_dir(root)
            .arg(root.join("benches/pytorch/bench.py"))
            .arg("--plan")
            .arg(plan)
            .arg("--out")
            .arg(out),
    )
    .context("running the PyTorch benchmarks")?;
    read_side(out)
}

fn read_side(path: &Path) -> Result<SideResults> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let side: SideResults =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if side.schema != SCHEMA_VERSION {
        bail!(
            "{} has schema {}, expected {SCHEMA_VERSION}",
            path.display(),
            side.schema
        );
    }
    Ok(side)
}

/// Replace the text between the table marks of docs/performance.md.
fn update_docs(path: &PathBuf, table: &str) -> Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(start), Some(end)) = (text.find(TABLE_START), text.find(TABLE_END)) else {
        bail!(
            "{} has no {TABLE_START} ... {TABLE_END} marks",
            path.display()
        );
    };
    let updated = format!("{}{TABLE_START}\n{table}{}", &text[..start], &text[end..]);
    Ok(dl_io::write_atomically(path, updated.as_bytes())?)
}

fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn os_name() -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} {}", std::env::consts::OS, kernel.trim())
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> BenchArgs {
        crate::parse_args(args).expect("valid options")
    }

    fn side(ids: &[&str]) -> SideResults {
        SideResults {
            schema: SCHEMA_VERSION,
            framework: "burn 0.22.1".into(),
            mode: Mode::Full,
            threads: 2,
            warmup: 5,
            repetitions: 30,
            records: ids
                .iter()
                .map(|id| Record::from_samples(id, "flex", &[1.0, 2.0, 3.0]).expect("samples"))
                .collect(),
        }
    }

    #[test]
    fn per_case_sides_concatenate_in_order_and_none_is_an_error() {
        let merged = concat_sides(vec![side(&["a"]), side(&["b", "c"])]).unwrap();
        let ids: Vec<&str> = merged.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!((merged.threads, merged.repetitions), (2, 30));
        let err = concat_sides(Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "no case ran");
    }

    #[test]
    fn a_runner_plan_that_differs_from_pytorch_s_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-plan-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.json");
        let ids = ["lstm/infer/b64".to_string()];
        let expected = Plan::new(Mode::Full, 2).only(&ids);
        write_plan(&path, &expected).unwrap();
        check_same_plan(&expected, &path).unwrap();
        write_plan(&path, &Plan::new(Mode::Full, 1).only(&ids)).unwrap();
        let err = check_same_plan(&expected, &path).unwrap_err().to_string();
        assert!(err.contains("1 thread(s), 30 repetitions there"), "{err}");
        assert!(err.contains("2 thread(s), 30 repetitions here"), "{err}");
        let missing = check_same_plan(&expected, &dir.join("none.json")).unwrap_err();
        assert!(missing.to_string().starts_with("reading "), "{missing}");
        fs::write(&path, "{").unwrap();
        let bad = check_same_plan(&expected, &path).unwrap_err();
        assert!(bad.to_string().starts_with("parsing "), "{bad}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_keep_their_names_and_defaults() {
        let o = options(&[]);
        assert!(!o.quick && !o.no_pytorch && !o.update_docs);
        assert_eq!((o.backends, o.features, o.threads), (None, None, None));
        assert_eq!(o.rounds, None);
        assert!(o.filters.is_empty());
        let o = options(&[
            "--quick",
            "--no-pytorch",
            "--update-docs",
            "--backends",
            "flex,tch",
            "--features",
            "tch",
            "--filter",
            "lstm",
            "--filter",
            "mlp/",
            "--threads",
            "2",
            "--rounds",
            "5",
        ]);
        assert!(o.quick && o.no_pytorch && o.update_docs);
        assert_eq!(o.backends.as_deref(), Some("flex,tch"));
        assert_eq!(o.features.as_deref(), Some("tch"));
        assert_eq!(o.filters, ["lstm", "mlp/"]);
        assert_eq!(o.threads.map(NonZeroUsize::get), Some(2));
        assert_eq!(o.rounds.map(NonZeroUsize::get), Some(5));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--threads", "0"][..],
            &["--threads", "two"],
            &["--rounds", "0"],
            &["--filter"],
        ] {
            let err = crate::parse_args::<BenchArgs>(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert!(err.to_string().contains("--"), "{err}");
        }
    }

    #[test]
    fn only_complete_full_runs_reach_the_committed_history() {
        let root = Path::new("/repo");
        assert_eq!(
            history_path(root, &options(&[])),
            root.join("benches/history.jsonl")
        );
        assert_eq!(
            history_path(
                root,
                &options(&["--features", "tch", "--backends", "flex,tch"])
            ),
            root.join("benches/history.jsonl")
        );
        assert_eq!(
            history_path(root, &options(&["--quick"])),
            root.join("target/bench/history-quick.jsonl")
        );
        for partial in [&["--filter", "lstm"][..], &["--no-pytorch"][..]] {
            assert_eq!(
                history_path(root, &options(partial)),
                root.join("target/bench/history-partial.jsonl"),
                "{partial:?}"
            );
        }
    }
}
