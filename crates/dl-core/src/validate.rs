//! The input checks every dl-rs crate shares: sizes, probabilities, ranges and shapes.
//!
//! Each check names the setting or tensor (`what`, for example `"lstm hidden_size"` or
//! `"Adam beta_1"`) and the accepted values, so its [`Error`] can be shown to a user as is,
//! as PyTorch's `ValueError`s are. Configurations call them in `init`, layers and models in
//! `try_forward`; a panicking `forward` passes the same error to [`or_panic`].
//!
//! ```
//! use dl_core::validate;
//!
//! assert!(validate::positive("lstm hidden_size", 64).is_ok());
//! let err = validate::probability("attention dropout", 1.5).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid attention dropout: expected a probability in [0, 1), got 1.5"
//! );
//! ```

use crate::{Error, Result};

/// `value` must be at least 1 (a size, a count, a number of layers or steps).
///
/// ```
/// assert!(dl_core::validate::positive("batch size", 0).is_err());
/// ```
pub fn positive(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(what, "at least 1", value));
    }
    Ok(())
}

/// A probability in `[0, 1)`, as dropout needs it (NaN refused).
///
/// ```
/// assert!(dl_core::validate::probability("dropout", 0.0).is_ok());
/// assert!(dl_core::validate::probability("dropout", 1.0).is_err());
/// ```
pub fn probability(what: &str, prob: f64) -> Result<()> {
    if !(0.0..1.0).contains(&prob) {
        return Err(Error::invalid(what, "a probability in [0, 1)", prob));
    }
    Ok(())
}

/// A number in `[0, 1)` that is not a probability, as PyTorch requires of Adam's betas.
///
/// ```
/// assert!(dl_core::validate::unit_half_open("Adam beta_2", 0.999).is_ok());
/// assert!(dl_core::validate::unit_half_open("Adam beta_2", 1.0).is_err());
/// ```
pub fn unit_half_open(what: &str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        return Err(Error::invalid(what, "a number in [0, 1)", value));
    }
    Ok(())
}

/// A finite number `>= 0` (NaN and infinities refused), as learning rates and decays are.
///
/// ```
/// assert!(dl_core::validate::non_negative("SGD lr", 0.0).is_ok());
/// assert!(dl_core::validate::non_negative("SGD lr", f64::NAN).is_err());
/// ```
pub fn non_negative(what: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Error::invalid(what, "a finite number >= 0", value));
    }
    Ok(())
}

/// A finite number of any sign.
///
/// ```
/// assert!(dl_core::validate::finite("momentum", -0.5).is_ok());
/// assert!(dl_core::validate::finite("momentum", f64::INFINITY).is_err());
/// ```
pub fn finite(what: &str, value: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::invalid(what, "a finite number", value));
    }
    Ok(())
}

/// The shape `actual` must equal `expected`.
///
/// ```
/// assert!(dl_core::validate::shape("lstm h_0", &[1, 4, 8], &[1, 4, 8]).is_ok());
/// assert!(dl_core::validate::shape("lstm h_0", &[4, 8], &[1, 4, 8]).is_err());
/// ```
pub fn shape(what: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual != expected {
        return Err(Error::shape_mismatch(what, expected, actual));
    }
    Ok(())
}

/// The last axis of `dims` must be `expected`; the error shows the shape that was expected.
///
/// ```
/// let err = dl_core::validate::last_dim("lstm input", &[2, 5, 3], 4).unwrap_err();
/// assert!(err.to_string().contains("[2, 5, 4]"), "{err}");
/// ```
pub fn last_dim(what: &str, dims: &[usize], expected: usize) -> Result<()> {
    match dims.last() {
        Some(&last) if last == expected => Ok(()),
        _ => {
            let mut want = dims.to_vec();
            match want.last_mut() {
                Some(last) => *last = expected,
                None => want.push(expected),
            }
            Err(Error::shape_mismatch(what, &want, dims))
        }
    }
}

/// The row-major index of element `flat` in a tensor of shape `dims`, for error messages.
///
/// ```
/// assert_eq!(dl_core::validate::unravel(5, &[2, 3]), vec![1, 2]);
/// ```
pub fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for (slot, &dim) in index.iter_mut().zip(dims).rev() {
        if dim > 0 {
            *slot = flat % dim;
            flat /= dim;
        }
    }
    index
}

/// Unwrap a checked result in a `forward` whose contract is to panic on a bad input, with
/// the error's message (the convention of docs/architecture.md: `try_forward` returns the
/// error, `forward` panics with it).
///
/// ```should_panic
/// dl_core::validate::or_panic(dl_core::validate::positive("num_heads", 0));
/// ```
#[track_caller]
pub fn or_panic<T>(result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_with_the_setting_named() {
        assert!(non_negative("lr", 0.0).is_ok());
        assert!(non_negative("lr", 1e-3).is_ok());
        let err = non_negative("SGD lr", -0.1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid SGD lr: expected a finite number >= 0, got -0.1"
        );
        assert!(non_negative("lr", f64::NAN).is_err());
        assert!(non_negative("lr", f64::INFINITY).is_err());
        assert!(finite("x", -3.0).is_ok());
        assert!(finite("x", f64::NAN).is_err());
        assert!(unit_half_open("beta", 0.0).is_ok());
        assert!(unit_half_open("beta", 0.999).is_ok());
        assert!(unit_half_open("beta", 1.0).is_err());
        assert!(unit_half_open("beta", -0.1).is_err());
        assert!(unit_half_open("beta", f64::NAN).is_err());
        assert!(probability("p", f64::NAN).is_err());
        assert!(probability("p", -0.0).is_ok());
        assert!(positive("step_size", 1).is_ok());
        let err = positive("step_size", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid step_size: expected at least 1, got 0"
        );
    }

    #[test]
    fn shape_errors_show_the_expected_and_the_actual_shape() {
        let err = shape("attn_mask", &[3, 4], &[3, 5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("attn_mask") && err.contains("[3, 5]") && err.contains("[3, 4]"));
        assert!(last_dim("x", &[2, 7], 7).is_ok());
        let err = last_dim("x", &[], 7).unwrap_err().to_string();
        assert!(err.contains("[7]"), "{err}");
    }

    #[test]
    fn unravel_is_row_major_and_survives_empty_axes() {
        assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel(13, &[2, 3, 4]), vec![1, 0, 1]);
        assert_eq!(unravel(0, &[0, 3]), vec![0, 0]);
    }

    #[test]
    #[should_panic(expected = "invalid num_heads: expected at least 1, got 0")]
    fn or_panic_panics_with_the_error() {
        or_panic(positive("num_heads", 0));
    }
}
