//! The weekly CO2 series of `dl train forecast`: the csv (`date,co2`, one row per week, an
//! empty `co2` for a missing week), gap filling, the chronological split and the scaling.
//!
//! - **Gaps** are filled by linear interpolation between the nearest observed weeks on either
//!   side; a gap at the start or the end takes the nearest observed value.
//! - **Split**: the weeks stay in time order. The last [`TEST_FRACTION`] of the weeks are the
//!   test part, the `val_fraction` before them the validation part, the rest the training
//!   part. No shuffling crosses a split point.
//! - **Windows**: sample `t` predicts week `t` from the `window` weeks before it. It belongs to
//!   the part that holds its *target* week `t`; its inputs may reach back into the previous
//!   part (they are the past, known when the forecast is made), but no window of the training
//!   or validation part ever sees a week of a later part. The first `window` weeks of the
//!   series are inputs only.
//! - **Scaling**: every value is scaled with the mean and standard deviation of the training
//!   part's weeks only (what the model may know); errors are reported back in ppm.
//! - **Relative windows**: a window's inputs and its target are given relative to the
//!   window's last week (scaled value minus the last week's), so the model predicts the change
//!   from last week and the forecast is `last week + change * std`. The series climbs out of
//!   the training range (315–350 ppm in 1958–1988, up to 372 ppm in the test weeks): on
//!   absolute scaled levels the LSTM's saturating gates cannot extrapolate, and a PyTorch
//!   prototype with the same network missed the test weeks by 3.6 ppm (naive: 0.40), while the
//!   relative windows give 0.34.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The fraction of the weeks, at the end of the series, that are the test part.
pub const TEST_FRACTION: f64 = 0.15;
/// The validation fraction (of the weeks, just before the test part) used when none is given.
pub const DEFAULT_VAL_FRACTION: f64 = 0.15;
/// Weeks of a season: the seasonal-naive forecast repeats the value of 52 weeks before.
pub const SEASON: usize = 52;

/// The committed weekly Mauna Loa CO2 record (`fixtures/co2/co2.csv`), used when no `--data`
/// is given to `dl train forecast`.
pub fn default_series_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/co2/co2.csv");
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// A weekly series with its gaps filled.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklySeries {
    /// The date of each week, `YYYYMMDD`.
    pub dates: Vec<u32>,
    /// The value of each week (ppm), gaps filled.
    pub values: Vec<f64>,
    /// How many weeks were missing and filled.
    pub filled: usize,
}

impl WeeklySeries {
    /// Read and gap-fill the csv at `path`; errors name the file and the line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the series {}", path.display()))?;
        let (dates, raw) = parse_csv(&text).with_context(|| path.display().to_string())?;
        let filled = raw.iter().filter(|v| v.is_none()).count();
        let values = fill_gaps(&raw).with_context(|| path.display().to_string())?;
        Ok(Self {
            dates,
            values,
            filled,
        })
    }

    /// Number of weeks.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Parse `date,co2` rows after a `date,co2` header: `date` is `YYYYMMDD`, one week after the
/// row before; `co2` is a finite number or empty (a missing week). Errors name the line.
pub fn parse_csv(text: &str) -> Result<(Vec<u32>, Vec<Option<f64>>)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "date,co2" => {}
        Some((_, header)) => bail!("line 1: header `{header}`, expected `date,co2`"),
        None => bail!("the file is empty, expected a `date,co2` header and weekly rows"),
    }
    let mut dates = Vec::new();
    let mut values = Vec::new();
    let mut previous_day: Option<i64> = None;
    for (index, line) in lines {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((date, value)) = line.split_once(',') else {
            bail!("line {number}: `{line}`, expected `YYYYMMDD,value`");
        };
        let (date, day) =
            parse_date(date.trim()).with_context(|| format!("line {number}: date `{date}`"))?;
        if let Some(previous) = previous_day
            && day - previous != 7
        {
            bail!(
                "line {number}: date {date} is {} days after the row before, expected 7 (one row per week, a missing week as an empty value)",
                day - previous
            );
        }
        previous_day = Some(day);
        let value = value.trim();
        let value = if value.is_empty() {
            None
        } else {
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => bail!("line {number}: value `{value}` is not a finite number"),
            }
        };
        dates.push(date);
        values.push(value);
    }
    if dates.is_empty() {
        bail!("no rows after the header, expected one row per week");
    }
    Ok((dates, values))
}

