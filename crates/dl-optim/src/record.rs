//! Flattening optimizer states into named tensors and scalars, by hand.
//!
//! Burn's `#[derive(RecordState)]` only works inside `burn-optim` (it names `crate::StateSink`),
//! so our state structs implement [`RecordState`](burn::optim::RecordState) with these helpers.
//! Tensors travel as [`TensorData`](burn::tensor::TensorData) (bit-exact), step counters as
//! unsigned integer scalars.

use burn::optim::{StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// Record `tensor` as the leaf `{prefix}.{leaf}`.
pub(crate) fn push_tensor<const D: usize>(
    out: &mut StateSink,
    prefix: &str,
    leaf: &str,
    tensor: &Tensor<D>,
) {
    out.push_tensor(prefix, leaf, tensor.to_data());
}

/// Record `tensor` when present; an absent one records nothing.
pub(crate) fn push_optional_tensor<const D: usize>(
    out: &mut StateSink,
    prefix: &str,
    leaf: &str,
    tensor: Option<&Tensor<D>>,
) {
    if let Some(tensor) = tensor {
        push_tensor(out, prefix, leaf, tensor);
    }
}

/// Take the tensor leaf `{prefix}.{leaf}` onto `device`; `None` when it is absent or its rank is
/// not `D` (a foreign or damaged record), so that the caller can give up on the whole state.
pub(crate) fn take_tensor<const D: usize>(
    src: &mut StateSource,
    prefix: &str,
    leaf: &str,
    device: &Device,
) -> Option<Tensor<D>> {
    let data = src.take_tensor(prefix, leaf)?;
    (data.shape().len() == D).then(|| Tensor::from_data(data, device))
}

/// Record a step counter as the scalar leaf `{prefix}.{leaf}`.
pub(crate) fn push_count(out: &mut StateSink, prefix: &str, leaf: &str, count: usize) {
    out.push_scalar(prefix, leaf, (count as u64).into());
}

/// Read a step counter recorded with [`push_count`].
pub(crate) fn take_count(src: &mut StateSource, prefix: &str, leaf: &str) -> Option<usize> {
    let scalar = src.take_scalar(prefix, leaf)?;
    let count = u64::try_from(scalar).ok()?;
    usize::try_from(count).ok()
}
