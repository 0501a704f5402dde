//! Digits on disk and in batches: the binary file format, the dataset of one split, and the
//! batcher that shuffles, batches and normalises.

mod batcher;
mod dataset;
mod format;

pub use batcher::{Batch, Batcher};
pub use dataset::{Digits, Split, default_data_dir};
