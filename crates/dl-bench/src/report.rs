//! Ratios to PyTorch, the issue's targets, and the Markdown table of docs/performance.md.

use crate::plan::Subject;
use crate::schema::{PYTORCH, RunResults};

/// The Rust backends that run on the CPU, among which the targets take the best.
pub const CPU_BACKENDS: [&str; 2] = ["flex", "ndarray"];

/// `backend`'s median over PyTorch's for case `id`: 1.0 is parity, lower is faster.
pub fn ratio(results: &RunResults, id: &str, backend: &str) -> Option<f64> {
    let ours = results.median(id, backend)?;
    let theirs = results.median(id, PYTORCH)?;
    (theirs > 0.0).then(|| ours / theirs)
}

/// The best (lowest) ratio among the CPU backends that ran, with that backend's name.
pub fn best_cpu_ratio(results: &RunResults, id: &str) -> Option<(String, f64)> {
    CPU_BACKENDS
        .iter()
        .filter_map(|b| ratio(results, id, b).map(|r| (b.to_string(), r)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Issue 11's target for a case on the best CPU backend, if it has one: a training step, an
/// inference at batch 1, the LSTM layer at batch 64 and an epoch of `dl train`, each at most
/// PyTorch's time.
pub fn target(id: &str) -> Option<f64> {
    // One epoch of `dl train` for every model, and the LSTM layer alone at batch 64.
    if id.starts_with("epoch/") || id == "lstm_layer/infer/b64" {
        return Some(1.0);
    }
    let mut parts = id.split('/');
    let (subject, step, batch) = (parts.next()?, parts.next()?, parts.next()?);
    let Subject::Model(_) = subject.parse::<Subject>().ok()? else {
        return None;
    };
    match (step, batch) {
        ("train", _) | ("infer", "b1") => Some(1.0),
        _ => None,
    }
}

/// The LibTorch backend's target on every row: at most 1.1 of pure PyTorch.
pub const TCH_TARGET: f64 = 1.1;

/// Milliseconds with three significant-ish digits.
pub fn format_ms(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// One row of the ratio table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Case id.
    pub id: String,
    /// Median milliseconds per backend (PyTorch last), `None` where it did not run.
    pub medians: Vec<Option<f64>>,
    /// Ratio to PyTorch per Rust backend (same order, PyTorch left out).
    pub ratios: Vec<Option<f64>>,
    /// Best CPU backend and its ratio.
    pub best: Option<(String, f64)>,
    /// The target on the best CPU backend, if any.
    pub target: Option<f64>,
}

impl Row {
    /// `Some(true)` when the row has a target and the best CPU ratio meets it.
    pub fn met(&self) -> Option<bool> {
        Some(self.best.as_ref()?.1 <= self.target?)
    }
}

/// Every case's row, in run order; `backends` are [`RunResults::backends`].
pub fn rows(results: &RunResults) -> Vec<Row> {
    let backends = results.backends();
    results
        .ids()
        .into_iter()
        .map(|id| Row {
            medians: backends.iter().map(|b| results.median(&id, b)).collect(),
            ratios: backends
                .iter()
                .filter(|b| b.as_str() != PYTORCH)
                .map(|b| ratio(results, &id, b))
                .collect(),
            best: best_cpu_ratio(results, &id),
            target: target(&id),
            id,
        })
        .collect()
}

/// The Markdown table: medians in ms, each Rust backend's ratio to PyTorch, target and verdict.
pub fn markdown_table(results: &RunResults) -> String {
    let backends = results.backends();
    let rust: Vec<&String> = backends.iter().filter(|b| *b != PYTORCH).collect();
    let mut out = String::from("| case |");
    for b in &backends {
        out.push_str(&format!(" {b} ms |"));
    }
    for b in &rust {
        out.push_str(&format!(" {b} / pytorch |"));
    }
    out.push_str(" target (best CPU) | met |\n|---|");
    out.push_str(&"---:|".repeat(backends.len() + rust.len()));
    out.push_str("---:|:---:|\n");
    for row in rows(results) {
        out.push_str(&format!("| `{}` |", row.id));
        for m in &row.medians {
            out.push_str(&format!(" {} |", m.map_or("–".into(), format_ms)));
        }
        for r in &row.ratios {
            out.push_str(&format!(
                " {} |",
                r.map_or("–".into(), |r| format!("{r:.2}"))
            ));
        }
        let target = row.target.map_or("–".into(), |t| format!("≤ {t:.1}"));
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        out.push_str(&format!(" {target} | {met} |\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::Mode;
    use crate::schema::{Machine, Record};

    pub(crate) fn record(id: &str, backend: &str, ms: f64) -> Record {
        Record::from_samples(id, backend, &[ms * 1e6]).unwrap()
    }

    pub(crate) fn sample_results(unix_time: u64, scale: f64) -> RunResults {
        RunResults {
            schema: 1,
            unix_time,
            commit: "abc1234".into(),
            mode: Mode::Full,
            threads: 2,
            warmup: 5,
            repetitions: 30,
            rounds: 1,
            burn: "burn 0.22.1".into(),
            pytorch: Some("torch 2.9.0".into()),
            machine: Machine::default(),
            records: vec![
                record("mlp/train/b64", "flex", 3.0 * scale),
                record("mlp/train/b64", "ndarray", 1.5 * scale),
                record("mlp/train/b64", PYTORCH, 2.0),
                record("cnn/train/b64", "flex", 28.0 * scale),
                record("cnn/train/b64", PYTORCH, 20.0),
                record("dense/infer/b64", "flex", 0.5),
            ],
        }
    }

    #[test]
    fn ratios_divide_medians_by_pytorch() {
        let results = sample_results(0, 1.0);
        assert_eq!(ratio(&results, "mlp/train/b64", "flex"), Some(1.5));
        assert_eq!(ratio(&results, "mlp/train/b64", "ndarray"), Some(0.75));
        assert_eq!(ratio(&results, "dense/infer/b64", "flex"), None);
        assert_eq!(
            best_cpu_ratio(&results, "mlp/train/b64"),
            Some(("ndarray".to_string(), 0.75))
        );
    }

    #[test]
    fn targets_follow_the_issue() {
        assert_eq!(target("mlp/train/b64"), Some(1.0));
        assert_eq!(target("cnn/train/b64"), Some(1.0));
        assert_eq!(target("transformer/infer/b1"), Some(1.0));
        assert_eq!(target("cnn/infer/b64"), None);
        assert_eq!(target("lstm_layer/infer/b64"), Some(1.0));
        assert_eq!(target("attention/infer/b64"), None);
        assert_eq!(target("epoch/lstm/b64"), Some(1.0));
    }

    #[test]
    fn markdown_table_has_ratios_and_verdicts() {
        let table = markdown_table(&sample_results(0, 1.0));
        assert!(table.starts_with("| case | flex ms | ndarray ms | pytorch ms | flex / pytorch |"));
        assert!(
            table.contains("| `mlp/train/b64` | 3.00 | 1.50 | 2.00 | 1.50 | 0.75 | ≤ 1.0 | yes |"),
            "{table}"
        );
        assert!(table.contains("| 1.40 | – | ≤ 1.0 | **no** |"), "{table}");
        let slow = markdown_table(&sample_results(0, 2.0));
        assert!(slow.contains("**no**"), "{slow}");
    }
}
