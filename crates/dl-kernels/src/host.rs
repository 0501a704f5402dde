//! Host access to the values of a backend whose tensors live in host memory, shared by the
//! kernels that compute on the CPU between the backend's own operations.

use std::borrow::Cow;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex};
use burn::tensor::{DType, Device, Shape, TensorData};

/// Whether `device` is Flex (with or without autodiff) and `dtype` is `f32`: where every
/// kernel of this crate has its native implementation (each `has_*` function asks this).
pub(crate) fn is_flex_f32(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && device.clone().inner() == Device::flex()
}

/// Host access for a backend whose tensors live in host memory.
pub trait HostTensors: Backend {
    /// The values of `tensor` as a row-major `f32` vector (no copy when it is contiguous and
    /// not shared).
    fn to_host(tensor: FloatTensor<Self>) -> Vec<f32>;
    /// The values of `tensor`, borrowed when it is a contiguous `f32` tensor (the projection
    /// and the saved states are also held by the autodiff graph, so taking them would copy).
    fn host_values(tensor: &FloatTensor<Self>) -> Cow<'_, [f32]>;
    /// A tensor holding `values` with `shape`.
    fn from_host(values: Vec<f32>, shape: Shape) -> FloatTensor<Self>;
}

impl HostTensors for Flex {
    fn to_host(tensor: FloatTensor<Self>) -> Vec<f32> {
        let data = tensor.into_data();
        match data.dtype() {
            DType::F32 => data.try_into_vec::<f32>(),
            _ => data.convert::<f32>().try_into_vec::<f32>(),
        }
        .expect("an f32 tensor reads as f32 values")
    }

    fn host_values(tensor: &FloatTensor<Self>) -> Cow<'_, [f32]> {
        match tensor.as_slice::<f32>() {
            Some(values) => Cow::Borrowed(values),
            None => Cow::Owned(Self::to_host(tensor.clone())),
        }
    }

    fn from_host(values: Vec<f32>, shape: Shape) -> FloatTensor<Self> {
        burn::backend::flex::FlexTensor::from_data(TensorData::new(values, shape))
    }
}
