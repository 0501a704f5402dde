//! Small input checks shared by the layers' `try_forward` methods.

use dl_core::{Error, Result};

/// `value` must be at least 1.
pub(crate) fn positive(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(what, "at least 1", 0));
    }
    Ok(())
}

/// A probability in `[0, 1)`, as dropout needs it.
pub(crate) fn dropout_prob(what: &str, prob: f64) -> Result<()> {
    if !prob.is_finite() || !(0.0..1.0).contains(&prob) {
        return Err(Error::invalid(what, "a probability in [0, 1)", prob));
    }
    Ok(())
}

/// The last axis of `dims` must be `expected`.
pub(crate) fn last_dim(what: &str, dims: &[usize], expected: usize) -> Result<()> {
    match dims.last() {
        Some(&last) if last == expected => Ok(()),
        _ => {
            let mut want = dims.to_vec();
            if let Some(last) = want.last_mut() {
                *last = expected;
            }
            Err(Error::shape_mismatch(what, &want, dims))
        }
    }
}

/// Exact shape equality.
pub(crate) fn shape(what: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual != expected {
        return Err(Error::shape_mismatch(what, expected, actual));
    }
    Ok(())
}

/// Unwrap a checked result in a `forward` whose contract is to panic on a bad input.
#[track_caller]
pub(crate) fn or_panic<T>(result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}
