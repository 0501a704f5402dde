//! Test helper: an analytic gradient against central finite differences of an f64 loss.

use burn::tensor::TensorData;
use dl_core::Tolerance;

/// Asserts that element `i` of the `analytic` gradient (an f32 tensor's data) is within
/// `tolerance` of `(loss(x + h·eᵢ) − loss(x − h·eᵢ)) / 2h` for every element `i` of `x`,
/// naming `what` and the element on failure.
#[track_caller]
pub(crate) fn assert_gradient(
    what: &str,
    analytic: TensorData,
    x: &[f64],
    h: f64,
    tolerance: Tolerance,
    loss: impl Fn(&[f64]) -> f64,
) {
    let analytic = analytic.try_into_vec::<f32>().expect("an f32 gradient");
    assert_eq!(analytic.len(), x.len(), "{what}: one gradient per element");
    for (i, &got) in analytic.iter().enumerate() {
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[i] += h;
        down[i] -= h;
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!(
            tolerance.accepts(f64::from(got), numeric),
            "{what}[{i}]: {got} vs finite differences {numeric} ({tolerance})"
        );
    }
}
