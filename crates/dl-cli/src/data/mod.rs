//! The data on disk and in batches: the digits (the dataset of one split, read from the digit
//! files of `dl_io::DigitFile`, and the batcher that shuffles, batches and normalises) and the
//! weekly CO2 series of `dl train forecast`.

mod batcher;
mod dataset;
mod series;

pub use batcher::Batcher;
pub use dataset::{Digits, Split, default_data_dir};
pub use series::{DEFAULT_VAL_FRACTION, ForecastData, SEASON, default_series_path};