/// `YYYYMMDD` as the number and its day count since 1970-01-01.
fn parse_date(text: &str) -> Result<(u32, i64)> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        bail!("expected 8 digits YYYYMMDD");
    }
    let number: u32 = text.parse()?;
    let (year, month, day) = (number / 10_000, number / 100 % 100, number % 100);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => bail!("month {month} is not 1 to 12"),
    };
    if day == 0 || day > days_in_month {
        bail!("day {day} is not in month {month} of {year}");
    }
    Ok((
        number,
        days_from_civil(year.into(), month.into(), day.into()),
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Fill the missing weeks: linear interpolation between the observed neighbours, the nearest
/// observed value before the first or after the last observation. An error when nothing is
/// observed.
pub fn fill_gaps(values: &[Option<f64>]) -> Result<Vec<f64>> {
    let observed: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let (Some(&(first, first_value)), Some(&(last, last_value))) =
        (observed.first(), observed.last())
    else {
        bail!("every value is missing, expected at least one observed week");
    };
    let mut out = vec![0.0; values.len()];
    out[..=first].fill(first_value);
    out[last..].fill(last_value);
    for pair in observed.windows(2) {
        let [(a, va), (b, vb)] = [pair[0], pair[1]];
        for (i, slot) in out.iter_mut().enumerate().take(b + 1).skip(a) {
            let t = (i - a) as f64 / (b - a) as f64;
            *slot = va + (vb - va) * t;
        }
    }
    Ok(out)
}

/// The three chronological parts of a series, as ranges of week indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSplit {
    /// The training weeks (from week 0).
    pub train: Range<usize>,
    /// The validation weeks.
    pub val: Range<usize>,
    /// The test weeks (to the end).
    pub test: Range<usize>,
}

impl SeriesSplit {
    /// Split `len` weeks: the last [`TEST_FRACTION`] for test, `val_fraction` before them for
    /// validation. Each part must hold at least one target after the first `window` weeks.
    pub fn new(len: usize, val_fraction: f64, window: usize) -> Result<Self> {
        if !(val_fraction > 0.0 && val_fraction + TEST_FRACTION < 1.0) {
            bail!(
                "--val-fraction {val_fraction}: expected a fraction above 0 that leaves weeks to train on beside the last {TEST_FRACTION} of the series for test"
            );
        }
        let test_start = len - ((len as f64 * TEST_FRACTION).round() as usize).min(len);
        let val_start =
            test_start.saturating_sub(((len as f64 * val_fraction).round() as usize).max(1));
        if val_start <= window || test_start == val_start || test_start == len {
            bail!(
                "a series of {len} weeks split {:.0}/{:.0}/{:.0}% leaves no training, validation or test week after the first {window} (the window): expected a longer series or a shorter --window",
                (1.0 - val_fraction - TEST_FRACTION) * 100.0,
                val_fraction * 100.0,
                TEST_FRACTION * 100.0
            );
        }
        Ok(Self {
            train: 0..val_start,
            val: val_start..test_start,
            test: test_start..len,
        })
    }
}

/// Mean and standard deviation used to scale the series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaler {
    /// Mean of the training weeks (ppm).
    pub mean: f64,
    /// Standard deviation of the training weeks (ppm, population).
    pub std: f64,
}

impl Scaler {
    /// The mean and standard deviation of `values` (the training weeks); an error for fewer
    /// than two values or a constant series.
    pub fn fit(values: &[f64]) -> Result<Self> {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt();
        if values.len() < 2 || !(std.is_finite() && std > 0.0) {
            bail!(
                "the training weeks have standard deviation {std} over {} values: expected a series that varies",
                values.len()
            );
        }
        Ok(Self { mean, std })
    }

    /// `(value - mean) / std`.
    pub fn scale(&self, value: f64) -> f32 {
        ((value - self.mean) / self.std) as f32
    }
}

/// A gap-filled series, split and scaled, cut into windows.
#[derive(Debug, Clone)]
pub struct ForecastData {
    /// The series.
    pub series: WeeklySeries,
    /// Its split.
    pub split: SeriesSplit,
    /// The training part's scaling.
    pub scaler: Scaler,
    /// Weeks of input per window.
    pub window: usize,
    /// The series, scaled.
    pub scaled: Vec<f32>,
}

