//! Helpers for the unit tests of this crate.

#![allow(clippy::unwrap_used)]

use burn::tensor::{Device, Tensor};
use dl_core::BackendKind;

/// The default (Flex) device, without autodiff.
pub(crate) fn device() -> Device {
    BackendKind::Flex.device().unwrap()
}

/// A float tensor's values, flattened.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

/// Assert f32 results against hand-derived f64 values: within 1e-6 absolute plus 1e-6
/// relative (f32 arithmetic; the relative part matters for the ±1e4 cases).
#[track_caller]
pub(crate) fn close(actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        let allowed = 1e-6 + 1e-6 * e.abs();
        assert!(
            (f64::from(*a) - e).abs() <= allowed,
            "{actual:?} vs {expected:?}"
        );
    }
}
