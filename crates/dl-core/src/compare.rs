//! Element-wise comparison of tensors with a readable report, used by every parity test.

use std::fmt;

use burn::tensor::{Tensor, TensorData};

/// How close two tensors must be: `|actual - expected| <= atol + rtol * |expected|`
/// element-wise, as `numpy.allclose` and `torch.allclose` define it.
///
/// ```
/// let tol = dl_core::Tolerance::new(1e-5, 1e-6);
/// assert!(tol.accepts(1.0, 1.000_001));
/// assert!(!tol.accepts(1.0, 1.1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance, scaled by `|expected|`.
    pub rtol: f64,
    /// Absolute tolerance, for values near zero.
    pub atol: f64,
}

impl Tolerance {
    /// A tolerance from its relative and absolute parts.
    pub const fn new(rtol: f64, atol: f64) -> Self {
        Self { rtol, atol }
    }

    /// Exact equality (both parts zero), for bit-identical checks.
    pub const EXACT: Tolerance = Tolerance::new(0.0, 0.0);

    /// Whether `actual` is close enough to `expected`. Two NaNs are equal; a NaN against a
    /// number, or infinities of different sign, are not.
    pub fn accepts(&self, actual: f64, expected: f64) -> bool {
        if actual.is_nan() || expected.is_nan() {
            return actual.is_nan() && expected.is_nan();
        }
        if actual.is_infinite() || expected.is_infinite() {
            return actual == expected;
        }
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtol {:e}, atol {:e}", self.rtol, self.atol)
    }
}

/// The outcome of [`compare`]: whether the tensors agree, and where they disagree most.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// Shape of the actual tensor.
    pub actual_shape: Vec<usize>,
    /// Shape of the expected tensor.
    pub expected_shape: Vec<usize>,
    /// The tolerance that was applied.
    pub tolerance: Tolerance,
    /// Largest `|actual - expected|` (NaN where one side is NaN and the other is not).
    pub max_abs_err: f64,
    /// Largest `|actual - expected| / |expected|` over elements with `expected != 0`.
    pub max_rel_err: f64,
    /// Multi-dimensional index of the element furthest outside the tolerance (or of the
    /// largest absolute error when everything passes); `None` for empty tensors.
    pub worst_index: Option<Vec<usize>>,
    /// The actual and expected values at `worst_index`.
    pub worst_values: Option<(f64, f64)>,
    /// Number of elements outside the tolerance.
    pub mismatched: usize,
    /// Number of elements compared.
    pub total: usize,
}

impl CompareReport {
    /// True when the shapes are equal and every element is within the tolerance.
    pub fn passed(&self) -> bool {
        self.shape_matches() && self.mismatched == 0
    }

    /// True when both tensors have the same shape.
    pub fn shape_matches(&self) -> bool {
        self.actual_shape == self.expected_shape
    }
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.shape_matches() {
            return write!(
                f,
                "shape mismatch: actual {:?}, expected {:?}",
                self.actual_shape, self.expected_shape
            );
        }
        let verdict = if self.passed() { "ok" } else { "FAILED" };
        write!(
            f,
            "{verdict}: {}/{} elements outside ({}); max abs err {:.3e}, max rel err {:.3e}",
            self.mismatched, self.total, self.tolerance, self.max_abs_err, self.max_rel_err
        )?;
        if let (Some(index), Some((actual, expected))) = (&self.worst_index, self.worst_values) {
            write!(
                f,
                "; worst at {index:?}: actual {actual:.8e}, expected {expected:.8e}"
            )?;
        }
        write!(f, "; shape {:?}", self.actual_shape)
    }
}

/// Compare two tensors' data element-wise.
///
/// Any float or integer dtype is read as `f64`; a dtype that cannot be read counts as a
/// shape mismatch with an empty shape.
///
/// ```
/// use burn::tensor::TensorData;
/// use dl_core::{compare, Tolerance};
/// let actual = TensorData::new(vec![1.0f32, 2.0, 3.5], [3]);
/// let expected = TensorData::new(vec![1.0f32, 2.0, 3.0], [3]);
/// let report = compare(&actual, &expected, Tolerance::new(1e-5, 1e-6));
/// assert!(!report.passed());
/// assert_eq!(report.worst_index, Some(vec![2]));
/// assert!(report.to_string().contains("worst at [2]"));
/// ```
pub fn compare(actual: &TensorData, expected: &TensorData, tolerance: Tolerance) -> CompareReport {
    let actual_shape = actual.shape().to_vec();
    let expected_shape = expected.shape().to_vec();
    let values = |data: &TensorData| data.iter::<f64>().collect::<Vec<f64>>();
    compare_slices(
        &values(actual),
        actual_shape,
        &values(expected),
        expected_shape,
        tolerance,
    )
}

