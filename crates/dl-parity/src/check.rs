//! One cell of the parity table, and how tensor comparisons are folded into it.

use dl_core::{BackendKind, CompareReport, Tolerance, compare};
use dl_io::StateDict;
use serde::Serialize;

use crate::tolerance::Check;

/// What a check was compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// PyTorch 2.9's numbers in `fixtures/models.safetensors`.
    Pytorch,
    /// Our own result on the flex backend.
    Flex,
}

impl Reference {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Reference::Pytorch => "pytorch",
            Reference::Flex => "flex",
        }
    }
}

/// One row of the parity table.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Model name (`mlp`, `cnn`, ...).
    pub model: String,
    /// Backend name.
    pub backend: String,
    /// What was compared.
    pub check: Check,
    /// Against what.
    pub reference: Reference,
    /// Largest absolute error over every compared tensor.
    pub max_abs_err: f64,
    /// Largest relative error over every compared tensor.
    pub max_rel_err: f64,
    /// The tolerance applied.
    pub rtol: f64,
    /// The tolerance applied.
    pub atol: f64,
    /// Whether every element of every tensor is within the tolerance.
    pub passed: bool,
    /// For a failure: the tensor (by PyTorch name) and its comparison report.
    pub detail: String,
}

impl CheckResult {
    /// Fold the comparisons of several named tensors (for example every parameter gradient)
    /// into one row; the detail names the worst failing tensor.
    pub(crate) fn from_reports(
        model: &str,
        backend: BackendKind,
        check: Check,
        reference: Reference,
        tolerance: Tolerance,
        reports: Vec<(String, CompareReport)>,
    ) -> Self {
        let mut row = CheckResult {
            model: model.to_string(),
            backend: backend.name().to_string(),
            check,
            reference,
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            rtol: tolerance.rtol,
            atol: tolerance.atol,
            passed: !reports.is_empty(),
            detail: String::new(),
        };
        if reports.is_empty() {
            row.detail = "nothing to compare".into();
        }
        let mut worst_failure = f64::NEG_INFINITY;
        for (name, report) in reports {
            row.max_abs_err = row.max_abs_err.max(report.max_abs_err);
            row.max_rel_err = row.max_rel_err.max(report.max_rel_err);
            if !report.passed() {
                row.passed = false;
                let score = if report.shape_matches() {
                    report.max_abs_err
                } else {
                    f64::INFINITY
                };
                if score > worst_failure {
                    worst_failure = score;
                    row.detail = format!("`{name}`: {report}");
                }
            }
        }
        row
    }

    /// A row for a check that could not run at all (for example a load error).
    pub(crate) fn failed(
        model: &str,
        backend: BackendKind,
        check: Check,
        reference: Reference,
        reason: String,
    ) -> Self {
        let tolerance = check.tolerance();
        CheckResult {
            model: model.to_string(),
            backend: backend.name().to_string(),
            check,
            reference,
            max_abs_err: f64::NAN,
            max_rel_err: f64::NAN,
            rtol: tolerance.rtol,
            atol: tolerance.atol,
            passed: false,
            detail: reason,
        }
    }
}

/// Compare two state dicts key by key; a key on one side only is a failed comparison.
pub(crate) fn compare_states(
    actual: &StateDict,
    expected: &StateDict,
    tolerance: Tolerance,
) -> Vec<(String, CompareReport)> {
    let mut reports = Vec::new();
    for key in expected.keys() {
        let Some(want) = expected.get(key) else {
            continue;
        };
        let report = match actual.get(key) {
            Some(got) => compare(got, want, tolerance),
            None => compare(
                &burn::tensor::TensorData::new(Vec::<f32>::new(), [0]),
                want,
                tolerance,
            ),
        };
        reports.push((key.to_string(), report));
    }
    for key in actual.keys() {
        if expected.get(key).is_none() {
            let got = actual
                .get(key)
                .cloned()
                .unwrap_or_else(|| burn::tensor::TensorData::new(Vec::<f32>::new(), [0]));
            let missing = burn::tensor::TensorData::new(Vec::<f32>::new(), [0]);
            reports.push((
                format!("{key} (not in the reference)"),
                compare(&got, &missing, tolerance),
            ));
        }
    }
    reports
}
