//! Shared harness for benchmarking the dl-rs models and layers side by side with PyTorch.
//!
//! - [`plan`]: the cases (every model's inference at batch 1 and 64 and training step at
//!   batch 64; the LSTM, attention, conv-block and dense layers), warm-up and repetitions.
//!   The same plan, written as JSON, drives `benches/pytorch/bench.py`.
//! - [`cases`]: each case as a closure over a Burn device, and the timing loop.
//! - [`schema`]: the JSON both sides write and `cargo xtask bench` merges.
//! - [`report`], [`dashboard`], [`history`]: ratios to PyTorch, the Markdown table, the
//!   self-contained HTML dashboard, and the append-only run history.
//!
//! `cargo xtask bench [--quick]` runs everything; `cargo bench -p dl-bench` runs the same
//! cases under divan for interactive work. See docs/performance.md.

pub mod cases;
pub mod dashboard;
pub mod history;
pub mod plan;
pub mod report;
pub mod schema;

pub use cases::{Iteration, measure, prepare};
pub use plan::{Case, Layer, Mode, Plan, Step, Subject};
pub use schema::{Machine, Record, RunResults, SideResults};
