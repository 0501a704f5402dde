//! `dl`: train, evaluate and inspect the chapter's networks on MNIST digits, and an LSTM
//! forecaster on the weekly Mauna Loa CO2 series.
//!
//! ```sh
//! cargo run --release -p dl-cli -- demo                  # the whole chapter in a few minutes
//! cargo run --release -p dl-cli -- train cnn --epochs 3  # one run, into runs/cnn
//! cargo run --release -p dl-cli -- eval runs/cnn/best.safetensors
//! cargo run --release -p dl-cli -- train forecast        # next week's CO2, into runs/forecast
//! ```
//!
//! Exit status: 0 on success, 1 on an error (printed on stderr), 2 on a usage error, 130 when
//! Ctrl-C stopped a run (after saving its checkpoint).

/// mimalloc instead of glibc's malloc: Burn allocates a fresh buffer for every tensor, and
/// glibc hands large freed buffers back to the kernel (trimming the heap or unmapping them), so
/// every step faulted its activations back in page by page (a third of an LSTM forward pass
/// under perf). mimalloc keeps them for reuse. Its `override` feature (set in the workspace's
/// Cargo.toml) also makes it the C `malloc` of the whole process, so LibTorch's buffers (the
/// `tch` backend) come from it too: the same effect there, an MLP training step on LibTorch
/// 4.4-4.9 → 3.1-3.2 ms. docs/performance.md has the measurements.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;
mod config;
mod data;
mod metrics;
mod model;
mod model_checks;
mod output;
mod plot;
mod progress;
mod scoring;
mod task;
mod training_loop;
mod weights;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit status of a run that Ctrl-C stopped cleanly.
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(&stop);
    // The command runs on the CPU backends' thread pool (`RAYON_NUM_THREADS` threads, default
    // every CPU), so their parallel operations do not leave idle workers spinning next to the
    // main thread (see `dl_core::on_compute_threads`).
    let threads = dl_core::compute_threads();
    match dl_core::on_compute_threads(threads, || run(cli.command, &stop)) {
        Ok(true) => ExitCode::from(INTERRUPTED),
        Ok(false) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(true)` when Ctrl-C interrupted it.
fn run(command: Command, stop: &Arc<AtomicBool>) -> anyhow::Result<bool> {
    match command {
        Command::Train(args) => Ok(commands::train::run(&args, stop)?.interrupted),
        Command::Eval(args) => commands::eval::run(&args).map(|()| false),
        Command::Predict(args) => commands::predict::run(&args).map(|()| false),
        Command::Attention(args) => commands::attention::run(&args).map(|()| false),
        Command::Convert(args) => commands::convert::run(&args).map(|()| false),
        Command::Info(args) => commands::info::run(&args).map(|()| false),
        Command::Demo(args) => commands::demo::run(&args, stop),
    }
}

/// The error and its causes on one line, leaving out a cause its parent's message already
/// quotes (library errors often include their source's text).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

/// The first Ctrl-C asks the training loop to finish its step, save and exit; a second one
/// exits at once.
fn install_ctrl_c(stop: &Arc<AtomicBool>) {
    let stop = Arc::clone(stop);
    let presses = AtomicUsize::new(0);
    let result = ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("second Ctrl-C: exiting without saving");
            std::process::exit(i32::from(INTERRUPTED));
        }
        eprintln!(
            "Ctrl-C: finishing the current step and saving a checkpoint (Ctrl-C again to quit now)"
        );
        stop.store(true, Ordering::SeqCst);
    });
    if let Err(error) = result {
        eprintln!("warning: cannot catch Ctrl-C ({error}); an interrupted run will not save");
    }
}
