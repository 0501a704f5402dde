//! The data on disk and in batches: the digits (binary file format, the dataset of one split,
//! the batcher that shuffles, batches and normalises) and the weekly CO2 series of
//! `dl train forecast`.

mod batcher;
mod dataset;
mod format;
mod series;

pub use batcher::Batcher;
pub use dataset::{Digits, Split, default_data_dir};
pub use series::{DEFAULT_VAL_FRACTION, ForecastData, SEASON, default_series_path};
