//! Shared harness for benchmarking the dl-rs models side by side with PyTorch.
//!
//! Filled by the benchmark work (issue 7).
