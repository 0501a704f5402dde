//! Range checks shared by the optimizer, schedule and clipping configs.
//!
//! Each check names the setting (for example `Adam beta_1`) and the accepted range, so that
//! the error can be shown to a user as is, as PyTorch's `ValueError`s are.

use dl_core::{Error, Result};

/// `value` must be a finite number `>= 0` (NaN and infinities are refused).
pub(crate) fn non_negative(what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(what, "a finite number >= 0", value))
    }
}

/// `value` must be a finite number (any sign).
pub(crate) fn finite(what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(what, "a finite number", value))
    }
}

/// `value` must lie in `[0, 1)`, as PyTorch requires of Adam's betas.
pub(crate) fn unit_half_open(what: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(what, "a number in [0, 1)", value))
    }
}

/// `value` must be a whole number `> 0`.
pub(crate) fn positive_count(what: &str, value: usize) -> Result<()> {
    if value > 0 {
        Ok(())
    } else {
        Err(Error::invalid(what, "an integer > 0", value))
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
        assert!(positive_count("step_size", 1).is_ok());
        assert!(positive_count("step_size", 0).is_err());
    }
}
