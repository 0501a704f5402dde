//! The JSON written by both sides (`target/bench/burn.json`, `target/bench/pytorch.json`) and
//! by `cargo xtask bench` (`target/bench/results.json`, one line of `benches/history.jsonl`).

use serde::{Deserialize, Serialize};

use crate::plan::Mode;

/// Version of this schema; bump it when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the PyTorch reference in `Record::backend`.
pub const PYTORCH: &str = "pytorch";

/// Summary of the timed repetitions of one case on one backend, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The case id (`mlp/train/b64`), shared with the plan.
    pub id: String,
    /// `flex`, `ndarray`, `tch`, `wgpu`, `cuda` or `pytorch`.
    pub backend: String,
    /// Median of the repetitions: the number every ratio uses (robust to a noisy neighbour).
    pub median_ns: f64,
    /// Mean of the repetitions.
    pub mean_ns: f64,
    /// Fastest repetition.
    pub min_ns: f64,
    /// Slowest repetition.
    pub max_ns: f64,
    /// Standard deviation of the repetitions.
    pub stddev_ns: f64,
    /// Number of timed repetitions.
    pub repetitions: usize,
}

impl Record {
    /// The summary of `samples` (durations in nanoseconds); `None` for no samples.
    pub fn from_samples(id: &str, backend: &str, samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let variance = sorted.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        Some(Self {
            id: id.to_string(),
            backend: backend.to_string(),
            median_ns: median,
            mean_ns: mean,
            min_ns: sorted[0],
            max_ns: sorted[n - 1],
            stddev_ns: variance.sqrt(),
            repetitions: n,
        })
    }
}

/// What one side (the Rust runner or the PyTorch script) writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideResults {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// `burn 0.22.1` or `torch 2.9.0`.
    pub framework: String,
    /// Full or quick.
    pub mode: Mode,
    /// Intra-op threads used.
    pub threads: usize,
    /// Untimed iterations per case.
    pub warmup: usize,
    /// Timed iterations per case.
    pub repetitions: usize,
    /// One record per case and backend.
    pub records: Vec<Record>,
}

/// The machine a run was measured on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
    /// Operating system and kernel.
    pub os: String,
    /// One-minute load average before the run: above the core count, other work competed.
    pub load_before: f64,
    /// One-minute load average after the run.
    pub load_after: f64,
}

/// One complete run of `cargo xtask bench`: both sides merged, with context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Seconds since the Unix epoch at the start of the run.
    pub unix_time: u64,
    /// `git rev-parse --short HEAD`, with `-dirty` when the tree had changes.
    pub commit: String,
    /// Full or quick.
    pub mode: Mode,
    /// Intra-op threads on both sides.
    pub threads: usize,
    /// Untimed iterations per case.
    pub warmup: usize,
    /// Timed iterations per case.
    pub repetitions: usize,
    /// Alternating rounds of both sides; each record is the round with the median median
    /// (1 in runs recorded before rounds existed).
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// The Rust side's framework string.
    pub burn: String,
    /// The PyTorch side's framework string, when it ran.
    pub pytorch: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// Every record of both sides.
    pub records: Vec<Record>,
}

fn one_round() -> usize {
    1
}

/// Per case and backend, the record of the round whose median is the median of the rounds' (the
/// upper middle one for an even count), in the order of the first round: one round slowed by
/// the machine (a neighbour, a frequency change) moves no ratio. Cases missing from some round
/// take the median of the rounds that have them.
///
/// ```
/// use dl_bench::schema::{Record, median_round};
///
/// let round = |ms: f64| vec![Record::from_samples("mlp/train/b64", "flex", &[ms * 1e6]).unwrap()];
/// let kept = median_round(vec![round(2.0), round(9.0), round(3.0)]);
/// assert_eq!(kept[0].median_ns, 3e6);
/// ```
pub fn median_round(rounds: Vec<Vec<Record>>) -> Vec<Record> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for record in rounds.iter().flatten() {
        let key = (record.id.clone(), record.backend.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .filter_map(|(id, backend)| {
            let mut same: Vec<&Record> = rounds
                .iter()
                .flatten()
                .filter(|r| r.id == id && r.backend == backend)
                .collect();
            same.sort_by(|a, b| a.median_ns.total_cmp(&b.median_ns));
            same.get(same.len() / 2).map(|r| (*r).clone())
        })
        .collect()
}

impl RunResults {
    /// The median of `id` on `backend`, if measured.
    pub fn median(&self, id: &str, backend: &str) -> Option<f64> {
        self.records
            .iter()
            .find(|r| r.id == id && r.backend == backend)
            .map(|r| r.median_ns)
    }

    /// Case ids in first-seen order.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for r in &self.records {
            if !ids.contains(&r.id) {
                ids.push(r.id.clone());
            }
        }
        ids
    }

    /// Backends in first-seen order, PyTorch last.
    pub fn backends(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in &self.records {
            if r.backend != PYTORCH && !names.contains(&r.backend) {
                names.push(r.backend.clone());
            }
        }
        if self.records.iter().any(|r| r.backend == PYTORCH) {
            names.push(PYTORCH.to_string());
        }
        names
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let r = Record::from_samples("a", "flex", &[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(r.median_ns, 2.5);
        assert_eq!(r.mean_ns, 2.5);
        assert_eq!((r.min_ns, r.max_ns), (1.0, 4.0));
        // Population variance of 1..4 is 1.25.
        assert!((r.stddev_ns - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(r.repetitions, 4);
        let odd = Record::from_samples("a", "flex", &[9.0, 1.0, 5.0]).unwrap();
        assert_eq!(odd.median_ns, 5.0);
        assert!(Record::from_samples("a", "flex", &[]).is_none());
    }

    #[test]
    fn side_results_json_field_names_are_the_python_ones() {
        // benches/pytorch/bench.py writes these exact keys.
        let json = r#"{"schema": 1, "framework": "torch 2.9.0", "mode": "full", "threads": 2,
            "warmup": 5, "repetitions": 30, "records": [{"id": "mlp/infer/b1",
            "backend": "pytorch", "median_ns": 1.0, "mean_ns": 1.0, "min_ns": 1.0,
            "max_ns": 1.0, "stddev_ns": 0.0, "repetitions": 30}]}"#;
        let side: SideResults = serde_json::from_str(json).unwrap();
        assert_eq!(side.records[0].backend, PYTORCH);
        assert_eq!(side.mode, Mode::Full);
    }
}
