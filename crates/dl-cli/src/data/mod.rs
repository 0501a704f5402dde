//! Digits in memory and in batches: the dataset of one split (read from the digit files of
//! `dl_io::DigitFile`), and the batcher that shuffles, batches and normalises.

mod batcher;
mod dataset;

pub use batcher::{Batch, Batcher};
pub use dataset::{Digits, Split, default_data_dir};