impl ForecastData {
    /// Read, fill, split and scale the series at `path`.
    pub fn load(path: &Path, window: usize, val_fraction: f64) -> Result<Self> {
        let series = WeeklySeries::read(path)?;
        Self::new(series, window, val_fraction).with_context(|| path.display().to_string())
    }

    /// Split and scale `series`.
    pub fn new(series: WeeklySeries, window: usize, val_fraction: f64) -> Result<Self> {
        if window == 0 {
            bail!("window is 0, expected at least one week of input");
        }
        if series.is_empty() {
            bail!("the series has no weeks");
        }
        let split = SeriesSplit::new(series.len(), val_fraction, window)?;
        let scaler = Scaler::fit(&series.values[split.train.clone()])?;
        let scaled = series.values.iter().map(|&v| scaler.scale(v)).collect();
        Ok(Self {
            series,
            split,
            scaler,
            window,
            scaled,
        })
    }

    /// The target weeks of a part (`part` is one of the split's ranges): those with a full
    /// window before them, at most `limit` (the earliest).
    pub fn targets(&self, part: &Range<usize>, limit: Option<usize>) -> Vec<usize> {
        let start = part.start.max(self.window);
        let mut targets: Vec<usize> = (start..part.end).collect();
        if let Some(limit) = limit {
            targets.truncate(limit);
        }
        targets
    }

    /// The model's inputs `[targets.len() * window]` (window after window) and targets, both
    /// scaled and relative to each window's last week; every target must lie in
    /// `window..len()`.
    pub fn batch(&self, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
        (
            self.windows(targets),
            targets
                .iter()
                .map(|&t| self.scaled[t] - self.scaled[t - 1])
                .collect(),
        )
    }

    /// The model's inputs for each of `targets` (each in `window..=len()`: `len()` is the
    /// week after the series): the `window` scaled weeks before it minus the last of them,
    /// window after window.
    pub fn windows(&self, targets: &[usize]) -> Vec<f32> {
        let mut inputs = Vec::with_capacity(targets.len() * self.window);
        for &t in targets {
            let last = self.scaled[t - 1];
            inputs.extend(self.scaled[t - self.window..t].iter().map(|v| v - last));
        }
        inputs
    }

    /// The forecast of week `target` in ppm from the model's output (the scaled change from
    /// the week before).
    pub fn forecast_ppm(&self, target: usize, output: f32) -> f64 {
        self.series.values[target - 1] + f64::from(output) * self.scaler.std
    }

    /// Mean absolute error (ppm) of the naive forecast (last week's value) over `targets`.
    pub fn naive_mae(&self, targets: &[usize]) -> f64 {
        mean_abs(
            targets
                .iter()
                .map(|&t| self.series.values[t] - self.series.values[t.saturating_sub(1)]),
        )
    }

    /// Mean absolute error (ppm) of the seasonal-naive forecast (the value [`SEASON`] weeks
    /// before) over `targets`.
    pub fn seasonal_naive_mae(&self, targets: &[usize]) -> f64 {
        mean_abs(
            targets
                .iter()
                .map(|&t| self.series.values[t] - self.series.values[t.saturating_sub(SEASON)]),
        )
    }
}

