//! Small traits that the models share.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

/// A network that maps a batch of inputs to class logits `[batch, num_classes]`.
///
/// The input type differs per model (images `Tensor<4>`, sequences `Tensor<3>`, token ids
/// `Tensor<2, Int>`), so it is an associated type. Training loops, evaluation and the
/// command-line program are written once against this trait.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Tensor};
/// use dl_core::Classifier;
///
/// #[derive(Module, Debug)]
/// struct Probe { linear: Linear }
///
/// impl Classifier for Probe {
///     type Input = Tensor<2>;
///     fn logits(&self, input: Tensor<2>) -> Tensor<2> { self.linear.forward(input) }
///     fn num_classes(&self) -> usize { self.linear.weight.dims()[1] }
/// }
///
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let probe = Probe { linear: LinearConfig::new(4, 3).init(&device) };
/// assert_eq!(probe.num_classes(), 3);
/// assert_eq!(probe.parameter_count(), 4 * 3 + 3);
/// assert_eq!(probe.logits(Tensor::zeros([2, 4], &device)).dims(), [2, 3]);
/// ```
pub trait Classifier: Module {
    /// What one batch looks like.
    type Input;

    /// Class scores before softmax, `[batch, num_classes]`.
    fn logits(&self, input: Self::Input) -> Tensor<2>;

    /// Number of classes the logits cover.
    fn num_classes(&self) -> usize;

    /// Number of trainable scalars, counted as PyTorch's
    /// `sum(p.numel() for p in model.parameters())` counts them.
    fn parameter_count(&self) -> usize {
        self.num_params()
    }
}

/// A model input made from host data, such as a PyTorch fixture's input tensor: what generic
/// code (the parity checks) needs to feed any [`Classifier`] without naming its input type.
///
/// Implemented for float tensors of every rank; a rank or element kind that does not fit is
/// an error naming both, not a panic.
///
/// ```
/// use burn::tensor::{Tensor, TensorData};
/// use dl_core::FromTensorData;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let data = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]);
/// let x = Tensor::<2>::from_tensor_data(data.clone(), &device)?;
/// assert_eq!(x.dims(), [2, 2]);
/// assert!(Tensor::<3>::from_tensor_data(data, &device).is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
pub trait FromTensorData: Sized {
    /// Build the input from `data` on `device`.
    fn from_tensor_data(data: TensorData, device: &Device) -> crate::Result<Self>;
}

impl<const D: usize> FromTensorData for Tensor<D> {
    fn from_tensor_data(data: TensorData, device: &Device) -> crate::Result<Self> {
        if data.shape().len() != D {
            return Err(crate::Error::invalid(
                "input tensor",
                format!("a tensor of rank {D}"),
                format!("shape {:?}", data.shape()),
            ));
        }
        if !data.dtype().is_float() {
            return Err(crate::Error::invalid(
                "input tensor",
                "floating-point values",
                format!("{:?} values", data.dtype()),
            ));
        }
        Ok(Tensor::from_data(data, device))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn from_tensor_data_rejects_a_wrong_rank_or_integer_values_with_both_named() {
        let device = crate::BackendKind::Flex.device().unwrap();
        let floats = TensorData::new(vec![1.0f32; 6], [2, 3]);
        let err = Tensor::<3>::from_tensor_data(floats.clone(), &device).unwrap_err();
        assert!(err.to_string().contains("rank 3"), "{err}");
        assert!(err.to_string().contains("[2, 3]"), "{err}");

        let ints = TensorData::new(vec![1i64; 6], [2, 3]);
        let err = Tensor::<2>::from_tensor_data(ints, &device).unwrap_err();
        assert!(err.to_string().contains("floating-point"), "{err}");
        assert!(err.to_string().contains("I64"), "{err}");

        let ok = Tensor::<2>::from_tensor_data(floats, &device).unwrap();
        assert_eq!(ok.into_data().try_to_vec::<f32>().unwrap(), vec![1.0; 6]);
    }
}
