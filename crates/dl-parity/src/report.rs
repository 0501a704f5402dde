//! The parity table: every model on every backend, printed, and saved as JSON and Markdown.

use std::fmt::Write as _;

use dl_core::{BackendKind, Fixture};
use serde::Serialize;

use crate::check::{CheckResult, Reference};
use crate::run::{Outputs, Perturbation, compare_outputs, model_outputs, pytorch_outputs};
use dl_models::ModelKind;

/// A backend that was asked for but is not compiled into this build.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The backend's name.
    pub backend: String,
    /// The cargo feature that enables it.
    pub feature: String,
}

/// A backend that is compiled in but could not start on this machine (no GPU, no driver, a
/// CPU-only LibTorch for `tch-cuda`).
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// The backend's name.
    pub backend: String,
    /// Why it could not start, in the backend's own words.
    pub reason: String,
}

/// The outcome of a parity run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParityReport {
    /// One row per model, backend, check and reference.
    pub rows: Vec<CheckResult>,
    /// Backends asked for but not compiled in.
    pub skipped: Vec<Skipped>,
    /// Backends compiled in and asked for, but unable to start here.
    pub unavailable: Vec<Unavailable>,
}

impl ParityReport {
    /// True when every row passed and every compiled backend that was asked for could start.
    /// Backends not compiled in do not fail the run (they are a build choice, listed in
    /// [`ParityReport::skipped`]); a compiled one that cannot start does, since nothing about
    /// it was checked.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed) && self.unavailable.is_empty()
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
        for u in &self.unavailable {
            let _ = writeln!(
                out,
                "\n{}: **not checked**, could not start here: {}",
                u.backend, u.reason
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
/// Backends not compiled in are listed in [`ParityReport::skipped`] with their cargo feature,
/// and compiled ones that cannot start here (their [`BackendKind::device`] fails) in
/// [`ParityReport::unavailable`] with the reason. `perturb` changes the PyTorch weights before
/// they are loaded on every backend (tests use it to show that a wrong weight fails the right
/// cells).
pub fn run_parity(
    fixture: &Fixture,
    models: &[ModelKind],
    backends: &[BackendKind],
    perturb: Option<Perturbation>,
) -> ParityReport {
    run_parity_probed(fixture, models, backends, perturb, |b| {
        b.device().map(|_| ())
    })
}

/// [`run_parity`] with the check that a backend can start passed in (tests use it to stand
/// for a machine without a GPU).
fn run_parity_probed(
    fixture: &Fixture,
    models: &[ModelKind],
    backends: &[BackendKind],
    perturb: Option<Perturbation>,
    probe: impl Fn(BackendKind) -> dl_core::Result<()>,
) -> ParityReport {
    let mut report = ParityReport::default();
    let started = start_backends(backends, probe, &mut report);
    for &model in models {
        check_model(fixture, model, &started, perturb, &mut report);
    }
    report
}

/// The backends of `backends` that are compiled in and start here, Flex first (the reference
/// for the others); the rest go to `report` as skipped (not compiled) or unavailable.
fn start_backends(
    backends: &[BackendKind],
    probe: impl Fn(BackendKind) -> dl_core::Result<()>,
    report: &mut ParityReport,
) -> Vec<BackendKind> {
    let (compiled, missing): (Vec<_>, Vec<_>) =
        backends.iter().copied().partition(|b| b.is_compiled());
    report.skipped = missing
        .into_iter()
        .map(|b| Skipped {
            backend: b.name().into(),
            feature: b.cargo_feature().into(),
        })
        .collect();
    let mut started = Vec::new();
    for backend in compiled {
        match probe(backend) {
            Ok(()) => started.push(backend),
            Err(err) => report.unavailable.push(Unavailable {
                backend: backend.name().into(),
                reason: match err {
                    dl_core::Error::BackendUnavailable { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
    started.sort_by_key(|b| *b != BackendKind::Flex);
    started
}

/// The rows of one model: every backend against PyTorch, and every backend but Flex against
/// Flex; a model or backend that cannot run is one failed row naming why.
fn check_model(
    fixture: &Fixture,
    model: ModelKind,
    backends: &[BackendKind],
    perturb: Option<Perturbation>,
    report: &mut ParityReport,
) {
    let failed = |backend, reason| {
        CheckResult::failed(
            model.case_name(),
            backend,
            crate::Check::Logits,
            Reference::Pytorch,
            reason,
        )
    };
    let expected = match pytorch_outputs(fixture, model) {
        Ok(expected) => expected,
        Err(reason) => {
            for &backend in backends {
                report.rows.push(failed(backend, reason.clone()));
            }
            return;
        }
    };
    let mut flex: Option<Outputs> = None;
    for &backend in backends {
        let actual = match model_outputs(fixture, model, backend, perturb) {
            Ok(actual) => actual,
            Err(reason) => {
                report.rows.push(failed(backend, reason));
                continue;
            }
        };
        report.rows.extend(compare_outputs(
            model,
            backend,
            &actual,
            &expected,
            Reference::Pytorch,
        ));
        match &flex {
            Some(flex) => report.rows.extend(compare_outputs(
                model,
                backend,
                &actual,
                flex,
                Reference::Flex,
            )),
            None if backend == BackendKind::Flex => flex = Some(actual),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "flex", feature = "ndarray"))]
    #[test]
    fn a_backend_that_cannot_start_is_listed_and_fails_the_run() {
        let fixture = Fixture::open(dl_core::fixtures_dir().join("models.safetensors"))
            .expect("fixtures/models.safetensors");
        let backends = [BackendKind::Flex, BackendKind::NdArray];
        let report = run_parity_probed(&fixture, &[ModelKind::Mlp], &backends, None, |b| {
            if b == BackendKind::NdArray {
                Err(dl_core::Error::BackendUnavailable {
                    backend: b.name().into(),
                    reason: "no driver on this test machine".into(),
                })
            } else {
                Ok(())
            }
        });
        assert!(report.rows.iter().all(|r| r.backend == "flex" && r.passed));
        assert!(!report.rows.is_empty());
        assert_eq!(report.unavailable.len(), 1);
        assert_eq!(report.unavailable[0].backend, "ndarray");
        assert!(!report.passed(), "an unchecked backend must not pass");
        let table = report.to_markdown();
        assert!(
            table.contains("ndarray: **not checked**, could not start here: no driver"),
            "{table}"
        );
    }
}