/// [`compare`] for two tensors of any backend (they are read back to the host).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_core::{compare_tensors, BackendKind, Tolerance};
/// let device = BackendKind::Flex.device().unwrap();
/// let a = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
/// let report = compare_tensors(&a, &a.clone().add_scalar(1e-7), Tolerance::new(1e-5, 1e-6));
/// assert!(report.passed(), "{report}");
/// ```
pub fn compare_tensors<const D: usize>(
    actual: &Tensor<D>,
    expected: &Tensor<D>,
    tolerance: Tolerance,
) -> CompareReport {
    compare(&actual.to_data(), &expected.to_data(), tolerance)
}

/// [`compare`] over plain slices with their shapes.
///
/// ```
/// let report = dl_core::compare_slices(&[1.0, 2.0], vec![2], &[1.0, 2.0], vec![2], dl_core::Tolerance::EXACT);
/// assert!(report.passed());
/// ```
pub fn compare_slices(
    actual: &[f64],
    actual_shape: Vec<usize>,
    expected: &[f64],
    expected_shape: Vec<usize>,
    tolerance: Tolerance,
) -> CompareReport {
    let mut report = CompareReport {
        actual_shape,
        expected_shape,
        tolerance,
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        worst_index: None,
        worst_values: None,
        mismatched: 0,
        total: actual.len(),
    };
    if !report.shape_matches() || actual.len() != expected.len() {
        return report;
    }
    // The worst element is the one with the largest excess over its allowed error, so that a
    // failing report points at a failing element even when a larger but allowed error exists.
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let abs = (a - e).abs();
        let ok = tolerance.accepts(a, e);
        let excess = if ok {
            // <= 0; a matched NaN or infinity (NaN - NaN, inf - inf) is never the worst.
            let excess = abs - (tolerance.atol + tolerance.rtol * e.abs());
            if excess.is_nan() {
                f64::NEG_INFINITY
            } else {
                excess
            }
        } else if abs.is_nan() || abs.is_infinite() {
            f64::INFINITY
        } else {
            abs - (tolerance.atol + tolerance.rtol * e.abs())
        };
        if !ok {
            report.mismatched += 1;
        }
        if !(a.is_nan() && e.is_nan()) {
            if abs.is_nan() || abs > report.max_abs_err {
                report.max_abs_err = if abs.is_nan() { f64::NAN } else { abs };
            }
            if e != 0.0 && abs / e.abs() > report.max_rel_err {
                report.max_rel_err = abs / e.abs();
            }
        }
        let candidate = if excess.is_nan() {
            f64::INFINITY
        } else {
            excess
        };
        if worst.is_none_or(|(_, w)| candidate > w) {
            worst = Some((i, candidate));
        }
    }
    if let Some((i, _)) = worst {
        report.worst_index = Some(crate::validate::unravel(i, &report.actual_shape));
        report.worst_values = Some((actual[i], expected[i]));
    }
    report
}

/// Test assertion: panic with the [`CompareReport`] when `actual` is not close to `expected`.
///
/// Meant for tests and parity checks, where a panic is the failure report; library code
/// uses [`compare`] and decides itself.
///
/// ```
/// use burn::tensor::TensorData;
/// let a = TensorData::new(vec![0.5f32], [1]);
/// dl_core::assert_close(&a, &a, dl_core::Tolerance::EXACT, "identity");
/// ```
#[track_caller]
pub fn assert_close(actual: &TensorData, expected: &TensorData, tolerance: Tolerance, what: &str) {
    let report = compare(actual, expected, tolerance);
    assert!(report.passed(), "{what}: {report}");
}

