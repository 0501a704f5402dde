//! Statistical checks of parameter initialisations (test-only).

use burn::tensor::Tensor;

/// Assert that `values` look like independent draws from `U(-bound, bound)`.
///
/// For `X ~ U(-b, b)`: `E[X] = 0`, `Var X = b²/3`, `E[X²] = b²/3`, `Var X² = 4b⁴/45`. The sample
/// mean and the sample mean square must be within 5 standard errors of those values, every
/// value within the bound, and the largest `|x|` near the bound (so a too-narrow range fails).
#[track_caller]
pub(crate) fn assert_uniform(values: &[f64], bound: f64, what: &str) {
    let n = values.len() as f64;
    assert!(
        n >= 1000.0,
        "{what}: too few values ({n}) for a statistical check"
    );
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max_abs <= bound * (1.0 + 1e-6),
        "{what}: |x| = {max_abs} beyond bound {bound}"
    );
    // P(max |x| < 0.99 b) = 0.99^n, below 1e-4 for n >= 1000.
    assert!(
        max_abs > 0.99 * bound,
        "{what}: max |x| = {max_abs}, bound {bound}"
    );
    let mean = values.iter().sum::<f64>() / n;
    let mean_se = (bound * bound / 3.0 / n).sqrt();
    assert!(
        mean.abs() < 5.0 * mean_se,
        "{what}: mean {mean}, 5 s.e. {}",
        5.0 * mean_se
    );
    let ms = values.iter().map(|v| v * v).sum::<f64>() / n;
    let ms_expected = bound * bound / 3.0;
    let ms_se = (4.0 / 45.0f64).sqrt() * bound * bound / n.sqrt();
    assert!(
        (ms - ms_expected).abs() < 5.0 * ms_se,
        "{what}: mean square {ms}, expected {ms_expected} ± {}",
        5.0 * ms_se
    );
}

/// The values of a tensor as `f64`.
pub(crate) fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor.into_data().iter::<f64>().collect()
}

/// Assert every value equals `expected`.
#[track_caller]
pub(crate) fn assert_all(values: &[f64], expected: f64, what: &str) {
    assert!(!values.is_empty(), "{what}: empty");
    for v in values {
        assert_eq!(*v, expected, "{what}");
    }
}