fn mean_abs(errors: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = errors.fold((0.0, 0usize), |(s, n), e| (s + e.abs(), n + 1));
    sum / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_rows_and_missing_weeks() {
        let (dates, values) =
            parse_csv("date,co2\n19580329,316.1\n19580405,\n19580412,317.6\n").unwrap();
        assert_eq!(dates, vec![19580329, 19580405, 19580412]);
        assert_eq!(values, vec![Some(316.1), None, Some(317.6)]);
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases = [
            ("co2,date\n", "line 1: header"),
            ("date,co2\n19580329;316.1\n", "line 2: `19580329;316.1`"),
            (
                "date,co2\n19580329,316.1\n19580405,abc\n",
                "line 3: value `abc`",
            ),
            (
                "date,co2\n19580329,316.1\n19580405,inf\n",
                "line 3: value `inf`",
            ),
            ("date,co2\n1958032,316.1\n", "line 2: date `1958032`"),
            ("date,co2\n19581329,316.1\n", "month 13"),
            ("date,co2\n19580230,316.1\n", "day 30"),
            (
                "date,co2\n19580329,316.1\n19580412,317.6\n",
                "line 3: date 19580412 is 14 days",
            ),
            ("date,co2\n", "no rows"),
            ("", "empty"),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", parse_csv(text).unwrap_err());
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn weeks_cross_month_year_and_leap_day() {
        // 1959-12-26 + 7 days = 1960-01-02; 1960-02-27 + 7 = 1960-03-05 (29 February between).
        parse_csv("date,co2\n19591226,1\n19600102,2\n").unwrap();
        parse_csv("date,co2\n19600227,1\n19600305,2\n").unwrap();
        assert!(parse_csv("date,co2\n19590227,1\n19590305,2\n").is_err());
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn gaps_are_interpolated_and_ends_take_the_nearest_value() {
        let filled = fill_gaps(&[None, Some(1.0), None, None, Some(4.0), Some(5.0), None]).unwrap();
        assert_eq!(filled, vec![1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0]);
        assert_eq!(fill_gaps(&[Some(2.0)]).unwrap(), vec![2.0]);
        assert!(
            fill_gaps(&[None, None])
                .unwrap_err()
                .to_string()
                .contains("every value")
        );
    }

    #[test]
    fn split_is_chronological_and_windows_stay_in_their_part() {
        let split = SeriesSplit::new(100, 0.15, 10).unwrap();
        assert_eq!(split.train, 0..70);
        assert_eq!(split.val, 70..85);
        assert_eq!(split.test, 85..100);
        assert!(SeriesSplit::new(100, 0.15, 70).is_err());
        assert!(SeriesSplit::new(100, 0.9, 10).is_err());
        let series = WeeklySeries {
            dates: (0..100).collect(),
            values: (0..100).map(f64::from).collect(),
            filled: 0,
        };
        let data = ForecastData::new(series, 10, 0.15).unwrap();
        let train = data.targets(&data.split.train, None);
        assert_eq!((train[0], *train.last().unwrap()), (10, 69));
        let test = data.targets(&data.split.test, Some(3));
        assert_eq!(test, vec![85, 86, 87]);
        let (inputs, targets) = data.batch(&[85]);
        // The test window reads weeks 75..85 (validation weeks: the past), predicts week 85,
        // each relative to week 84.
        assert_eq!(inputs.len(), 10);
        let std = data.scaler.std;
        assert!((f64::from(inputs[0]) * std - (75.0 - 84.0)).abs() < 1e-4);
        assert_eq!(inputs[9], 0.0);
        assert!((f64::from(targets[0]) * std - 1.0).abs() < 1e-4);
        assert!((data.forecast_ppm(85, targets[0]) - 85.0).abs() < 1e-4);
        // The week after the series has a window too.
        assert_eq!(data.windows(&[100]).len(), 10);
    }

    #[test]
    fn scaling_uses_the_training_weeks_only() {
        let mut values: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect();
        // A jump after the training part must not move the scaler.
        for v in &mut values[70..] {
            *v += 1000.0;
        }
        let series = WeeklySeries {
            dates: (0..100).collect(),
            values,
            filled: 0,
        };
        let data = ForecastData::new(series, 4, 0.15).unwrap();
        assert_eq!(
            data.scaler,
            Scaler {
                mean: 0.5,
                std: 0.5
            }
        );
        assert_eq!(data.scaled[0], -1.0);
        assert!(Scaler::fit(&[3.0, 3.0]).is_err());
    }

    #[test]
    fn baselines_on_a_ramp() {
        let series = WeeklySeries {
            dates: (0..200).collect(),
            values: (0..200).map(|i| f64::from(i) * 0.5).collect(),
            filled: 0,
        };
        let data = ForecastData::new(series, 52, 0.15).unwrap();
        let test = data.targets(&data.split.test, None);
        assert!((data.naive_mae(&test) - 0.5).abs() < 1e-12);
        assert!((data.seasonal_naive_mae(&test) - 26.0).abs() < 1e-12);
    }

    #[test]
    fn the_committed_series_reads() {
        let series = WeeklySeries::read(&default_series_path()).unwrap();
        assert_eq!(series.len(), 2284);
        assert_eq!(series.filled, 59);
        assert_eq!(series.dates[0], 19580329);
        assert!(series.values.iter().all(|v| (300.0..400.0).contains(v)));
    }
}