/// [`assert_close`] for tensors: `assert_tensor_close!(actual, expected, rtol, atol)` with an
/// optional name, printing the report on failure.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let x = Tensor::<1>::from_floats([1.0, 2.0], &device);
/// dl_core::assert_tensor_close!(x.clone(), x, 1e-5, 1e-6, "x");
/// ```
#[macro_export]
macro_rules! assert_tensor_close {
    ($actual:expr, $expected:expr, $rtol:expr, $atol:expr) => {
        $crate::assert_tensor_close!($actual, $expected, $rtol, $atol, stringify!($actual))
    };
    ($actual:expr, $expected:expr, $rtol:expr, $atol:expr, $what:expr) => {
        $crate::assert_close(
            &$actual.to_data(),
            &$expected.to_data(),
            $crate::Tolerance::new($rtol, $atol),
            &$what,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: &[f32], shape: &[usize]) -> TensorData {
        TensorData::new(v.to_vec(), shape.to_vec())
    }

    #[test]
    fn equal_tensors_pass() {
        // Two separately built tensors with equal values in different dtypes (f32 and f64),
        // and -0.0 against 0.0, which are equal numbers.
        let a = data(&[1.0, -2.0, 3.0, -0.0], &[2, 2]);
        let e = TensorData::new(vec![1.0f64, -2.0, 3.0, 0.0], [2, 2]);
        let r = compare(&a, &e, Tolerance::EXACT);
        assert!(r.passed(), "{r}");
        assert_eq!(r.max_abs_err, 0.0);
        assert_eq!(r.mismatched, 0);
        assert_eq!(r.total, 4);
        // Within tolerance is a pass that still reports the error it allowed.
        let near = data(&[1.0, -2.0, 3.0 + 2e-6, 0.0], &[2, 2]);
        let r = compare(&near, &e, Tolerance::new(1e-5, 1e-6));
        assert!(r.passed(), "{r}");
        assert!((r.max_abs_err - 2e-6).abs() < 1e-7, "{r}");
    }

    #[test]
    fn reports_worst_element_with_its_index() {
        let a = data(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let e = data(&[1.0, 2.0, 3.0, 4.0, 5.5, 6.0], &[2, 3]);
        let r = compare(&a, &e, Tolerance::new(1e-5, 1e-6));
        assert!(!r.passed());
        assert_eq!(r.mismatched, 1);
        assert_eq!(r.worst_index, Some(vec![1, 1]));
        assert_eq!(r.worst_values, Some((5.0, 5.5)));
        assert!((r.max_abs_err - 0.5).abs() < 1e-12);
        assert!((r.max_rel_err - 0.5 / 5.5).abs() < 1e-9);
        let text = r.to_string();
        assert!(text.starts_with("FAILED: 1/6 elements outside"), "{text}");
        assert!(text.contains("worst at [1, 1]"), "{text}");
    }

    #[test]
    fn worst_is_the_failing_element_not_the_largest_allowed_error() {
        // 100 vs 100.0005 is within rtol 1e-5 (allowed 1e-3); 0 vs 1e-4 is outside atol 1e-6.
        let a = data(&[100.0005, 1e-4], &[2]);
        let e = data(&[100.0, 0.0], &[2]);
        let r = compare(&a, &e, Tolerance::new(1e-5, 1e-6));
        assert_eq!(r.mismatched, 1);
        assert_eq!(r.worst_index, Some(vec![1]));
    }

    #[test]
    fn shape_mismatch_fails_with_both_shapes() {
        let r = compare(
            &data(&[1.0, 2.0], &[2]),
            &data(&[1.0, 2.0], &[1, 2]),
            Tolerance::EXACT,
        );
        assert!(!r.passed());
        assert_eq!(r.to_string(), "shape mismatch: actual [2], expected [1, 2]");
    }

    #[test]
    fn nan_against_number_fails_and_nan_against_nan_passes() {
        let r = compare(
            &data(&[f32::NAN, 1.0], &[2]),
            &data(&[0.0, 1.0], &[2]),
            Tolerance::new(1.0, 1.0),
        );
        assert!(!r.passed());
        assert_eq!(r.worst_index, Some(vec![0]));
        // NaN where NaN is expected, and equal infinities, are matches (separate tensors).
        let expected = data(&[f32::NAN, f32::INFINITY], &[2]);
        let r = compare(
            &data(&[f32::NAN, f32::INFINITY], &[2]),
            &expected,
            Tolerance::EXACT,
        );
        assert!(r.passed(), "{r}");
        assert_eq!(r.mismatched, 0);
        let r = compare(
            &data(&[f32::NAN, f32::NEG_INFINITY], &[2]),
            &expected,
            Tolerance::EXACT,
        );
        assert!(!r.passed());
        assert_eq!(r.worst_index, Some(vec![1]));
    }

    #[test]
    #[should_panic(expected = "logits: FAILED")]
    fn assert_close_panics_with_the_report() {
        assert_close(
            &data(&[1.0], &[1]),
            &data(&[2.0], &[1]),
            Tolerance::new(1e-5, 1e-6),
            "logits",
        );
    }

    #[test]
    fn empty_tensors_compare_equal() {
        let r = compare(&data(&[], &[0, 3]), &data(&[], &[0, 3]), Tolerance::EXACT);
        assert!(r.passed());
        assert_eq!(r.worst_index, None);
    }
}
