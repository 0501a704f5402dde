//! How a loss turns its per-sample (or per-element) values into what it returns.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;
use dl_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// PyTorch's `reduction` argument: `"mean"` (the default), `"sum"` or `"none"`.
///
/// Serialised (and parsed, and displayed) as PyTorch spells it, in lower case.
///
/// ```
/// use dl_loss::Reduction;
/// assert_eq!(Reduction::default(), Reduction::Mean);
/// assert_eq!("sum".parse::<Reduction>()?, Reduction::Sum);
/// assert_eq!(Reduction::None.to_string(), "none");
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// The mean over the values: the loss is returned as shape `[1]`.
    #[default]
    Mean,
    /// The sum of the values: the loss is returned as shape `[1]`.
    Sum,
    /// No reduction: one value per sample (or per element, flattened), and the gradient is
    /// that of their sum.
    None,
}

impl Reduction {
    /// Every reduction, in the order PyTorch documents them.
    pub const ALL: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

    /// The name PyTorch uses.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::None => "none",
        }
    }

    /// Reduce a vector of per-sample (or per-element) losses: its mean or sum as shape `[1]`,
    /// or the vector itself for [`Reduction::None`].
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use dl_loss::Reduction;
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let values = Tensor::<1>::from_floats([1.0, 2.0, 6.0], &device);
    /// let mean = Reduction::Mean.reduce(values.clone()).try_into_vec_as::<f32>().unwrap();
    /// assert_eq!(mean, vec![3.0]);
    /// assert_eq!(Reduction::None.reduce(values).dims(), [3]);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn reduce(self, values: Tensor<1>) -> Tensor<1> {
        match self {
            Reduction::Mean => values.mean(),
            Reduction::Sum => values.sum(),
            Reduction::None => values,
        }
    }

    /// The derivative of the reduced loss with respect to each of `count` values:
    /// `1 / count` for the mean, `1` for the sum and for no reduction (whose gradient is that
    /// of the sum).
    ///
    /// ```
    /// assert_eq!(dl_loss::Reduction::Mean.gradient_scale(4), 0.25);
    /// assert_eq!(dl_loss::Reduction::None.gradient_scale(4), 1.0);
    /// ```
    pub fn gradient_scale(self, count: usize) -> f64 {
        match self {
            Reduction::Mean => 1.0 / count as f64,
            Reduction::Sum | Reduction::None => 1.0,
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduction {
    type Err = Error;

    /// Parse PyTorch's names `"mean"`, `"sum"` and `"none"` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            _ => Err(Error::invalid(
                "reduction",
                "one of mean, sum, none",
                format!("`{s}`"),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn names_round_trip_through_parse_display_and_serde() {
        for reduction in Reduction::ALL {
            assert_eq!(reduction.name().parse::<Reduction>().unwrap(), reduction);
            assert_eq!(reduction.to_string(), reduction.name());
            let json = serde_json::to_string(&reduction).unwrap();
            assert_eq!(json, format!("\"{}\"", reduction.name()));
            assert_eq!(serde_json::from_str::<Reduction>(&json).unwrap(), reduction);
        }
        assert_eq!(" MEAN ".parse::<Reduction>().unwrap(), Reduction::Mean);
    }

    #[test]
    fn unknown_name_is_an_error_listing_the_valid_ones() {
        let err = "avg".parse::<Reduction>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid reduction: expected one of mean, sum, none, got `avg`"
        );
    }

    #[test]
    fn reduce_and_gradient_scale_agree() {
        // values 1, 2, 6: mean 3, sum 9; d mean / d value = 1/3.
        let device = BackendKind::Flex.device().unwrap();
        let values = Tensor::<1>::from_floats([1.0, 2.0, 6.0], &device);
        let get = |t: Tensor<1>| t.try_into_vec_as::<f32>().unwrap();
        assert_eq!(get(Reduction::Mean.reduce(values.clone())), vec![3.0]);
        assert_eq!(get(Reduction::Sum.reduce(values.clone())), vec![9.0]);
        assert_eq!(get(Reduction::None.reduce(values)), vec![1.0, 2.0, 6.0]);
        assert!((Reduction::Mean.gradient_scale(3) - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(Reduction::Sum.gradient_scale(3), 1.0);
    }
}
