//! What every loss accepts: a non-empty input, and targets that fit it (the same shape, class
//! indices in range, ±1 labels). The generic checks live in `dl_core::validate`.
//!
//! Every check returns a [`dl_core::Error`] that names the offending tensor (`loss input` or
//! `loss target`), what was expected and what was given; no check panics.

use burn::tensor::{Bool, Int, Tensor};
use dl_core::{Error, Result};

/// The number of elements of a non-empty input, or [`Error::Empty`] naming its shape.
pub(crate) fn non_empty(dims: &[usize]) -> Result<usize> {
    let count: usize = dims.iter().product();
    if count == 0 {
        return Err(Error::Empty {
            what: format!("loss input (shape {dims:?})"),
        });
    }
    Ok(count)
}

/// The target must have the input's shape (no broadcasting); returns the element count.
pub(crate) fn same_shape(input: &[usize], target: &[usize]) -> Result<usize> {
    let count = non_empty(input)?;
    if input != target {
        return Err(Error::ShapeMismatch {
            what: "loss target".into(),
            expected: format!("{input:?} (the shape of the loss input)"),
            actual: format!("{target:?}"),
        });
    }
    Ok(count)
}

/// Logits `[n, c]` with class indices `[n]`: the batch must be non-empty, the sizes must
/// agree, and every index must lie in `0..c`. Reads the indices to the host once.
pub(crate) fn class_targets(input: [usize; 2], target: &Tensor<1, Int>) -> Result<()> {
    let [n, c] = input;
    non_empty(&input)?;
    let [m] = target.dims();
    if m != n {
        return Err(Error::ShapeMismatch {
            what: "loss target".into(),
            expected: format!("[{n}] (the batch size of the loss input [{n}, {c}])"),
            actual: format!("[{m}]"),
        });
    }
    let data = target.to_data();
    let bad = data
        .iter::<i64>()
        .enumerate()
        .find(|&(_, index)| usize::try_from(index).map_or(true, |index| index >= c));
    match bad {
        Some((position, index)) => Err(Error::invalid(
            format!("class index at position {position} of the loss target"),
            format!("a value in 0..{c}"),
            index,
        )),
        None => Ok(()),
    }
}

/// Labels of a hinge loss must each be exactly -1 or +1. Reads the labels to the host once.
pub(crate) fn plus_minus_one<const D: usize>(target: &Tensor<D>) -> Result<()> {
    let dims = target.dims();
    let data = target.to_data();
    let bad = data
        .iter::<f64>()
        .enumerate()
        .find(|&(_, label)| label != 1.0 && label != -1.0);
    match bad {
        Some((flat, label)) => Err(Error::invalid(
            format!(
                "hinge label at index {:?} of the loss target",
                dl_core::validate::unravel(flat, &dims)
            ),
            "-1 or +1",
            label,
        )),
        None => Ok(()),
    }
}

/// `[n, c]` mask that is true at `(i, target[i])`: a one-hot encoding computed on the device
/// (Burn's `one_hot` reads the indices to the host and rejects a single class).
pub(crate) fn one_hot_mask(target: Tensor<1, Int>, classes: usize) -> Tensor<2, Bool> {
    let [n] = target.dims();
    let device = target.device();
    let columns = Tensor::<1, Int>::arange(0..classes as i64, (&device, target.dtype()))
        .reshape([1, classes])
        .expand([n, classes]);
    target.reshape([n, 1]).expand([n, classes]).equal(columns)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn empty_input_names_its_shape() {
        let err = non_empty(&[0, 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty input for loss input (shape [0, 5]): expected at least one element"
        );
        assert_eq!(non_empty(&[2, 3, 4]).unwrap(), 24);
    }

    #[test]
    fn target_shape_must_equal_input_shape() {
        let err = same_shape(&[2, 3], &[3, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for loss target: expected [2, 3] (the shape of the loss input), got [3, 2]"
        );
        assert_eq!(same_shape(&[2, 3], &[2, 3]).unwrap(), 6);
    }

    #[test]
    fn class_targets_checks_batch_size_and_range() {
        let device = BackendKind::Flex.device().unwrap();
        let target = Tensor::<1, Int>::from_ints([0, 2, 1], &device);
        assert!(class_targets([3, 3], &target).is_ok());
        let err = class_targets([4, 3], &target).unwrap_err();
        assert!(err.to_string().contains("loss target"), "{err}");
        assert!(err.to_string().contains("[4, 3]"), "{err}");
        let err = class_targets([3, 2], &target).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid class index at position 1 of the loss target: expected a value in 0..2, got 2"
        );
        let negative = Tensor::<1, Int>::from_ints([0, -100, 1], &device);
        let err = class_targets([3, 3], &negative).unwrap_err();
        assert!(err.to_string().ends_with("got -100"), "{err}");
    }

    #[test]
    fn one_hot_mask_marks_the_target_columns() {
        let device = BackendKind::Flex.device().unwrap();
        let target = Tensor::<1, Int>::from_ints([2, 0], &device);
        let mask = one_hot_mask(target, 3).try_into_vec_as::<bool>().unwrap();
        assert_eq!(mask, vec![false, false, true, true, false, false]);
        // One class works too (Burn's own one_hot rejects it).
        let single = one_hot_mask(Tensor::<1, Int>::from_ints([0], &device), 1);
        assert_eq!(single.try_into_vec_as::<bool>().unwrap(), vec![true]);
    }

    #[test]
    fn hinge_labels_report_the_first_bad_value_and_where() {
        let device = BackendKind::Flex.device().unwrap();
        let ok = Tensor::<2>::from_floats([[1.0], [-1.0]], &device);
        assert!(plus_minus_one(&ok).is_ok());
        let bad = Tensor::<2>::from_floats([[1.0, -1.0], [0.0, 2.0]], &device);
        let err = plus_minus_one(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid hinge label at index [1, 0] of the loss target: expected -1 or +1, got 0"
        );
    }
}
