//! Finding NaN and infinite weights in a state dict before they reach a model.

use burn::tensor::{DType, TensorData, bf16, f16};

use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// How many of a tensor's values are NaN, +Inf and -Inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NonFiniteCount {
    /// NaN values.
    pub nan: usize,
    /// +Inf values.
    pub pos_inf: usize,
    /// -Inf values.
    pub neg_inf: usize,
    /// All values of the tensor.
    pub total: usize,
}

impl NonFiniteCount {
    /// NaN and infinite values together.
    pub fn count(&self) -> usize {
        self.nan + self.pos_inf + self.neg_inf
    }

    fn add(&mut self, value: f64) {
        self.total += 1;
        if value.is_nan() {
            self.nan += 1;
        } else if value == f64::INFINITY {
            self.pos_inf += 1;
        } else if value == f64::NEG_INFINITY {
            self.neg_inf += 1;
        }
    }

    fn of<T: Copy + Into<f64>>(values: &[T]) -> Self {
        let mut count = Self::default();
        values.iter().for_each(|v| count.add((*v).into()));
        count
    }
}

/// Count the non-finite values of a floating-point tensor; integer and boolean tensors are
/// finite by construction, and data that cannot be read as its dtype is left to the loader.
fn count(data: &TensorData) -> NonFiniteCount {
    fn values<T: burn::tensor::Element + Copy + Into<f64>>(data: &TensorData) -> NonFiniteCount {
        match data.as_slice::<T>() {
            Ok(slice) => NonFiniteCount::of(slice),
            // Bytes not aligned for `T`: `to_vec` copies them out.
            Err(_) => data
                .try_to_vec::<T>()
                .map(|v| NonFiniteCount::of(&v))
                .unwrap_or_default(),
        }
    }
    match data.dtype() {
        DType::F32 | DType::Flex32 => values::<f32>(data),
        DType::F64 => values::<f64>(data),
        DType::F16 => values::<f16>(data),
        DType::BF16 => values::<bf16>(data),
        _ => NonFiniteCount::default(),
    }
}

impl StateDict {
    /// Every tensor holding NaN or infinite values, with the counts, in key order.
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("x");
    /// state.insert("w", TensorData::new(vec![1.0f32, f32::NAN, f32::INFINITY], [3]));
    /// state.insert("b", TensorData::new(vec![0.0f32], [1]));
    /// let bad = state.non_finite();
    /// assert_eq!(bad.len(), 1);
    /// assert_eq!((bad[0].0.as_str(), bad[0].1.count()), ("w", 2));
    /// ```
    pub fn non_finite(&self) -> Vec<(String, NonFiniteCount)> {
        self.tensors
            .iter()
            .map(|(key, data)| (key.clone(), count(data)))
            .filter(|(_, c)| c.count() > 0)
            .collect()
    }

    /// Check every tensor for NaN and infinite values.
    ///
    /// Strict: the first such tensor (in key order) is [`Error::NonFinite`] naming the file,
    /// the key and the count. Not strict: one warning per such tensor is returned (for a
    /// load report's notes), and an all-finite state dict returns none.
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("ckpt.pt");
    /// state.insert("fc.weight", TensorData::new(vec![f32::NAN, 1.0], [2]));
    /// let warnings = state.check_finite(false)?;
    /// assert_eq!(warnings, ["`fc.weight`: 1 of 2 values not finite (1 NaN, 0 +Inf, 0 -Inf)"]);
    /// let err = state.check_finite(true).unwrap_err();
    /// assert_eq!(err.to_string(), "ckpt.pt: tensor `fc.weight` holds 1 non-finite value(s) (NaN or ±Inf)");
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn check_finite(&self, strict: bool) -> Result<Vec<String>> {
        let bad = self.non_finite();
        if strict && let Some((key, count)) = bad.first() {
            return Err(Error::NonFinite {
                path: self.source.clone(),
                key: key.clone(),
                count: count.count(),
            });
        }
        Ok(bad
            .iter()
            .map(|(key, c)| {
                format!(
                    "`{key}`: {} of {} values not finite ({} NaN, {} +Inf, {} -Inf)",
                    c.count(),
                    c.total,
                    c.nan,
                    c.pos_inf,
                    c.neg_inf
                )
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_in_every_float_dtype() {
        let mut state = StateDict::new("s");
        state.insert(
            "f32",
            TensorData::new(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0], [4]),
        );
        state.insert("f64", TensorData::new(vec![f64::NAN, 2.0], [2]));
        state.insert(
            "f16",
            TensorData::new(vec![f16::INFINITY, f16::from_f32(1.0)], [2]),
        );
        state.insert("bf16", TensorData::new(vec![bf16::NEG_INFINITY], [1]));
        state.insert("int", TensorData::new(vec![i64::MAX], [1]));
        state.insert("fine", TensorData::new(vec![f32::MAX, f32::MIN], [2]));
        let bad = state.non_finite();
        let expect = |nan, pos_inf, neg_inf, total| NonFiniteCount {
            nan,
            pos_inf,
            neg_inf,
            total,
        };
        assert_eq!(
            bad,
            vec![
                ("bf16".to_string(), expect(0, 0, 1, 1)),
                ("f16".to_string(), expect(0, 1, 0, 2)),
                ("f32".to_string(), expect(1, 1, 1, 4)),
                ("f64".to_string(), expect(1, 0, 0, 2)),
            ]
        );
        assert_eq!(state.check_finite(false).unwrap().len(), 4);
        let err = state.check_finite(true).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { path, key, count: 1 } if path == "s" && key == "bf16"),
            "{err}"
        );
    }

    #[test]
    fn finite_state_passes_strict() {
        let mut state = StateDict::new("s");
        state.insert("w", TensorData::new(vec![0.0f32, -0.0, 1e-45], [3]));
        assert!(state.check_finite(true).unwrap().is_empty());
        assert!(
            StateDict::new("empty")
                .check_finite(true)
                .unwrap()
                .is_empty()
        );
    }
}
