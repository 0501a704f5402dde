//! The parity table: every model on every backend, printed, and saved as JSON and Markdown.

use std::fmt::Write as _;

use dl_core::{BackendKind, Fixture};
use serde::Serialize;

use crate::check::{CheckResult, Reference};
use crate::model::ParityModel;
use crate::run::{Outputs, Perturbation, compare_outputs, model_outputs, pytorch_outputs};

/// A backend that was asked for but is not compiled into this build.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The backend's name.
    pub backend: String,
    /// The cargo feature that enables it.
    pub feature: String,
}

/// The outcome of a parity run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParityReport {
    /// One row per model, backend, check and reference.
    pub rows: Vec<CheckResult>,
    /// Backends asked for but not compiled in.
    pub skipped: Vec<Skipped>,
}

impl ParityReport {
    /// True when every row passed (skipped backends do not fail the run).
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed)
    }

    /// The rows that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.rows.iter().filter(|r| !r.passed)
    }

    /// The table as Markdown, skipped backends listed below it, failure details last.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| model | backend | check | reference | max abs err | max rel err | tolerance (rtol, atol) | result |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2e} | {:.2e} | {:.0e}, {:.0e} | {} |",
                r.model,
                r.backend,
                r.check.name(),
                r.reference.name(),
                r.max_abs_err,
                r.max_rel_err,
                r.rtol,
                r.atol,
                if r.passed { "pass" } else { "**FAIL**" }
            );
        }
        for s in &self.skipped {
            let _ = writeln!(
                out,
                "\n{}: skipped, not compiled in (enable the cargo feature `{}`)",
                s.backend, s.feature
            );
        }
        let failures: Vec<_> = self.failures().collect();
        if !failures.is_empty() {
            out.push_str("\nFailures:\n");
            for r in failures {
                let _ = writeln!(
                    out,
                    "- {} on {} ({} vs {}): {}",
                    r.model,
                    r.backend,
                    r.check.name(),
                    r.reference.name(),
                    r.detail
                );
            }
        }
        out
    }
}

/// Run every model on every backend against PyTorch's fixtures and, for backends other than
/// flex, against flex's own result.
///
/// Backends not compiled in are listed in [`ParityReport::skipped`] with their cargo feature.
/// `perturb` changes the PyTorch weights before they are loaded on every backend (tests use
/// it to show that a wrong weight fails the right cells).
pub fn run_parity(
    fixture: &Fixture,
    models: &[ParityModel],
    backends: &[BackendKind],
    perturb: Option<Perturbation>,
) -> ParityReport {
    let mut report = ParityReport::default();
    let (compiled, missing): (Vec<_>, Vec<_>) =
        backends.iter().copied().partition(|b| b.is_compiled());
    report.skipped = missing
        .into_iter()
        .map(|b| Skipped {
            backend: b.name().into(),
            feature: b.cargo_feature().into(),
        })
        .collect();
    for &model in models {
        let expected = match pytorch_outputs(fixture, model) {
            Ok(expected) => expected,
            Err(reason) => {
                for &backend in &compiled {
                    report.rows.push(CheckResult::failed(
                        model.name(),
                        backend,
                        crate::Check::Logits,
                        Reference::Pytorch,
                        reason.clone(),
                    ));
                }
                continue;
            }
        };
        let mut flex: Option<Outputs> = None;
        // Flex first: it is the reference for the other backends.
        let mut order = compiled.clone();
        order.sort_by_key(|b| *b != BackendKind::Flex);
        for backend in order {
            match model_outputs(fixture, model, backend, perturb) {
                Ok(actual) => {
                    report.rows.extend(compare_outputs(
                        model,
                        backend,
                        &actual,
                        &expected,
                        Reference::Pytorch,
                    ));
                    match &flex {
                        Some(flex) if backend != BackendKind::Flex => {
                            report.rows.extend(compare_outputs(
                                model,
                                backend,
                                &actual,
                                flex,
                                Reference::Flex,
                            ));
                        }
                        _ => {}
                    }
                    if backend == BackendKind::Flex {
                        flex = Some(actual);
                    }
                }
                Err(reason) => report.rows.push(CheckResult::failed(
                    model.name(),
                    backend,
                    crate::Check::Logits,
                    Reference::Pytorch,
                    reason,
                )),
            }
        }
    }
    report
}
